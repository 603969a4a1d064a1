"""The site side on NVIDIA FLARE: an Executor that answers the coordinator's tasks from the
site's own folder, checks every answer (:func:`~.payload.check_outgoing`) and keeps it in the
outbox before FLARE sends it.

The site's folder is never part of the job: in a real deployment ``dlmvi federated site`` writes
it into the site's own FLARE workspace (``local/dlmvi_site.json``); the one-machine simulation
passes it to each site's executor.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from nvflare.apis.executor import Executor
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.shareable import make_reply
from nvflare.app_common.abstract.fl_model import FLModel
from nvflare.app_common.utils.fl_model_utils import FLModelUtils

from dlmvi.errors import DlmviError
from dlmvi.workflow.federated.config import FedConfig
from dlmvi.workflow.federated.payload import Outbox, check_outgoing, vocabulary
from dlmvi.workflow.federated.site import SITE_CONFIG, Site
from dlmvi.workflow.federated.tasks import SiteTasks


class DlmviExecutor(Executor):
    """Args:
        config: the federation's configuration (``FedConfig.to_dict()``; sent by the coordinator).
        site_folder: the site's folder (simulation only; a deployed site names it locally).
    """

    def __init__(self, config: dict, site_folder: str = ""):
        super().__init__()
        self.config, self.site_folder = config, site_folder
        self._tasks = None

    def _site_tasks(self, fl_ctx) -> SiteTasks:
        if self._tasks is None:
            name = fl_ctx.get_identity_name()
            folder = self.site_folder
            if not folder:
                local = Path(fl_ctx.get_engine().get_workspace().get_site_config_dir()) / SITE_CONFIG
                folder = json.loads(local.read_text())["folder"]
            cfg = FedConfig.from_dict(self.config)
            self._tasks = SiteTasks(Site(name, folder, cfg))
        return self._tasks

    def execute(self, task_name, shareable, fl_ctx, abort_signal):
        try:
            tasks = self._site_tasks(fl_ctx)
            received = FLModelUtils.from_shareable(shareable)
            params = {k: np.asarray(v) for k, v in (received.params or {}).items()}
            out, meta = tasks.handle(task_name, params, dict(received.meta or {}))
            site = tasks.site
            nbytes = check_outgoing(out, meta, vocabulary(site.cfg.sites), tasks.shapes)
            Outbox(site.paths.outbox).record(task_name, out, meta, nbytes)
        except DlmviError as exc:
            self.log_error(fl_ctx, f"dlmvi: {exc}")
            return make_reply(ReturnCode.EXECUTION_EXCEPTION)
        return FLModelUtils.to_shareable(FLModel(params=out, meta=meta))


__all__ = ["DlmviExecutor"]
