"""The coordinator on NVIDIA FLARE: a ``ModelController`` whose ``run`` is the study of
:class:`~dlmvi.workflow.federated.coordinator.Coordinator`, with FLARE's task broadcast as its
``send``; at the end it writes the coordinator's run folder (:mod:`.result`)."""

from __future__ import annotations

import numpy as np
from nvflare.app_common.abstract.fl_model import FLModel
from nvflare.app_common.workflows.model_controller import ModelController

from dlmvi.workflow.federated.config import FedConfig


class DlmviController(ModelController):
    """Args:
        config: ``FedConfig.to_dict()``.
        out: the coordinator's run folder (on the coordinator's machine).
    """

    def __init__(self, config: dict, out: str):
        super().__init__(ignore_result_error=True)  # a failing site is left out of its round, named
        self.config, self.out = config, out

    def _send(self, task: str, params: dict, meta: dict, targets: list[str], timeout: int) -> dict:
        data = FLModel(params=params or {"events/none": np.zeros(1)}, meta=meta, current_round=meta.get("round", 0))
        results = self.broadcast_model(data=data, task_name=task, targets=targets, min_responses=1,
                                       timeout=timeout, wait_time_after_min_received=timeout)
        return {r.meta["client_name"]: ({k: np.asarray(v) for k, v in (r.params or {}).items()}, dict(r.meta))
                for r in results}

    def run(self):
        from dlmvi.workflow.federated.coordinator import Coordinator, FederationError
        from dlmvi.workflow.federated.result import write_result

        cfg = FedConfig.from_dict(self.config)
        coord = Coordinator(cfg, self.out, self._send, log=self.info)
        try:
            st, metrics, local = coord.run()
            write_result(self.out, cfg, st, metrics, local, coord.excluded)
        except FederationError as exc:
            from dlmvi.workflow.federated.result import write_failure

            write_failure(self.out, str(exc))
            self.error(f"dlmvi: {exc}")
            self.system_panic(str(exc), self.fl_ctx)


__all__ = ["DlmviController"]
