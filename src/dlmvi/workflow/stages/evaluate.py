"""``evaluate/``: accuracy, precision, recall, F1, AUC with DeLong CI per cohort and scanner group."""

from __future__ import annotations

import json
from pathlib import Path

from dlmvi.workflow.config import file_hash
from dlmvi.workflow.stages.base import Stage


def site_groups(predictions: Path, cohort: Path, out: Path, column_map=None) -> None:
    """DL-MVI figures per cohort and scanner group (``evaluate/groups.csv``)."""
    import pandas as pd

    from dlmvi.constants import DL_THRESHOLD
    from dlmvi.stats.sites import group_table, read_scanners, scanner_source, write_groups

    frame = pd.read_csv(predictions, dtype={"patient_id": str, "cohort": str})
    meta = cohort / "cohort.json"
    synthetic = bool(json.loads(meta.read_text()).get("synthetic")) if meta.is_file() else False
    table = group_table(frame, "dl_prob", read_scanners(cohort, column_map=column_map), threshold=DL_THRESHOLD,
                        decision_column="dl_mvi", what="DL-MVI")
    write_groups(table, out, scanner_source=scanner_source(cohort, column_map), synthetic=synthetic)


class EvaluateStage(Stage):
    name = "evaluate"

    def key(self, study) -> list:
        return [study.key("predict"), file_hash(study.cohort / "scanners.csv")]

    def outputs(self, study):
        return [study.layout.metrics_json]

    def run(self, study) -> None:
        from dlmvi.evaluate.metrics import run_evaluate

        run_evaluate(study.predictions, study.layout.evaluate)
        site_groups(study.predictions, study.cohort, study.layout.evaluate, study.column_map)
