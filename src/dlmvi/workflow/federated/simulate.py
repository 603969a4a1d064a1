"""One machine: a cohort split into sites, each site its own ``dlmvi federated site`` process
with its own folder, the coordinator's FLARE server beside them, all over loopback with the
real certificates - the deployment of the README, on one computer.

The cohort's ``cohort.json`` (the phantom's SYNTHETIC flag) goes with every site's part.
``RUN/`` is the coordinator's run folder (:mod:`.result`) plus ``fed.toml``, ``kits/`` (the
startup kits) and ``sites/<site>/`` (``cohort/``: the site's patients, images linked not copied;
``work/``: the site's own folder, :mod:`.site`; ``site.log``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from dlmvi.errors import ConfigError
from dlmvi.workflow.federated.config import FedConfig


def split_cohort(cohort, site_column: str, out) -> dict[str, Path]:
    """Write one cohort folder per value of ``site_column`` under ``out/<site>/cohort``.

    The clinical rows are copied as text (nothing converted); each patient's image folder is a
    symbolic link to the original; ``rois.csv`` keeps the site's rows; ``volumes.toml`` is copied.

    Raises:
        ConfigError: no such column, or a patient without a site.

    Returns:
        ``{site name: cohort folder}`` (see :func:`site_name`).
    """
    from dlmvi.io.tables import read_text_table

    cohort, out = Path(cohort), Path(out)
    table, rows = read_text_table(cohort / "clinical.csv")
    if site_column not in table.columns:
        raise ConfigError(f"{cohort / 'clinical.csv'}: no column {site_column!r} to split the cohort into sites "
                          f"(columns: {', '.join(table.columns)}); pass --site-column (e.g. cohort)")
    empty = [r for r, v in zip(rows, table[site_column]) if not v]
    if empty:
        raise ConfigError(f"{cohort / 'clinical.csv'}: row {empty[0]} has no {site_column}; every patient needs a site")
    rois = None
    if (cohort / "rois.csv").is_file():
        rois, _ = read_text_table(cohort / "rois.csv")
    folders = {}
    for value in sorted(table[site_column].unique()):
        site = site_name(value)
        dest = out / site / "cohort"
        if dest.exists():
            shutil.rmtree(dest)
        (dest / "images").mkdir(parents=True)
        part = table[table[site_column] == value]
        part.to_csv(dest / "clinical.csv", index=False)
        for pid in part["patient_id"]:
            src = cohort / "images" / pid
            if src.exists():
                os.symlink(src.resolve(), dest / "images" / pid)
        if rois is not None:
            rois[rois["patient_id"].isin(set(part["patient_id"]))].to_csv(dest / "rois.csv", index=False)
        for name in ("volumes.toml", "cohort.json", "README_SYNTHETIC.txt"):  # cohort.json: the SYNTHETIC flag
            if (cohort / name).is_file():
                shutil.copyfile(cohort / name, dest / name)
        folders[site] = dest
    return folders


def site_name(value: str) -> str:
    """The site name of a value of the site column: itself, or ``site_<value>`` when it does not
    start with a letter (a cohort year: ``2018`` -> ``site_2018``)."""
    v = str(value).strip().replace(" ", "_")
    return v if v[:1].isalpha() else f"site_{v}"


def toml_text(cfg: FedConfig) -> str:
    """``fed.toml`` of a configuration (what the simulation hands its sites)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)

    d = cfg.to_dict()
    fed = ["name", "coordinator", "port", "rounds", "local_epochs", "algorithm", "mu", "min_sites", "round_timeout", "seed"]
    study = ["preset", "sequences", "classes", "harmonization", "folds", "fold", "min_cell", "local_models",
             "batch_size", "lr"]
    lines = ["# written by dlmvi federated simulate", "[federation]"]
    lines += [f"{k} = {val(d[k])}" for k in fed]
    lines += ["", "[study]"] + [f"{k} = {val(d[k])}" for k in study if d[k] is not None]
    if d["network"]:
        lines += ["", "[network]"] + [f"{k} = {val(v)}" for k, v in d["network"].items()]
    for s in cfg.sites:
        lines += ["", f"[sites.{s}]"]
    return "\n".join(lines) + "\n"


def simulate(cohort, out, site_column: str = "site", cfg: FedConfig | None = None, log=print,
             timeout: float = 0.0, **settings) -> Path:
    """Run a whole federation on this machine (see the module docstring).

    Args:
        cohort: a cohort folder whose ``clinical.csv`` has ``site_column``.
        out: the run folder.
        cfg: a federation (its sites must be the column's values); ``None``: one from
            ``settings`` (any :class:`FedConfig` field) with the column's values as sites.

    Returns:
        ``out``.
    """
    from dlmvi.workflow.federated.jobs import EngineError, free_port, provision
    from dlmvi.workflow.federated.runner import run_coordinator

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folders = split_cohort(cohort, site_column, out / "sites")
    if cfg is None:
        cfg = FedConfig(sites=tuple(folders), **{"name": "simulation", "min_sites": min(2, len(folders)), **settings})
    cfg.check_sites(folders, f"column {site_column!r} of {Path(cohort) / 'clinical.csv'}")
    cfg = replace(cfg, coordinator="localhost", port=free_port(), source=str(out / "fed.toml"))
    (out / "fed.toml").write_text(toml_text(cfg))
    if (out / "kits").exists():
        shutil.rmtree(out / "kits")
    kits = provision(cfg, out / "fed.toml", out / "kits")
    log(f"federation of {len(folders)} sites ({', '.join(folders)}) on 127.0.0.1:{cfg.port}")
    procs = {}
    for site, folder in folders.items():
        log_file = open(out / "sites" / site / "site.log", "wb")
        procs[site] = subprocess.Popen(
            [sys.executable, "-m", "dlmvi.cli", "federated", "site", str(folder), "--kit", str(kits[site]),
             "--out", str(out / "sites" / site / "work")], stdout=log_file, stderr=subprocess.STDOUT)
    def watch():
        for site, p in procs.items():
            if p.poll() is not None:
                lines = (out / "sites" / site / "site.log").read_text(errors="replace").strip().splitlines()
                raise EngineError(f"site {site} stopped before the study began (exit {p.returncode}): "
                                  f"{lines[-1] if lines else 'no output'} (log: {out / 'sites' / site / 'site.log'})")

    try:
        run_coordinator(cfg, out / "kits", out, wait_sites=600, timeout=timeout, log=log, watch=watch)
    finally:
        for site, p in procs.items():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.terminate()
                p.wait(timeout=30)
    return out


__all__ = ["simulate", "split_cohort", "toml_text"]
