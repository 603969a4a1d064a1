"""What a site does for each task of the coordinator (engine-independent; the FLARE executor
:mod:`.client` calls :meth:`SiteTasks.handle`)."""

from __future__ import annotations

import numpy as np

from dlmvi.errors import DlmviError
from dlmvi.workflow.federated.local import initial_weights, local_train, weight_shapes
from dlmvi.workflow.federated.site import Site, site_seed


class SiteTasks:
    """The answers of one :class:`~dlmvi.workflow.federated.site.Site`."""

    def __init__(self, site: Site):
        self.site = site
        self.shapes = weight_shapes(site.net)

    def handle(self, task: str, params: dict, meta: dict) -> tuple[dict, dict]:
        handler = {"summary": self.summary, "moments": self.moments, "train": self.train,
                   "evaluate": self.evaluate, "cross_evaluate": self.cross_evaluate}.get(task)
        if handler is None:
            raise DlmviError(f"site {self.site.name}: unknown task {task!r} (a newer coordinator?)")
        return handler(params, meta)

    def summary(self, params, meta):
        out, info = self.site.summary()
        if info["status"] == "ok" and self.site.cfg.harmonization != "none":
            stats, _ = self.site.landmark_sums()
            out.update(stats)
        return out, info

    def moments(self, params, meta):
        scales = {seq: params[f"nyul_sum/{seq}"] for seq in self.site.sequences}
        return self.site.moment_sums(scales)

    def train(self, params, meta):
        return self.site.train(params, meta.get("harmonization"), int(meta["first_epoch"]), float(meta.get("mu", 0.0)))

    def evaluate(self, params, meta):
        """The global model on the held-out patients; then, when asked, the local-only model
        (trained from the same seeded start for the same epochs in total) goes back too."""
        site, doc = self.site, meta.get("harmonization")
        out, info = site.evaluate(params, doc, "global")
        if meta.get("train_local"):
            from dataclasses import replace

            from dlmvi.model.checkpoint import save_checkpoint
            from dlmvi.workflow.federated.local import network_from

            cfg = replace(site.cfg.train_config(), epochs=int(meta["local_epochs"]))
            start = initial_weights(site.net, site.cfg.seed)
            x = site.part(site.inputs(doc), site.train_ids)
            local, _, _ = local_train(start, site.net, x, site.labels_of(site.train_ids), site.sequences, cfg,
                                      site_seed(site.name, site.cfg.seed), 1, 0.0)
            save_checkpoint(site.paths.local / "model", network_from(local, site.net),
                            {"network": site.net.to_dict(), "sequences": list(site.sequences), "classes": site.cfg.classes,
                             "harmonization": doc, "prepare": site.cache.meta["params"],
                             "split": {"train": site.train_ids, "val": [], "test": site.test_ids},
                             "synthetic": site.cache.synthetic, "federated": {"local_model_of": site.name}})
            out.update(local)
        return out, info

    def cross_evaluate(self, params, meta):
        metrics = {}
        for model in meta.get("models", []):
            prefix = f"{model}/"
            weights = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
            _, info = self.site.evaluate(weights, meta.get("harmonization"), model, f"local_{model}")
            metrics[model] = info
        n = len(self.site.test_ids)
        y = int((self.site.labels_of(self.site.test_ids) > 0).sum())
        return {"events/test": np.array([n, y], np.int64)}, {"site": self.site.name, "metrics": metrics}


__all__ = ["SiteTasks"]
