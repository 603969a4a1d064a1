"""``shift/``: t-SNE panels, cohort separability and MMD per sequence (skipped with one cohort)."""

from __future__ import annotations

from dlmvi.io.atomic import write_json
from dlmvi.workflow.stages.base import Stage


class ShiftStage(Stage):
    name = "shift"

    def key(self, study) -> list:
        return [study.config.seed, study.key("predict")]

    def outputs(self, study):
        return [study.layout.shift_json]

    def run(self, study) -> None:
        from dlmvi.evaluate.shift import run_shift
        from dlmvi.preprocess.cache import PatchCache

        cohorts = PatchCache(study.cache).cohorts
        if len(cohorts) < 2:
            note = (f"skipped: one cohort ({', '.join(cohorts)}); the shift analysis compares the network's features "
                    "between cohorts")
            write_json(study.layout.shift_json, {"skipped": note, "cohorts": list(cohorts)})
            study.log(f"[shift] {note}")
            return
        run_shift(study.layout.train.root, study.cache, study.layout.shift, seed=study.config.seed)
