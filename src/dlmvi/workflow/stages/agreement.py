"""``agreement/``: two readers' boxes and what they do to DL-MVI (issue 29), when the cohort
holds two readers' files (``rois.A.csv``, ``rois.B.csv``; the first two by name)."""

from __future__ import annotations

from dlmvi.workflow.stages.base import Stage


class AgreementStage(Stage):
    name = "agreement"

    def readers(self, study) -> list[str]:
        from dlmvi.workflow.agreement import reader_files

        return reader_files(study.cohort)[:2]

    def enabled(self, study) -> bool:
        return len(self.readers(study)) == 2

    def key(self, study) -> list:
        from dlmvi.workflow.config import file_hash

        readers = self.readers(study)
        return [readers, file_hash(*(study.cohort / f"rois.{r}.csv" for r in readers)), study.key("train"),
                study.key("clinical")]

    def outputs(self, study):
        from dlmvi.workflow.agreement import AGREEMENT_JSON

        return [study.out / "agreement" / AGREEMENT_JSON]

    def run(self, study) -> None:
        from dlmvi.workflow.agreement import study_agreement

        study_agreement(study.out, study.cohort, self.readers(study), study.column_map)
