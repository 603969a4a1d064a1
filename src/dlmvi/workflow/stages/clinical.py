"""``clinical/``: Table 1, the multivariate model, the nomogram, ROC, calibration and decision curves."""

from __future__ import annotations

from dlmvi.errors import StatisticsError
from dlmvi.io.atomic import write_json
from dlmvi.workflow.config import settings_key
from dlmvi.workflow.stages.base import Stage


class ClinicalStage(Stage):
    name = "clinical"

    def key(self, study) -> list:
        cfg = study.config
        return [settings_key(cfg.clinical), cfg.develop_cohort, study.key("predict"), study.table_key]

    def outputs(self, study):
        return [study.layout.nomogram_json]

    def run(self, study) -> None:
        from dlmvi.stats.clinical import run_clinical
        from dlmvi.stats.sites import nomogram_groups

        cfg = study.config
        try:
            run_clinical(study.table, study.layout.clinical, predictions=study.predictions,
                         develop_cohort=cfg.develop_cohort, config=cfg.clinical, column_map=study.column_map)
            # the nomogram per cohort and scanner group (clinical/groups.csv)
            nomogram_groups(study.table, study.predictions, study.layout.clinical, column_map=study.column_map)
        except StatisticsError as exc:
            # The data cannot support the model (e.g. DL-MVI constant: the network predicts one
            # class). Recorded for the report rather than hiding the other stages' results.
            write_json(study.layout.nomogram_json, {"error": str(exc)})
            study.log(f"[clinical] could not fit the clinical models: {exc}")
