"""The whole study in one call: ``dlmvi study`` and ``dlmvi demo``.

Stages, in the data's order, each writing into its own folder of ``RUN/``::

    cache/        prepare      key slices, crops, normalisation (incremental by itself)
    train/        train        k-fold cross-validation + final model on the development cohort
    predict/      predict      the final model on every cohort (features for the shift analysis)
    predictions.csv            the study's predictions: out-of-fold cross-validation predictions
                               for the development cohort (never a model's own training
                               patients) and the final model's predictions for other cohorts
    evaluate/     evaluate     accuracy, precision, recall, F1, AUC with DeLong CI per cohort
    ablation/     ablate       sequence ablation with cross-validation (optional, costly)
    shift/        shift        t-SNE panels, cohort separability and MMD per sequence
    transport/    transport    external cohort without/with image harmonisation, ComBat on
                               features, recalibration on half (optional, ``--transport``)
    clinical/     clinical     Table 1, multivariate model, nomogram, ROC, calibration, DCA
    survival/     survival     Kaplan-Meier, log-rank, Cox by pathological MVI and DL-MVI
    report.html   report       everything above in one self-contained file

``RUN/stages.json`` records for each finished stage a key made of its settings and its
inputs' keys; a rerun skips stages whose key is unchanged and whose outputs exist, so a
crashed run resumes where it stopped (training also resumes inside an unfinished fold).

Before the first expensive stage, :meth:`Study.preflight` checks every input the stages will
need, in seconds: the run folder against the cohort, the column map, the clinical table (read
once, by the reader every stage uses), the development cohort and its classes, the clinical
configuration's variables and nomogram predictors, the survival columns (absent: a note) and
the images. A mistake there ends the study with one message before anything is trained.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from dlmvi import __version__
from dlmvi.errors import CacheError, ClinicalTableError, CohortError, ConfigError, StatisticsError
from dlmvi.io.atomic import make_dirs, write_json
from dlmvi.layout import RunLayout
from dlmvi.preprocess.cache import CACHE_JSON, INDEX_CSV, PATIENTS_CSV, PrepareConfig
from dlmvi.stats.config import ClinicalConfig
from dlmvi.train.config import EXECUTION_SETTINGS, TrainConfig

STAGES = ("prepare", "train", "predict", "evaluate", "ablate", "shift", "transport", "clinical", "survival", "radiomics",
          "report")

#: Intensity harmonisation of ``dlmvi study --normalization``; the fitted ones prepare raw patches.
HARMONIZATIONS = ("zscore", "nyul", "global")

#: Training settings that decide how, not what, is computed (left out of the resume keys, as a
#: resumed training accepts them changed).
_NOT_IN_KEY = EXECUTION_SETTINGS


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
_NEW_AT_DEFAULT = {"sequence_dropout": 0.0, "optimizer": None, "weight_decay": None, "schedule": None,
                   "warmup_epochs": None, "accumulate": None, "grad_clip": None, "precision": "fp32",
                   "harmonization": None}


def _key(cfg) -> dict:
    """A configuration's settings that decide a result (its stage's resume key)."""
    return {k: v for k, v in cfg.to_dict().items()
            if k not in _NOT_IN_KEY and not (k in _NEW_AT_DEFAULT and v == _NEW_AT_DEFAULT[k])}


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_hash(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class Study:
    """Runs the stages of a study into ``out`` (see the module docstring)."""

    config: StudyConfig
    out: Path
    log: Callable[[str], None] = print
    stages_doc: dict = field(default_factory=dict)

    def __post_init__(self):
        self.out = Path(self.out)
        self.layout = RunLayout(self.out)
        p = self.layout.stages_json
        self.stages_doc = json.loads(p.read_text()) if p.is_file() else {}

    # ---- paths
    @property
    def cohort(self) -> Path:
        return Path(self.config.cohort)

    @property
    def table(self) -> Path:
        return self.cohort / "clinical.csv"

    @property
    def column_map(self):
        """The hospital's column map (``--columns``), or None."""
        from dlmvi.io.tables import ColumnMap

        return ColumnMap.from_toml(self.config.columns) if self.config.columns else None

    @property
    def cache(self) -> Path:
        return self.layout.cache

    @property
    def predictions(self) -> Path:
        return self.layout.predictions

    # ---- stage machinery
    def _run_stage(self, name: str, key_obj, outputs: list[Path], fn) -> bool:
        key = _hash({"stage": name, "key": key_obj, "version": __version__})
        done = self.stages_doc.get(name, {})
        if done.get("key") == key and all(p.exists() for p in outputs):
            self.log(f"[{name}] up to date, skipped")
            return False
        self.log(f"[{name}] running ...")
        t0 = time.perf_counter()
        fn()
        self.stages_doc[name] = {"key": key, "seconds": round(time.perf_counter() - t0, 1),
                                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(self.layout.stages_json, self.stages_doc)
        self.log(f"[{name}] done in {self.stages_doc[name]['seconds']} s")
        return True

    def key(self, name: str) -> str:
        return self.stages_doc.get(name, {}).get("key", "")

    def run(self) -> dict:
        """Check every input (:meth:`preflight`), then run (or resume) every stage; return the
        headline numbers."""
        cfg, lay = self.config, self.layout
        self.preflight()
        make_dirs(self.out)
        write_json(lay.study_json, {"config": cfg.to_dict(), "dlmvi_version": __version__})
        if lay.predictions.is_file():  # a resumed run: where its predictions came from stays recorded
            self._record_sources()
        self.prepare()
        table = _file_hash(self.table, *([Path(cfg.columns)] if cfg.columns else []))
        self._run_stage("train", [_key(cfg.train), self.key("prepare")],
                        [lay.train.run_json] + ([lay.cache / CACHE_JSON] if cfg.normalization != "zscore" else []),
                        self.train)
        self._run_stage("predict", [cfg.tta, self.key("train")], [lay.predictions], self.predict)
        self._run_stage("evaluate", [self.key("predict"), _file_hash(self.cohort / "scanners.csv")],
                        [lay.metrics_json], self.evaluate)
        if cfg.ablate:
            self._run_stage("ablate", [cfg.ablation_combos, _key(cfg.train), self.key("prepare")],
                            [lay.ablation_csv], self.ablate)
        self._run_stage("shift", [cfg.seed, self.key("predict")], [lay.shift_json], self.shift)
        if cfg.transport:
            from dlmvi.workflow.transport import TRANSPORT_JSON

            self._run_stage("transport", [_key(cfg.train), cfg.normalization, cfg.tta, self.key("predict")],
                            [self.out / "transport" / TRANSPORT_JSON], self.transport)
        self._run_stage("clinical", [_key(cfg.clinical), cfg.develop_cohort, self.key("predict"), table],
                        [lay.nomogram_json], self.clinical)
        self._run_stage("survival", [self.key("predict"), table], [lay.survival_json], self.survival)
        if cfg.radiomics is not None:
            self._run_stage("radiomics", [cfg.radiomics, self.key("predict"), self.key("clinical"), table],
                            [lay.radiomics_summary], self.radiomics)
        self.report()
        return headline(self.out)

    # ---- checks
    def preflight(self) -> dict:
        """Check, in seconds, every input the stages will need; log what will be left out.

        Returns:
            what was found: ``patients``, ``labelled``, ``unlabelled``, ``survival`` (outcomes
            available), ``without_images`` (patients prepare will exclude).

        Raises:
            OutputError: the run folder is, or lies inside, the cohort folder.
            ConfigError: an unreadable column map; fewer than 2 folds; ``--transport`` without a
                development cohort.
            ClinicalTableError: any error of clinical.csv (file, patient, column, row), a
                configured variable or nomogram predictor that is not a column.
            CohortError: the development cohort is not in the table, lacks a class, has too
                few patients of a class for the folds, or has no patient with every image.
        """
        import warnings

        from dlmvi.cohort.cohort import Cohort
        from dlmvi.errors import DlmviWarning
        from dlmvi.io.atomic import guard_output
        from dlmvi.io.tables import read_clinical
        from dlmvi.preprocess.cache import grade_to_label
        from dlmvi.stats.config import DEFAULT_VARIABLES

        cfg = self.config
        if cfg.train.folds < 2:
            raise ConfigError(f"--folds {cfg.train.folds}: a study needs cross-validation (--folds 2 or more); without "
                              "it no development patient has a prediction from a model that did not see it, and no "
                              "figure of the development cohort could be honest")
        if cfg.transport and cfg.develop_cohort is None:
            raise ConfigError("--transport compares remedies on external cohorts: give --develop-cohort (e.g. 2015); "
                              "with --develop-cohort none every cohort is development")
        guard_output(self.out, [self.cohort, cfg.columns])
        own = [self.layout.cache, self.layout.cache_raw, self.layout.train.root, self.layout.final_predictions.parent,
               self.layout.evaluate, self.layout.ablation, self.layout.shift, self.layout.clinical,
               self.layout.survival]
        # the cohort may sit inside RUN (as `dlmvi demo` puts it), but not inside a stage's folder
        guard_output(own + [self.layout.predictions, self.layout.report], [self.cohort], replaces=True,
                     label="the study's output")
        column_map = self.column_map
        wanted = [*(cfg.clinical.variables or ()), *(cfg.clinical.nomogram_predictors or ())]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DlmviWarning)
            table = read_clinical(self.table, column_map, numeric=[w for w in wanted if w not in ("dl_prob", "dl_mvi")])
        table.check()
        frame = table.frame
        columns = set(frame.columns) | {"dl_prob", "dl_mvi"}  # DL-MVI comes from the predictions
        for what, names in (("variables", cfg.clinical.variables), ("nomogram predictors",
                                                                   cfg.clinical.nomogram_predictors)):
            missing = [v for v in (names or ()) if v not in columns]
            if missing:
                raise ClinicalTableError(
                    f"{self.table}: the clinical configuration's {what} {missing} are not columns of the table "
                    f"(it has {', '.join(map(str, frame.columns))}); fix --clinical-config or map your column "
                    "names with --columns")
        if cfg.clinical.variables is None and not any(v in frame.columns for v in DEFAULT_VARIABLES):
            self.log(f"[preflight] note: clinical.csv has none of the Table 1 variables {list(DEFAULT_VARIABLES)}; "
                     "Table 1 will hold DL-MVI only")
        dev = cfg.develop_cohort
        cohorts = sorted(set(frame["cohort"]))
        if dev is not None and dev not in cohorts:
            raise CohortError(f"{self.table}: --develop-cohort {dev!r} is not a cohort of the table (cohorts: "
                              f"{', '.join(cohorts)}); give one of them, or 'none' to use every patient")
        seqs = cfg.train.sequences or cfg.prepare.sequences
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DlmviWarning)
            cohort = Cohort.from_folder(self.cohort, column_map)
        with_images = [p for p in cohort if all(s in p.sources for s in seqs)]
        without = sorted(set(cohort.patients) - {p.patient_id for p in with_images})
        if not (self.cohort / "images").is_dir():
            raise CohortError(f"{self.cohort}: no images/ folder; put each patient's sequences in "
                              "images/<patient_id>/ (see README)")
        dev_patients = [p for p in with_images if dev is None or p.cohort == dev]
        where = f"cohort {dev}" if dev is not None else "all cohorts"
        if not dev_patients:
            raise CohortError(f"{self.cohort}: no patient of {where} has every sequence {', '.join(seqs)} "
                              f"under images/<patient_id>/; run `dlmvi validate {self.cohort}`")
        labelled = [p for p in dev_patients if p.mvi_grade]
        if not labelled:
            raise CohortError(f"{self.table}: no patient of {where} has an mvi_grade; the study trains on patients "
                              "with a pathology result (M0, M1, M2)")
        from dlmvi.train.run import check_classes  # imports torch: after the quick checks

        check_classes(grade_to_label([p.mvi_grade for p in labelled], cfg.train.classes), cfg.train.classes,
                      cfg.train.folds, where)
        unlabelled = table.unlabelled_ids
        if without:
            self.log(f"[preflight] note: {len(without)} patient(s) lack a sequence of {', '.join(seqs)} (or their "
                     f"images/ folder) and will be excluded: {', '.join(without[:5])}" + (" ..." if len(without) > 5 else ""))
        if unlabelled:
            self.log(f"[preflight] note: {len(unlabelled)} patient(s) have no mvi_grade: predicted, but left out of "
                     f"training, evaluation and the statistics: {', '.join(unlabelled[:5])}"
                     + (" ..." if len(unlabelled) > 5 else ""))
        from dlmvi.stats.survival import OUTCOMES

        survival = [o for o, (t, e) in OUTCOMES.items() if t in frame.columns and e in frame.columns
                    and (frame[t].notna() & frame[e].notna()).any()]
        if not survival and "surgery_date" not in frame.columns:
            self.log("[preflight] note: clinical.csv has no os_months/os_event or rfs_months/rfs_event values "
                     "(nor dates); the survival stage will be skipped")
        self._survival_columns = bool(survival) or "surgery_date" in frame.columns
        self.log(f"[preflight] {self.table}: {len(frame)} patients, {len(labelled)} labelled with images in {where}; "
                 "inputs checked")
        return {"patients": len(frame), "labelled": len(labelled), "unlabelled": unlabelled,
                "survival": survival, "without_images": without}

    # ---- stages
    def prepare(self) -> None:
        """Always called: prepare is incremental and cheap when nothing changed. A fitted
        harmonisation is not fitted here but by the training, inside each fold."""
        from dlmvi.preprocess.prepare import prepare_cohort

        cfg = self.config
        self.log("[prepare] checking the cache ...")
        t0 = time.perf_counter()
        raw = self.training_cache
        prepare_cohort(self.cohort, raw, cfg.prepare, self.column_map, progress=True)
        key = _hash([_file_hash(raw / INDEX_CSV, raw / PATIENTS_CSV, raw / CACHE_JSON),
                     cfg.prepare.to_dict(), cfg.normalization])
        self.stages_doc["prepare"] = {"key": key, "raw": _file_hash(raw / INDEX_CSV, raw / PATIENTS_CSV),
                                      "seconds": round(time.perf_counter() - t0, 1)}
        write_json(self.layout.stages_json, self.stages_doc)

    @property
    def training_cache(self) -> Path:
        """The cache the network trains on: ``cache/`` (z-scored), or ``cache_raw/`` when the
        harmonisation is fitted inside the folds."""
        return self.layout.cache_raw if self.config.normalization != "zscore" else self.cache

    def train(self) -> None:
        from dlmvi.train.run import run_training

        run_training(self.training_cache, self.layout.train.root, self.config.train)
        if self.config.normalization != "zscore":
            # cache/ = the raw patches under the final model's own harmonisation (fitted on its
            # training patients): what the later stages and the exported model read
            from dlmvi.model.checkpoint import load_checkpoint
            from dlmvi.preprocess.harmonize import harmonize_cache

            final = load_checkpoint(self.layout.train.root)
            harmonize_cache(self.training_cache, self.cache, method=self.config.normalization,
                            params=final.meta["harmonization"])

    def predict(self) -> None:
        """``predictions.csv``: for every development patient the out-of-fold prediction (the
        fold model that never saw it), for every other patient the final model's; the final
        model's predictions of its own training patients stay in ``predict/final_predictions.csv``,
        labelled in-sample, and reach no figure."""
        import pandas as pd

        from dlmvi.constants import IN_SAMPLE, SOURCE_OUT_OF_FOLD
        from dlmvi.io.atomic import write_csv
        from dlmvi.model.inference import predict_cache, write_prediction
        from dlmvi.train.leakage import audit_run

        lay = self.layout
        pred = predict_cache(lay.train.root, self.cache, tta=self.config.tta)
        write_prediction(pred, lay.final_predictions)
        final = pred.frame
        cv = pd.read_csv(lay.train.cv_predictions, dtype={"patient_id": str, "cohort": str})
        cv["source"] = SOURCE_OUT_OF_FOLD
        in_sample = final["source"].str.endswith(IN_SAMPLE)
        missing = sorted(set(final.loc[in_sample, "patient_id"]) - set(cv["patient_id"]))
        if missing:  # cannot happen with cross-validation: every development patient is tested once
            raise ConfigError(f"{lay.train.cv_predictions}: no out-of-fold prediction for training patient(s) "
                              f"{', '.join(missing[:5])}; rerun the study in a new folder")
        frame = pd.concat([cv, final[~in_sample & ~final["patient_id"].isin(cv["patient_id"])]], ignore_index=True)
        audit = audit_run(lay.train.root)
        if not audit.ok:
            raise CacheError(f"{lay.train.root}: the training run kept its patients apart badly: "
                             + "; ".join(audit.problems) + ". Rerun the study in a new folder")
        write_csv(self.predictions, frame)
        self._record_sources()

    def _record_sources(self) -> None:
        """``study.json``'s ``prediction_sources``: per cohort, how many predictions came from where."""
        import pandas as pd

        from dlmvi.train.leakage import audit_run

        lay = self.layout
        frame = pd.read_csv(lay.predictions, dtype={"patient_id": str, "cohort": str})
        doc = json.loads(lay.study_json.read_text())
        if "source" in frame.columns:
            doc["prediction_sources"] = prediction_sources(frame)
        if lay.train.splits_json.is_file():
            doc["leakage"] = audit_run(lay.train.root).to_dict()
        write_json(lay.study_json, doc)

    def evaluate(self) -> None:
        from dlmvi.evaluate.metrics import run_evaluate

        run_evaluate(self.predictions, self.layout.evaluate)
        _site_groups(self.predictions, self.cohort, self.layout.evaluate, self.column_map)

    def ablate(self) -> None:
        from dlmvi.evaluate.ablation import run_ablation

        cfg = self.config
        run_ablation(self.training_cache, self.layout.ablation, combos=cfg.ablation_combos, base_config=cfg.train,
                     folds=cfg.train.folds, seed=cfg.seed)

    def shift(self) -> None:
        from dlmvi.evaluate.shift import run_shift
        from dlmvi.preprocess.cache import PatchCache

        cohorts = PatchCache(self.cache).cohorts
        if len(cohorts) < 2:
            note = (f"skipped: one cohort ({', '.join(cohorts)}); the shift analysis compares the network's features "
                    "between cohorts")
            write_json(self.layout.shift_json, {"skipped": note, "cohorts": list(cohorts)})
            self.log(f"[shift] {note}")
            return
        run_shift(self.layout.train.root, self.cache, self.layout.shift, seed=self.config.seed)

    def clinical(self) -> None:
        from dlmvi.stats.clinical import run_clinical
        from dlmvi.stats.sites import nomogram_groups

        cfg = self.config
        try:
            run_clinical(self.table, self.layout.clinical, predictions=self.predictions,
                         develop_cohort=cfg.develop_cohort, config=cfg.clinical, column_map=self.column_map)
            # the nomogram per cohort and scanner group (clinical/groups.csv)
            nomogram_groups(self.table, self.predictions, self.layout.clinical, column_map=self.column_map)
        except StatisticsError as exc:
            # The data cannot support the model (e.g. DL-MVI constant: the network predicts one
            # class). Recorded for the report rather than hiding the other stages' results.
            write_json(self.layout.nomogram_json, {"error": str(exc)})
            self.log(f"[clinical] could not fit the clinical models: {exc}")

    def transport(self) -> None:
        from dlmvi.workflow.transport import run_transport

        run_transport(self.out, log=self.log)

    def survival(self) -> None:
        from dlmvi.stats.survival_pipeline import run_survival

        if not getattr(self, "_survival_columns", True):
            write_json(self.layout.survival_json, {
                "synthetic": False, "analyses": [],
                "notes": {"survival": "clinical.csv has no os_months/os_event, rfs_months/rfs_event or dates"}})
            self.log("[survival] skipped: clinical.csv has no survival columns")
            return
        run_survival(self.table, self.layout.survival, predictions=self.predictions, column_map=self.column_map)

    def radiomics(self) -> None:
        """Radiomics features (incremental cache), the rad-score in the same folds and the comparison."""
        from dlmvi.workflow.radiomics import ComparisonConfig, extract_for_run, run_compare

        cfg = ComparisonConfig.from_dict(self.config.radiomics)
        extract_for_run(self.out, self.cohort, cfg, self.column_map)
        run_compare(self.out, cfg, column_map=self.column_map, log=self.log)

    def report(self) -> Path:
        from dlmvi.report.build import build_report

        t0 = time.perf_counter()
        path = build_report(self.out)
        self.log(f"[report] {path} ({time.perf_counter() - t0:.1f} s)")
        return path


