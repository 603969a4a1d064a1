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
    clinical/     clinical     Table 1, multivariate model, nomogram, ROC, calibration, DCA
    survival/     survival     Kaplan-Meier, log-rank, Cox by pathological MVI and DL-MVI
    report.html   report       everything above in one self-contained file

``RUN/stages.json`` records for each finished stage a key made of its settings and its
inputs' keys; a rerun skips stages whose key is unchanged and whose outputs exist, so a
crashed run resumes where it stopped (training also resumes inside an unfinished fold).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from dlmvi import __version__
from dlmvi.errors import StatisticsError
from dlmvi.io.atomic import write_json

STAGES = ("prepare", "train", "predict", "evaluate", "ablate", "shift", "clinical", "survival", "report")


@dataclass(frozen=True)
class StudyConfig:
    """Settings of ``dlmvi study``; saved as ``RUN/study.json``.

    Attributes:
        cohort: the cohort folder (clinical.csv, images/).
        preset: network preset, ``fast`` or ``paper``.
        sequences: sequences the network fuses.
        develop_cohort: cohort for development (cross-validation, final model, nomogram fit);
            the others are external validation. None: all patients, no external validation.
        folds: cross-validation folds.
        seed: seed of every random component.
        margin: pixels around the tumour box.
        normalization: intensity harmonisation: ``zscore`` (per image, default), ``nyul``
            (histogram standardisation fitted on the development cohort), ``global`` (one
            linear scale per sequence fitted on the development cohort: no per-image
            correction, the "no harmonisation" baseline).
        intensity_augmentation: ``standard`` (the study's) or ``strong`` (harmonisation by
            augmentation: per-sequence gain, offset, gamma, bias field).
        ablate: run the sequence ablation (trains one model per fold per combination).
        ablation_combos: combinations for the ablation (``default``, ``all3`` or a list).
        tta: average predictions over all slice combinations.
        bootstrap: bootstrap resamples for the nomogram's optimism correction.
        epochs: maximum training epochs (None: the preset's).
    """

    cohort: str
    preset: str = "fast"
    sequences: tuple[str, ...] = ("T1", "T1V", "T1D")
    develop_cohort: str | None = "2015"
    folds: int = 5
    seed: int = 0
    margin: int = 8
    normalization: str = "zscore"
    intensity_augmentation: str = "standard"
    ablate: bool = False
    ablation_combos: str = "default"
    tta: bool = False
    bootstrap: int = 200
    epochs: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sequences"] = list(self.sequences)
        return d


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
        self.out.mkdir(parents=True, exist_ok=True)
        p = self.out / "stages.json"
        self.stages_doc = json.loads(p.read_text()) if p.is_file() else {}

    # ---- paths
    @property
    def cohort(self) -> Path:
        return Path(self.config.cohort)

    @property
    def cache(self) -> Path:
        return self.out / "cache"

    @property
    def predictions(self) -> Path:
        return self.out / "predictions.csv"

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
        write_json(self.out / "stages.json", self.stages_doc)
        self.log(f"[{name}] done in {self.stages_doc[name]['seconds']} s")
        return True

    def key(self, name: str) -> str:
        return self.stages_doc.get(name, {}).get("key", "")

    def run(self) -> dict:
        """Run (or resume) every stage; return the headline numbers."""
        cfg = self.config
        write_json(self.out / "study.json", {"config": cfg.to_dict(), "dlmvi_version": __version__})
        self.prepare()
        self._run_stage("train", [cfg.preset, cfg.sequences, cfg.folds, cfg.seed, cfg.develop_cohort, cfg.epochs,
                                  cfg.intensity_augmentation, self.key("prepare")],
                        [self.out / "train" / "run.json"], self.train)
        self._run_stage("predict", [cfg.tta, self.key("train")], [self.predictions], self.predict)
        self._run_stage("evaluate", [self.key("predict")], [self.out / "evaluate" / "metrics.json"], self.evaluate)
        if cfg.ablate:
            self._run_stage("ablate", [cfg.ablation_combos, cfg.preset, cfg.folds, cfg.seed, self.key("prepare")],
                            [self.out / "ablation" / "ablation.csv"], self.ablate)
        self._run_stage("shift", [cfg.seed, self.key("predict")], [self.out / "shift" / "shift.json"], self.shift)
        self._run_stage("clinical", [cfg.develop_cohort, cfg.bootstrap, cfg.seed, self.key("predict"), _file_hash(self.cohort / "clinical.csv")],
                        [self.out / "clinical" / "nomogram.json"], self.clinical)
        self._run_stage("survival", [self.key("predict"), _file_hash(self.cohort / "clinical.csv")],
                        [self.out / "survival" / "survival.json"], self.survival)
        self.report()
        return headline(self.out)

    # ---- stages
    def prepare(self) -> None:
        """Always called: prepare is incremental and cheap when nothing changed."""
        from dlmvi.model.presets import get_preset
        from dlmvi.preprocess.cache import PrepareConfig
        from dlmvi.preprocess.prepare import prepare_cohort

        cfg = self.config
        size = get_preset(cfg.preset).input_size
        if cfg.normalization not in ("zscore", "nyul", "global"):
            from dlmvi.errors import ConfigError

            raise ConfigError(f"--normalization {cfg.normalization!r}: use zscore, nyul or global")
        fitted = cfg.normalization in ("nyul", "global")  # fitted on the development cohort
        pcfg = PrepareConfig(sequences=tuple(cfg.sequences), size=size, margin=cfg.margin,
                             normalization="none" if fitted else "zscore")
        self.log("[prepare] checking the cache ...")
        t0 = time.perf_counter()
        raw = self.out / "cache_raw" if fitted else self.cache
        prepare_cohort(self.cohort, raw, pcfg, progress=True)
        if fitted:
            from dlmvi.preprocess.harmonize import harmonize_cache, read_harmonization

            old = self.stages_doc.get("prepare", {})
            current = read_harmonization(self.cache) if (self.cache / "cache.json").is_file() else None
            if (_file_hash(raw / "index.csv", raw / "patients.csv") != old.get("raw")
                    or (current or {}).get("method") != cfg.normalization):
                harmonize_cache(raw, self.cache, method=cfg.normalization, develop_cohort=cfg.develop_cohort)
        key = _hash([_file_hash(self.cache / "index.csv", self.cache / "patients.csv", self.cache / "cache.json"), pcfg.to_dict(), cfg.normalization])
        self.stages_doc["prepare"] = {"key": key, "raw": _file_hash(raw / "index.csv", raw / "patients.csv"),
                                      "seconds": round(time.perf_counter() - t0, 1)}
        write_json(self.out / "stages.json", self.stages_doc)

    def train(self) -> None:
        from dlmvi.train.config import TrainConfig
        from dlmvi.train.run import run_training

        cfg = self.config
        tcfg = TrainConfig(preset=cfg.preset, sequences=tuple(cfg.sequences), folds=cfg.folds, seed=cfg.seed,
                           develop_cohort=cfg.develop_cohort, epochs=cfg.epochs,
                           intensity_augmentation=cfg.intensity_augmentation)
        run_training(self.cache, self.out / "train", tcfg)

    def predict(self) -> None:
        import pandas as pd

        from dlmvi.io.atomic import write_csv
        from dlmvi.model.inference import predict_cache, write_prediction

        cfg = self.config
        pred = predict_cache(self.out / "train", self.cache, tta=cfg.tta)
        write_prediction(pred, self.out / "predict" / "final_predictions.csv")
        final = pred.frame.copy()
        final["source"] = "final model"
        cv_path = self.out / "train" / "cv_predictions.csv"
        if cfg.develop_cohort is not None and cv_path.is_file():
            cv = pd.read_csv(cv_path, dtype={"patient_id": str, "cohort": str})
            cv["source"] = "cross-validation (out of fold)"
            final = pd.concat([cv, final[~final["patient_id"].isin(cv["patient_id"])]], ignore_index=True)
        write_csv(self.predictions, final)

    def evaluate(self) -> None:
        from dlmvi.evaluate.metrics import run_evaluate

        run_evaluate(self.predictions, self.out / "evaluate")

    def ablate(self) -> None:
        from dlmvi.evaluate.ablation import run_ablation

        cfg = self.config
        run_ablation(self.cache, self.out / "ablation", combos=cfg.ablation_combos, preset=cfg.preset,
                     folds=cfg.folds, seed=cfg.seed, develop_cohort=cfg.develop_cohort)

    def shift(self) -> None:
        from dlmvi.evaluate.shift import run_shift

        run_shift(self.out / "train", self.cache, self.out / "shift", seed=self.config.seed)

    def clinical(self) -> None:
        from dlmvi.stats.clinical import run_clinical
        from dlmvi.stats.config import ClinicalConfig

        cfg = self.config
        ccfg = ClinicalConfig(n_bootstrap=cfg.bootstrap, seed=cfg.seed)
        try:
            run_clinical(self.cohort / "clinical.csv", self.out / "clinical", predictions=self.predictions,
                         develop_cohort=cfg.develop_cohort, config=ccfg)
        except StatisticsError as exc:
            # The data cannot support the model (e.g. DL-MVI constant: the network predicts one
            # class). Recorded for the report rather than hiding the other stages' results.
            write_json(self.out / "clinical" / "nomogram.json", {"error": str(exc)})
            self.log(f"[clinical] could not fit the clinical models: {exc}")

    def survival(self) -> None:
        from dlmvi.stats.survival_pipeline import run_survival

        run_survival(self.cohort / "clinical.csv", self.out / "survival", predictions=self.predictions)

    def report(self) -> Path:
        from dlmvi.report.build import build_report

        t0 = time.perf_counter()
        path = build_report(self.out)
        self.log(f"[report] {path} ({time.perf_counter() - t0:.1f} s)")
        return path


