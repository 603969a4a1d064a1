"""``transport/``: the external cohort without/with image harmonisation, ComBat on features and
recalibration on half (optional, ``--transport``)."""

from __future__ import annotations

from dlmvi.workflow.config import settings_key
from dlmvi.workflow.stages.base import Stage


class TransportStage(Stage):
    name = "transport"

    def enabled(self, study) -> bool:
        return study.config.transport

    def key(self, study) -> list:
        cfg = study.config
        return [settings_key(cfg.train), cfg.normalization, cfg.tta, study.key("predict")]

    def outputs(self, study):
        return [study.layout.transport_json]

    def run(self, study) -> None:
        from dlmvi.workflow.transport import run_transport

        run_transport(study.out, log=study.log)