def prediction_sources(frame) -> dict:
    """``{cohort: {source: n}}`` of a predictions table: where each cohort's predictions came from."""
    return {str(c): {str(k): int(v) for k, v in g["source"].value_counts().sort_index().items()}
            for c, g in frame.groupby("cohort", sort=True)}


def _site_groups(predictions: Path, cohort: Path, out: Path, column_map=None) -> None:
    """DL-MVI figures per cohort and scanner group (``evaluate/groups.csv``)."""
    import pandas as pd

    from dlmvi.stats.sites import group_table, read_scanners, scanner_source, write_groups

    frame = pd.read_csv(predictions, dtype={"patient_id": str, "cohort": str})
    meta = cohort / "cohort.json"
    synthetic = bool(json.loads(meta.read_text()).get("synthetic")) if meta.is_file() else False
    from dlmvi.constants import DL_THRESHOLD

    table = group_table(frame, "dl_prob", read_scanners(cohort, column_map=column_map), threshold=DL_THRESHOLD,
                        decision_column="dl_mvi", what="DL-MVI")
    write_groups(table, out, scanner_source=scanner_source(cohort, column_map), synthetic=synthetic)


def headline(run: Path) -> dict:
    """The study's headline numbers, read back from the stages' outputs."""
    lay = RunLayout(run)
    out: dict = {"report": str(lay.report)}
    meta = lay.cache / CACHE_JSON
    out["synthetic"] = bool(json.loads(meta.read_text()).get("synthetic")) if meta.is_file() else False

    def load(p):
        return json.loads(p.read_text()) if p.is_file() else None

    cvm = load(lay.train.cv_metrics)
    if cvm:
        out["cv_auc_mean"], out["cv_auc_sd"] = cvm.get("auc_mean"), cvm.get("auc_sd")
    ev = load(lay.metrics_json)
    if ev:
        out["evaluate"] = {c: {"n": (m.get("binary") or {}).get("n"), "auc": (m.get("binary") or {}).get("auc"),
                               "auc_ci": [(m.get("binary") or {}).get("auc_ci_low"), (m.get("binary") or {}).get("auc_ci_high")],
                               "accuracy": (m.get("binary") or {}).get("accuracy")}
                           for c, m in (ev.get("cohorts") or {}).items()}
    nom = load(lay.nomogram_json)
    if nom and "error" not in nom:
        out["nomogram_formula"] = nom.get("formula")
        out["nomogram_auc"] = {c: v.get("auc") for c, v in (nom.get("validation") or {}).items()}
    return out


def run_demo(out: Path, patients: int = 321, seed: int = 0, ablate: bool = False, folds: int = 5,
             epochs: int | None = None, bootstrap: int | None = None, log=print) -> dict:
    """Generate the synthetic phantom under ``out/cohort`` (if absent) and run the study.

    ``folds``, ``epochs`` and ``bootstrap`` are :meth:`StudyConfig.from_options`'s (smaller
    values make a quicker, rougher demo).
    """
    from dlmvi.datasets.phantom import make_phantom

    out = Path(out)
    cohort = out / "cohort"
    if not (cohort / "clinical.csv").is_file():
        log(f"[phantom] writing the synthetic cohort ({patients} patients) to {cohort} ...")
        t0 = time.perf_counter()
        make_phantom(cohort, n_patients=patients, seed=seed)
        log(f"[phantom] done in {time.perf_counter() - t0:.1f} s")
    cfg = StudyConfig.from_options(cohort, preset="fast", develop_cohort="2015", seed=seed, ablate=ablate,
                                   folds=folds, epochs=epochs, bootstrap=bootstrap)
    return Study(cfg, out, log=log).run()
