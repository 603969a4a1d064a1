"""The settings of ``dlmvi study`` (:class:`StudyConfig`, saved as ``RUN/study.json``) and the
resume keys made of them: a stage's key is a hash of the settings that decide its result and of
its inputs' keys (:mod:`dlmvi.workflow.study` records them in ``RUN/stages.json``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from dlmvi.errors import ConfigError
from dlmvi.preprocess.cache import PrepareConfig
from dlmvi.stats.config import ClinicalConfig
from dlmvi.train.config import EXECUTION_SETTINGS, TrainConfig

#: Intensity harmonisation of ``dlmvi study --normalization``; the fitted ones prepare raw patches.
HARMONIZATIONS = ("zscore", "nyul", "global")

#: Training settings that decide how, not what, is computed (left out of the resume keys, as a
#: resumed training accepts them changed).
NOT_IN_KEY = EXECUTION_SETTINGS


@dataclass(frozen=True)
class StudyConfig:
    """Settings of ``dlmvi study``, composed of each stage's own configuration; saved as
    ``RUN/study.json``. Build it from the command line's options with :meth:`from_options`.

    Attributes:
        cohort: the cohort folder (clinical.csv, images/).
        prepare: the :class:`~dlmvi.preprocess.cache.PrepareConfig` of the patch cache.
        train: the :class:`~dlmvi.train.config.TrainConfig` of cross-validation, the final
            model and the ablation (preset, sequences, folds, seed, development cohort, epochs,
            augmentation).
        clinical: the :class:`~dlmvi.stats.config.ClinicalConfig` of the clinical statistics
            (variables, cut-offs, nomogram predictors, bootstrap, seed).
        normalization: intensity harmonisation: ``zscore`` (per image, default), ``nyul``
            (histogram standardisation) or ``global`` (one linear scale per sequence: no
            per-image correction, the "no harmonisation" baseline). A fitted one is fitted for
            each model on that model's own training patients (each fold's, for the out-of-fold
            predictions; every development patient, for the final model).
        ablate: run the sequence ablation (trains one model per fold per combination).
        ablation_combos: combinations for the ablation (``default``, ``all3`` or a list).
        tta: average predictions over all slice combinations.
        columns: the hospital's column map (TOML: names and units of clinical.csv), or None.
        transport: run the transport comparison (:mod:`dlmvi.workflow.transport`; trains
            the final model once more per image harmonisation it compares).
        radiomics: the settings of the radiomics comparison
            (:class:`~dlmvi.workflow.radiomics.ComparisonConfig` as a dict), or None: not run.
    """

    cohort: str
    prepare: PrepareConfig
    train: TrainConfig
    clinical: ClinicalConfig = field(default_factory=ClinicalConfig)
    normalization: str = "zscore"
    ablate: bool = False
    ablation_combos: str = "default"
    tta: bool = False
    columns: str | None = None
    transport: bool = False
    radiomics: dict | None = None

    def __post_init__(self):
        if self.normalization not in HARMONIZATIONS:
            raise ConfigError(f"--normalization {self.normalization!r}: use {', '.join(HARMONIZATIONS)}")
        fitted = self.normalization != "zscore"
        # a fitted harmonisation is fitted by the training, for each model on its own training patients
        want = self.normalization if fitted else None
        if self.train.harmonization != want:
            object.__setattr__(self, "train", replace(self.train, harmonization=want))
        if self.prepare.normalization != ("none" if fitted else "zscore"):
            raise ConfigError(f"--normalization {self.normalization} needs patches prepared with normalization "
                              f"{'none' if fitted else 'zscore'}, not {self.prepare.normalization}")
        if self.train.sequences is not None and set(self.train.sequences) - set(self.prepare.sequences):
            raise ConfigError(f"the network's sequences {list(self.train.sequences)} are not all prepared "
                              f"({list(self.prepare.sequences)})")

    @classmethod
    def from_options(cls, cohort, *, preset: str = "fast", sequences=("T1", "T1V", "T1D"),
                     develop_cohort: str | None = "2015", folds: int = 5, seed: int = 0, margin: int = 8,
                     normalization: str = "zscore", intensity_augmentation: str = "standard",
                     ablate: bool = False, ablation_combos: str = "default", tta: bool = False,
                     bootstrap: int | None = None, epochs: int | None = None,
                     clinical: ClinicalConfig | None = None, columns=None, transport: bool = False,
                     sequence_dropout: float = 0.0, radiomics=None) -> "StudyConfig":
        """The configuration of ``dlmvi study``'s options.

        ``seed`` seeds every stage (splits, weights, bootstrap); ``bootstrap`` None keeps the
        clinical configuration's; the patch size is the preset's input size.
        """
        from dlmvi.model.presets import get_preset

        if normalization not in HARMONIZATIONS:
            raise ConfigError(f"--normalization {normalization!r}: use {', '.join(HARMONIZATIONS)}")
        sequences = tuple(sequences)
        prepare = PrepareConfig(sequences=sequences, size=get_preset(preset).input_size, margin=margin,
                                normalization="zscore" if normalization == "zscore" else "none")
        train = TrainConfig(preset=preset, sequences=sequences, folds=folds, seed=seed,
                            develop_cohort=develop_cohort, epochs=epochs,
                            intensity_augmentation=intensity_augmentation, sequence_dropout=sequence_dropout)
        clinical = clinical or ClinicalConfig()
        clinical = replace(clinical, seed=seed, n_bootstrap=clinical.n_bootstrap if bootstrap is None else bootstrap)
        return cls(cohort=str(cohort), prepare=prepare, train=train, clinical=clinical,
                   normalization=normalization, ablate=ablate, ablation_combos=ablation_combos, tta=tta,
                   columns=None if columns is None else str(columns), transport=transport,
                   radiomics=None if radiomics is None else radiomics.to_dict())

    @property
    def develop_cohort(self) -> str | None:
        return self.train.develop_cohort

    @property
    def seed(self) -> int:
        return self.train.seed

    def to_dict(self) -> dict:
        return {"cohort": self.cohort, "normalization": self.normalization, "ablate": self.ablate,
                "ablation_combos": self.ablation_combos, "tta": self.tta, "transport": self.transport,
                "develop_cohort": self.develop_cohort,
                "prepare": self.prepare.to_dict(), "train": self.train.to_dict(),
                "clinical": self.clinical.to_dict(), "columns": self.columns,
                **({"radiomics": self.radiomics} if self.radiomics is not None else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "StudyConfig":
        """Read back :meth:`to_dict` (``study.json``'s ``config``)."""
        d = dict(d)
        d.pop("develop_cohort", None)  # a copy of train's, for readers of study.json
        return cls(prepare=PrepareConfig.from_dict(d.pop("prepare")), train=TrainConfig.from_dict(d.pop("train")),
                   clinical=ClinicalConfig.from_dict(d.pop("clinical")), **d)


#: Settings added after runs existed: left out of the key at their default, so that an older run
#: (which trained with that default) is not retrained on resume.
NEW_AT_DEFAULT = {"sequence_dropout": 0.0, "optimizer": None, "weight_decay": None, "schedule": None,
                   "warmup_epochs": None, "accumulate": None, "grad_clip": None, "precision": "fp32",
                   "harmonization": None}


def settings_key(cfg) -> dict:
    """A configuration's settings that decide a result (its stage's resume key)."""
    return {k: v for k, v in cfg.to_dict().items()
            if k not in NOT_IN_KEY and not (k in NEW_AT_DEFAULT and v == NEW_AT_DEFAULT[k])}


def hash_key(obj) -> str:
    """A short, stable hash of a JSON-able object (a stage's resume key)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_hash(*paths: Path) -> str:
    """A short hash of the files' bytes (absent files are skipped)."""
    h = hashlib.sha256()
    for p in paths:
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]
