"""The training configuration: one typed object built at the CLI, saved with every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from dlmvi.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run.

    ``epochs``, ``batch_size``, ``lr`` and ``patience`` left at ``None`` take the preset's
    values (see :mod:`dlmvi.model.presets`); :meth:`resolved` fills them in.

    Attributes:
        preset: ``"paper"`` (published settings) or ``"fast"``.
        sequences: MRI sequences fused by the network, in input order (default: all of the
            cache's sequences).
        classes: 2 (MVI absent/present) or 3 (M0/M1/M2).
        folds: cross-validation folds (stratified by patient); 0 or 1 skips cross-validation.
        seed: seed of the splits, the initial weights, the slice draws and the augmentation.
        epochs: maximum epochs per model.
        batch_size: samples per optimisation step (per process under torchrun).
        lr: Adam's initial learning rate.
        patience: epochs without improvement of the validation loss before stopping early
            (0: never stop early).
        class_weighting: weight the cross-entropy by inverse class frequency.
        intensity_augmentation: ``"standard"`` (the study's augmentation) or ``"strong"``
            (adds per-sequence gain, offset, gamma and bias field: harmonisation by augmentation).
        holdout: fraction of the training patients kept aside as validation set (for the best
            checkpoint and early stopping); the study used 0.1 (a 9:1 split). With 0 the final
            model trains on every development patient for the median best epoch of the folds.
        sequence_dropout: probability, per training sample and sequence, that the sequence's
            branch is blanked (its input patch set to zero, the value a missing sequence gets
            at prediction), at least one sequence always kept; 0 disables it. A model trained
            with it can score patients that lack a sequence (see ``dlmvi predict-patient``).
        develop_cohort: cohort used for development (cross-validation and the final model);
            ``None``: all included patients of the cache.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (CUDA when available).
        num_threads: CPU threads torch may use (0: torch's default).
        progress: show a progress bar.
    """

    preset: str = "fast"
    sequences: tuple[str, ...] | None = None
    classes: int = 2
    folds: int = 5
    seed: int = 0
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    patience: int | None = None
    class_weighting: bool = False
    intensity_augmentation: str = "standard"
    holdout: float = 0.1
    sequence_dropout: float = 0.0
    develop_cohort: str | None = None
    device: str = "auto"
    num_threads: int = 0
    progress: bool = True

    def __post_init__(self):
        from dlmvi.model.presets import get_preset

        get_preset(self.preset)
        if self.sequences is not None:
            object.__setattr__(self, "sequences", tuple(self.sequences))
            if len(set(self.sequences)) != len(self.sequences) or not self.sequences:
                raise ConfigError(f"sequences {list(self.sequences)} must be non-empty and without repeats")
        if self.classes not in (2, 3):
            raise ConfigError(f"--classes must be 2 or 3, got {self.classes}")
        if self.folds < 0:
            raise ConfigError(f"--folds must be >= 0, got {self.folds}")
        if not 0 <= self.holdout < 0.5:
            raise ConfigError(f"holdout fraction {self.holdout} must be in [0, 0.5)")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.patience is not None and self.patience < 0:
            raise ConfigError(f"--patience must be >= 0, got {self.patience}")
        if self.intensity_augmentation not in ("standard", "strong"):
            raise ConfigError(f"--intensity-augmentation must be 'standard' or 'strong', got {self.intensity_augmentation!r}")
        if not 0.0 <= float(self.sequence_dropout) < 1.0:
            raise ConfigError(f"--sequence-dropout {self.sequence_dropout} must be a probability in [0, 1)")
        if self.develop_cohort is not None:
            object.__setattr__(self, "develop_cohort", str(self.develop_cohort))

    def resolved(self) -> "TrainConfig":
        """A copy with the preset's defaults filled in."""
        from dlmvi.model.presets import get_preset

        p = get_preset(self.preset)
        return replace(
            self,
            epochs=self.epochs if self.epochs is not None else p.epochs,
            batch_size=self.batch_size if self.batch_size is not None else p.batch_size,
            lr=self.lr if self.lr is not None else p.lr,
            patience=self.patience if self.patience is not None else p.patience,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["sequences"] is not None:
            d["sequences"] = list(d["sequences"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        from dlmvi.settings import strict_from_dict

        return strict_from_dict(cls, d, "training configuration")
