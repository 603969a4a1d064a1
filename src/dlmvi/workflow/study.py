"""The whole study in one call: ``dlmvi study`` (``dlmvi demo``: :mod:`dlmvi.workflow.demo`).

Stages, in the data's order, each writing into its own folder of ``RUN/`` (one object each in
:mod:`dlmvi.workflow.stages`; every path from :class:`~dlmvi.layout.RunLayout`)::

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
    agreement/    agreement    two readers' boxes, ICC of DL-MVI between their ROIs (when the
                               cohort holds two readers' files rois.A.csv, rois.B.csv)
    radiomics/    radiomics    MIRP features, rad-score in the same folds, the six-model comparison
                               (optional, ``--radiomics``; :mod:`dlmvi.workflow.radiomics`)
    report.html   report       everything above in one self-contained file

``RUN/stages.json`` records for each finished stage a key made of its settings and its
inputs' keys (:mod:`dlmvi.workflow.config`); a rerun skips stages whose key is unchanged and
whose outputs exist, so a crashed run resumes where it stopped (training also resumes inside
an unfinished fold).

Before the first expensive stage, :func:`dlmvi.workflow.preflight.preflight` checks every input
the stages will need, in seconds; a mistake there ends the study with one message before
anything is trained.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dlmvi import __version__
from dlmvi.io.atomic import make_dirs, write_json
from dlmvi.layout import RunLayout
from dlmvi.preprocess.cache import CACHE_JSON
from dlmvi.workflow.config import StudyConfig, file_hash, hash_key
from dlmvi.workflow.stages.ablate import AblateStage
from dlmvi.workflow.stages.agreement import AgreementStage
from dlmvi.workflow.stages.base import Stage
from dlmvi.workflow.stages.clinical import ClinicalStage
from dlmvi.workflow.stages.evaluate import EvaluateStage
from dlmvi.workflow.stages.predict import PredictStage, record_sources
from dlmvi.workflow.stages.prepare import PrepareStage
from dlmvi.workflow.stages.radiomics import RadiomicsStage
from dlmvi.workflow.stages.report import ReportStage
from dlmvi.workflow.stages.shift import ShiftStage
from dlmvi.workflow.stages.survival import SurvivalStage
from dlmvi.workflow.stages.train import TrainStage
from dlmvi.workflow.stages.transport import TransportStage

#: The stages with a resume key, in the data's order (prepare runs first and the report last, always).
PIPELINE: tuple[Stage, ...] = (TrainStage(), PredictStage(), EvaluateStage(), AblateStage(), ShiftStage(),
                               TransportStage(), ClinicalStage(), SurvivalStage(), AgreementStage(),
                               RadiomicsStage())
__all__ = ["Study", "StudyConfig", "PIPELINE", "STAGES", "headline"]

STAGES = ("prepare",) + tuple(s.name for s in PIPELINE) + ("report",)


@dataclass
class Study:
    """Runs the stages of a study into ``out`` (see the module docstring)."""

    config: StudyConfig
    out: Path
    log: Callable[[str], None] = print
    stages_doc: dict = field(default_factory=dict)
    #: whether clinical.csv has survival outcomes (set by :meth:`preflight`)
    survival_columns: bool = True

    def __post_init__(self):
        self.out = Path(self.out)
        self.layout = RunLayout(self.out)
        p = self.layout.stages_json
        self.stages_doc = json.loads(p.read_text()) if p.is_file() else {}

    # ---- inputs
    @property
    def cohort(self) -> Path:
        return Path(self.config.cohort)

    @property
    def table(self) -> Path:
        return self.cohort / "clinical.csv"

    @property
    def table_key(self) -> str:
        """The clinical table's (and column map's) bytes: part of the statistics stages' keys."""
        return file_hash(self.table, *([Path(self.config.columns)] if self.config.columns else []))

    @property
    def column_map(self):
        """The hospital's column map (``--columns``), or None."""
        from dlmvi.io.tables import ColumnMap

        return ColumnMap.from_toml(self.config.columns) if self.config.columns else None

    @property
    def cache(self) -> Path:
        return self.layout.cache

    @property
    def training_cache(self) -> Path:
        """The cache the network trains on: ``cache/`` (z-scored), or ``cache_raw/`` when the
        harmonisation is fitted inside the folds."""
        return self.layout.cache_raw if self.config.normalization != "zscore" else self.cache

    @property
    def predictions(self) -> Path:
        return self.layout.predictions

    # ---- stage machinery
    def key(self, name: str) -> str:
        """The recorded resume key of stage ``name`` ("" when it has not finished)."""
        return self.stages_doc.get(name, {}).get("key", "")

    def run_stage(self, stage: Stage) -> bool:
        """Run ``stage`` unless its key is recorded and its outputs exist; True when it ran."""
        key = hash_key({"stage": stage.name, "key": stage.key(self), "version": __version__})
        done = self.stages_doc.get(stage.name, {})
        if done.get("key") == key and all(p.exists() for p in stage.outputs(self)):
            self.log(f"[{stage.name}] up to date, skipped")
            return False
        self.log(f"[{stage.name}] running ...")
        t0 = time.perf_counter()
        stage.run(self)
        self.stages_doc[stage.name] = {"key": key, "seconds": round(time.perf_counter() - t0, 1),
                                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(self.layout.stages_json, self.stages_doc)
        self.log(f"[{stage.name}] done in {self.stages_doc[stage.name]['seconds']} s")
        return True

    def preflight(self) -> dict:
        """Check every input the stages will need (:func:`dlmvi.workflow.preflight.preflight`)."""
        from dlmvi.workflow.preflight import preflight

        found = preflight(self.config, self.layout, log=self.log)
        self.survival_columns = found["survival_columns"]
        return found

    def run(self) -> dict:
        """Check every input (:meth:`preflight`), then run (or resume) every stage; return the
        headline numbers."""
        lay = self.layout
        self.preflight()
        make_dirs(self.out)
        write_json(lay.study_json, {"config": self.config.to_dict(), "dlmvi_version": __version__})
        if lay.predictions.is_file():  # a resumed run: where its predictions came from stays recorded
            record_sources(lay)
        PrepareStage().run(self)
        for stage in PIPELINE:
            if stage.enabled(self):
                self.run_stage(stage)
        ReportStage().run(self)
        return headline(self.out)


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
