"""The training configuration: one typed object built at the CLI, saved with every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from dlmvi.errors import ConfigError

#: Numerical precision of training: fp32, bf16 autocast, or fp16 autocast with loss scaling.
PRECISIONS = ("fp32", "bf16", "fp16")

#: Settings that decide how fast a model trains, not what it learns (beyond floating-point
#: rounding, as a change of device): a run may be resumed or reused with other values.
EXECUTION_SETTINGS = frozenset({"device", "num_threads", "progress", "channels_last", "compile", "workers"})

#: Optimisation settings that a preset fills in when left at ``None``.
PRESET_SETTINGS = ("epochs", "batch_size", "lr", "patience", "optimizer", "weight_decay", "schedule",
                   "warmup_epochs", "accumulate", "grad_clip")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run.

    The optimisation settings left at ``None`` (``epochs``, ``batch_size``, ``lr``,
    ``patience``, ``optimizer``, ``weight_decay``, ``schedule``, ``warmup_epochs``,
    ``accumulate``, ``grad_clip``) take the preset's values (see :mod:`dlmvi.model.presets`);
    :meth:`resolved` fills them in.

    Attributes:
        preset: ``"paper"`` (published settings), ``"recommended"`` (the published network
            with a stable optimisation) or ``"fast"`` (small, for CPUs).
        sequences: MRI sequences fused by the network, in input order (default: all of the
            cache's sequences).
        classes: 2 (MVI absent/present) or 3 (M0/M1/M2).
        folds: cross-validation folds (stratified by patient); 0 or 1 skips cross-validation.
        seed: seed of the splits, the initial weights, the slice draws and the augmentation.
        epochs: maximum epochs per model.
        batch_size: samples per forward pass (per process under torchrun); one optimisation
            step sums ``accumulate`` of them.
        lr: the optimiser's peak learning rate.
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
        optimizer: ``"adam"`` or ``"adamw"``.
        weight_decay: the optimiser's weight decay (decoupled for AdamW).
        schedule: ``"constant"`` or ``"cosine"`` (decay to 0 at the last epoch, per step).
        warmup_epochs: epochs of linear learning-rate warm-up (per step).
        accumulate: micro-batches per optimisation step (gradient accumulation).
        grad_clip: clip the gradient norm to this value (0: no clipping).
        precision: ``"fp32"``; ``"bf16"``: bfloat16 autocast (CUDA GPUs from Ampere on, and
            CPUs); ``"fp16"``: float16 autocast with a gradient scaler (older GPUs). Weights,
            optimiser state, validation and checkpoints stay float32.
        channels_last: give the convolutions channels-last tensors (faster on tensor cores
            and with oneDNN).
        compile: compile the training step with ``torch.compile`` (a one-off compilation of
            a minute or more, then faster steps on a GPU).
        workers: processes that gather the training batches (``None``: 0 on a CPU, where the
            in-process pipeline is fastest, and up to 4 with pinned memory on a GPU).
        harmonization: ``None`` (the cache's patches as they are) or a fitted image
            harmonisation, ``"nyul"`` or ``"global"``, of a raw cache (``dlmvi prepare
            --normalization none``): fitted anew for every model on that model's own training
            patients (a fold's, for its out-of-fold predictions; every development patient, for
            the final model) and recorded in its checkpoint.
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
    optimizer: str | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    warmup_epochs: int | None = None
    accumulate: int | None = None
    grad_clip: float | None = None
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    workers: int | None = None
    harmonization: str | None = None

    def __post_init__(self):
        from dlmvi.model.presets import OPTIMIZERS, SCHEDULES, get_preset

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
        for name in ("epochs", "batch_size", "accumulate"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        for name in ("patience", "warmup_epochs", "weight_decay", "grad_clip"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {v}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")
        if self.intensity_augmentation not in ("standard", "strong"):
            raise ConfigError(f"--intensity-augmentation must be 'standard' or 'strong', got {self.intensity_augmentation!r}")
        if not 0.0 <= float(self.sequence_dropout) < 1.0:
            raise ConfigError(f"--sequence-dropout {self.sequence_dropout} must be a probability in [0, 1)")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.develop_cohort is not None:
            object.__setattr__(self, "develop_cohort", str(self.develop_cohort))
        if self.harmonization not in (None, "nyul", "global"):
            raise ConfigError(f"--harmonization must be 'nyul' or 'global' (or left out), got {self.harmonization!r}")

    def resolved(self) -> "TrainConfig":
        """A copy with the preset's defaults filled in."""
        from dlmvi.model.presets import get_preset

        p = get_preset(self.preset)
        return replace(self, **{k: getattr(p, k) if getattr(self, k) is None else getattr(self, k)
                                for k in PRESET_SETTINGS})

    @property
    def effective_batch(self) -> int:
        """Samples per optimisation step in one process (``batch_size * accumulate``)."""
        r = self.resolved()
        return r.batch_size * r.accumulate

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["sequences"] is not None:
            d["sequences"] = list(d["sequences"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        from dlmvi.settings import strict_from_dict

        return strict_from_dict(cls, d, "training configuration")


def saved_training(d: dict) -> dict:
    """A training configuration saved by any dlmvi version, resolved against its preset.

    A setting that did not exist when ``d`` was written takes the value that version used,
    which is the preset's (or the field's) default: so an older checkpoint compares equal to
    a current configuration that trains the same way.
    """
    from dataclasses import fields

    from dlmvi.model.presets import PRESETS

    known = {f.name for f in fields(TrainConfig)}
    base = {f.name: f.default for f in fields(TrainConfig)}
    out = {**base, **{k: v for k, v in d.items()}}
    preset = PRESETS.get(out.get("preset"))
    if preset is not None:
        for k in PRESET_SETTINGS:
            if out.get(k) is None and k in known:
                out[k] = getattr(preset, k)
    if out.get("sequences") is not None:
        out["sequences"] = list(out["sequences"])
    return out