def headline(run: Path) -> dict:
    """The study's headline numbers, read back from the stages' outputs."""
    run = Path(run)
    out: dict = {"report": str(run / "report.html")}
    meta = run / "cache" / "cache.json"
    out["synthetic"] = bool(json.loads(meta.read_text()).get("synthetic")) if meta.is_file() else False

    def load(rel):
        p = run / rel
        return json.loads(p.read_text()) if p.is_file() else None

    cvm = load("train/cv_metrics.json")
    if cvm:
        out["cv_auc_mean"], out["cv_auc_sd"] = cvm.get("auc_mean"), cvm.get("auc_sd")
    ev = load("evaluate/metrics.json")
    if ev:
        out["evaluate"] = {c: {"n": (m.get("binary") or {}).get("n"), "auc": (m.get("binary") or {}).get("auc"),
                               "auc_ci": [(m.get("binary") or {}).get("auc_ci_low"), (m.get("binary") or {}).get("auc_ci_high")],
                               "accuracy": (m.get("binary") or {}).get("accuracy")}
                           for c, m in (ev.get("cohorts") or {}).items()}
    nom = load("clinical/nomogram.json")
    if nom and "error" not in nom:
        out["nomogram_formula"] = nom.get("formula")
        out["nomogram_auc"] = {c: v.get("auc") for c, v in (nom.get("validation") or {}).items()}
    return out


def run_demo(out: Path, patients: int = 321, seed: int = 0, ablate: bool = False, log=print) -> dict:
    """Generate the synthetic phantom under ``out/cohort`` (if absent) and run the study."""
    from dlmvi.datasets.phantom import make_phantom

    out = Path(out)
    cohort = out / "cohort"
    if not (cohort / "clinical.csv").is_file():
        log(f"[phantom] writing the synthetic cohort ({patients} patients) to {cohort} ...")
        t0 = time.perf_counter()
        make_phantom(cohort, n_patients=patients, seed=seed)
        log(f"[phantom] done in {time.perf_counter() - t0:.1f} s")
    cfg = StudyConfig(cohort=str(cohort), preset="fast", develop_cohort="2015", seed=seed, ablate=ablate)
    return Study(cfg, out, log=log).run()
