"""``radiomics/``: radiomics features, the rad-score in the DL-MVI folds and the six-model
comparison (issue 27), with ``dlmvi study --radiomics``."""

from __future__ import annotations

from dlmvi.workflow.stages.base import Stage


class RadiomicsStage(Stage):
    name = "radiomics"

    def enabled(self, study) -> bool:
        return study.config.radiomics is not None

    def key(self, study) -> list:
        from dlmvi.workflow.config import file_hash

        return [study.config.radiomics, study.key("predict"), study.key("clinical"), study.table_key,
                file_hash(study.cohort / "rois.csv")]

    def outputs(self, study):
        return [study.layout.radiomics_summary]

    def run(self, study) -> None:
        from dlmvi.workflow.radiomics import ComparisonConfig, extract_for_run, run_compare

        cfg = ComparisonConfig.from_dict(study.config.radiomics)
        extract_for_run(study.out, study.cohort, cfg, study.column_map)
        run_compare(study.out, cfg, column_map=study.column_map, log=study.log)
