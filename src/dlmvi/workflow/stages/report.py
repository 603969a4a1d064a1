"""``report.html``: every table and figure of the study in one self-contained file (always rebuilt)."""

from __future__ import annotations

import time

from dlmvi.workflow.stages.base import Stage


class ReportStage(Stage):
    name = "report"

    def run(self, study):
        from dlmvi.report.build import build_report

        t0 = time.perf_counter()
        path = build_report(study.out)
        study.log(f"[report] {path} ({time.perf_counter() - t0:.1f} s)")
        return path
