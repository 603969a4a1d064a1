"""The coordinator's run folder: the global model as an ordinary training run, plus the study.

``RUN/`` (no patient ID, path of a site or voxel in any of it)::

    run.json                 kind dlmvi-run/1, complete; the training and network settings
    final/model.{json,safetensors}
                             the global model (``dlmvi predict RUN ...``, ``export``, ``serve``)
    federation.json          configuration, sites left out and why, every round (sites, dropped
                             sites, bytes, seconds), the harmonisation, wall time
    sites.csv                each model (global; each site's local-only model) on each site's
                             held-out patients: n, events, AUC with DeLong CI, calibration
    tables/table1.csv, tables/events.csv
                             Table 1 and events per site, counts only, cells < min_cell suppressed
    federation/              the resumable state (:mod:`.state`)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.io.atomic import write_csv, write_json
from dlmvi.layout import TrainLayout

FEDERATION_JSON = "federation.json"
SITES_CSV = "sites.csv"


def checkpoint_meta(cfg, harmonization, summaries: dict) -> dict:
    """The global model's checkpoint document: what ``dlmvi predict``/``export`` read."""
    from dlmvi.preprocess.patches import input_normalization
    from dlmvi.train.run import CLASS_NAMES

    prep = cfg.prepare_config()
    synthetic = any(bool(s.get("meta", {}).get("synthetic")) for s in summaries.values())
    counts = {s: {k: v.get("meta", {}).get(k) for k in ("n_train", "n_test", "per_class")} for s, v in summaries.items()}
    return {"network": cfg.network_config().to_dict(), "training": cfg.train_config().to_dict(),
            "sequences": list(cfg.sequences), "classes": cfg.classes, "class_names": CLASS_NAMES[cfg.classes],
            "prepare": prep.to_dict(), "normalization": input_normalization(prep.normalization, harmonization),
            "harmonization": harmonization, "synthetic": synthetic,
            "split": {"train": [], "val": [], "test": [],
                      "note": "federated: the training patients stay at their sites (SITE_OUT/split.json)"},
            "federated": {"sites": list(cfg.sites), "rounds": cfg.rounds, "algorithm": cfg.algorithm,
                          "training_data": counts}}


def metrics_frame(metrics: dict) -> pd.DataFrame:
    """One row per (model, site): the held-out figures each site sent."""
    rows = []
    for model, per_site in metrics.items():
        for site, m in per_site.items():
            rows.append({"model": "global (federated)" if model == "global" else f"local-only {model}",
                         "site": site, "own_site": model == site, "n": m.get("n"), "n_events": m.get("n_events"),
                         **m.get("metrics", {})})
    return pd.DataFrame(rows)


def write_result(out, cfg, st, metrics: dict, local: dict, excluded: dict) -> Path:
    """Write the run folder (see the module docstring); returns ``final/``."""
    from dlmvi.model.checkpoint import save_checkpoint
    from dlmvi.workflow.federated.local import network_from
    from dlmvi.workflow.federated.tables import tables_frame

    out, lay = Path(out), TrainLayout(out)
    meta = checkpoint_meta(cfg, st.harmonization, st.summaries)
    meta["progress"] = {"epoch": st.round * cfg.local_epochs, "best_epoch": st.round * cfg.local_epochs,
                        "best_val_loss": None, "bad_epochs": 0, "complete": True}
    save_checkpoint(lay.final / "model", network_from(st.weights, cfg.network_config()), meta)
    frame = metrics_frame(metrics)
    write_csv(out / SITES_CSV, frame)
    per_site = {s: (np.asarray(v["table1"]), np.asarray(v["events"])) for s, v in st.summaries.items()}
    t1, ev = tables_frame(per_site, cfg.min_cell)
    write_csv(out / "tables" / "table1.csv", t1)
    write_csv(out / "tables" / "events.csv", ev)
    write_json(out / FEDERATION_JSON, {
        "kind": "dlmvi-federation/1", "synthetic": meta["synthetic"], "engine": engine_version(),
        "config": cfg.to_dict(), "excluded": excluded, "rounds": st.history, "harmonization": st.harmonization,
        "sites_metrics": frame.to_dict("records"), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bytes_per_round": [h["bytes_to_sites"] + h["bytes_from_sites"] for h in st.history],
    })
    write_json(lay.run_json, {"kind": "dlmvi-run/1", "complete": True, "federated": True,
                              "training": meta["training"], "network": meta["network"], "sequences": meta["sequences"],
                              "classes": cfg.classes, "class_names": meta["class_names"], "prepare": meta["prepare"],
                              "normalization": meta["normalization"], "harmonization": st.harmonization,
                              "synthetic": meta["synthetic"], "n_patients": sum(
                                  int(v["meta"].get("n_train") or 0) for v in st.summaries.values()),
                              "final": {"folder": lay.final.name, "rounds": st.round}})
    return lay.final


def write_failure(out, message: str) -> None:
    """Record why the federation stopped (the CLI prints it)."""
    write_json(Path(out) / "federation_failed.json", {"error": message})


def engine_version() -> str:
    from importlib.metadata import version

    return f"nvflare {version('nvflare')}"


__all__ = ["write_result", "write_failure", "metrics_frame", "checkpoint_meta", "FEDERATION_JSON", "SITES_CSV"]
