"""``survival/``: Kaplan-Meier, log-rank and Cox by pathological MVI and by DL-MVI."""

from __future__ import annotations

from dlmvi.io.atomic import write_json
from dlmvi.workflow.stages.base import Stage


class SurvivalStage(Stage):
    name = "survival"

    def key(self, study) -> list:
        return [study.key("predict"), study.table_key]

    def outputs(self, study):
        return [study.layout.survival_json]

    def run(self, study) -> None:
        from dlmvi.stats.survival_pipeline import run_survival

        if not study.survival_columns:
            write_json(study.layout.survival_json, {
                "synthetic": False, "analyses": [],
                "notes": {"survival": "clinical.csv has no os_months/os_event, rfs_months/rfs_event or dates"}})
            study.log("[survival] skipped: clinical.csv has no survival columns")
            return
        run_survival(study.table, study.layout.survival, predictions=study.predictions, column_map=study.column_map)
