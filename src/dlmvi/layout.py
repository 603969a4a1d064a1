"""Where each stage writes: the layout of a training folder and of a study folder.

Every module that reads or writes a run folder asks these objects for its paths, so a file
name exists in one place only::

    RUN/                                 RunLayout (``dlmvi study``)
      study.json  stages.json            settings; finished stages and their keys
      cache/  cache_raw/                 patch cache (cache_raw: before harmonisation)
      train/                             TrainLayout (``dlmvi train``)
        run.json  splits.json  cv_predictions.csv  cv_metrics.json  fold_<i>/  final/
      predict/final_predictions.csv      the final model on every cohort (+ features)
      predictions.csv                    out-of-fold (development) + final model (others)
      evaluate/metrics.json  ablation/ablation.csv  shift/shift.json
      clinical/nomogram.json  survival/survival.json  transport/transport.json
      radiomics/radiomics_summary.json   rad-score and the six-model comparison (--radiomics)
      report.html  report_files/
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The file each stage leaves as its result (the stage writes it last).
METRICS_JSON = "metrics.json"          # evaluate
ABLATION_CSV = "ablation.csv"          # ablate
SHIFT_JSON = "shift.json"              # shift
NOMOGRAM_JSON = "nomogram.json"        # clinical
SURVIVAL_JSON = "survival.json"        # survival
RADIOMICS_SUMMARY_JSON = "radiomics_summary.json"  # radiomics (dlmvi study --radiomics, dlmvi compare)
TRANSPORT_JSON = "transport.json"      # transport

#: An exported model folder's description (``dlmvi export``; :mod:`dlmvi.deploy.model`).
MODEL_JSON = "model.json"


@dataclass(frozen=True)
class TrainLayout:
    """A training folder (``dlmvi train --out``, or ``RUN/train`` of a study)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def splits_json(self) -> Path:
        return self.root / "splits.json"

    @property
    def cv_predictions(self) -> Path:
        return self.root / "cv_predictions.csv"

    @property
    def cv_metrics(self) -> Path:
        return self.root / "cv_metrics.json"

    @property
    def final(self) -> Path:
        return self.root / "final"

    def fold(self, i: int) -> Path:
        return self.root / f"fold_{i}"


@dataclass(frozen=True)
class RunLayout:
    """A study folder (``dlmvi study --out``)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def _p(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @property
    def study_json(self) -> Path:
        return self._p("study.json")

    @property
    def stages_json(self) -> Path:
        return self._p("stages.json")

    @property
    def cache(self) -> Path:
        return self._p("cache")

    @property
    def cache_raw(self) -> Path:
        return self._p("cache_raw")

    @property
    def train(self) -> TrainLayout:
        return TrainLayout(self._p("train"))

    @property
    def final_predictions(self) -> Path:
        return self._p("predict", "final_predictions.csv")

    @property
    def predictions(self) -> Path:
        return self._p("predictions.csv")

    @property
    def evaluate(self) -> Path:
        return self._p("evaluate")

    @property
    def metrics_json(self) -> Path:
        return self._p("evaluate", METRICS_JSON)

    @property
    def ablation(self) -> Path:
        return self._p("ablation")

    @property
    def ablation_csv(self) -> Path:
        return self._p("ablation", ABLATION_CSV)

    @property
    def shift(self) -> Path:
        return self._p("shift")

    @property
    def shift_json(self) -> Path:
        return self._p("shift", SHIFT_JSON)

    @property
    def clinical(self) -> Path:
        return self._p("clinical")

    @property
    def nomogram_json(self) -> Path:
        return self._p("clinical", NOMOGRAM_JSON)

    @property
    def survival(self) -> Path:
        return self._p("survival")

    @property
    def survival_json(self) -> Path:
        return self._p("survival", SURVIVAL_JSON)

    @property
    def radiomics(self) -> Path:
        return self._p("radiomics")

    @property
    def radiomics_summary(self) -> Path:
        return self._p("radiomics", RADIOMICS_SUMMARY_JSON)

    @property
    def transport(self) -> Path:
        return self._p("transport")

    @property
    def transport_json(self) -> Path:
        return self._p("transport", TRANSPORT_JSON)

    @property
    def combat_shift_csv(self) -> Path:
        return self._p("transport", "combat_shift.csv")

    @property
    def report(self) -> Path:
        return self._p("report.html")

    @property
    def report_files(self) -> Path:
        return self._p("report_files")


__all__ = ["RunLayout", "TrainLayout", "METRICS_JSON", "ABLATION_CSV", "SHIFT_JSON", "NOMOGRAM_JSON",
           "SURVIVAL_JSON", "TRANSPORT_JSON", "MODEL_JSON",
           "RADIOMICS_SUMMARY_JSON"]
