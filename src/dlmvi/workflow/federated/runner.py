"""The two roles as commands run them: the coordinator (``dlmvi federated run``) and a site
(``dlmvi federated site``), each a FLARE process started from a copy of its startup kit."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from dlmvi.errors import ConfigError
from dlmvi.io.atomic import write_json
from dlmvi.workflow.federated.jobs import (EngineError, FED_TOML, admin_name, build_job, copy_kit, kit_identity,
                                           run_job, start_participant)
from dlmvi.workflow.federated.site import SITE_CONFIG, Site, prepare_site


def _stop(proc, grace: float = 20.0) -> None:
    import os
    import signal

    if proc.poll() is None:
        try:
            proc.wait(timeout=grace)
        except Exception:  # noqa: BLE001 - still running: end its process group (FLARE's job processes too)
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except Exception:  # noqa: BLE001
                os.killpg(proc.pid, signal.SIGKILL)


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def run_coordinator(cfg, kits, out, wait_sites: float = 600.0, timeout: float = 0.0, log=print,
                    site_folders: dict | None = None, shutdown: bool = True, watch=None) -> Path:
    """Start the FLARE server from ``kits/<coordinator>``, submit the study, wait for its end.

    Args:
        cfg: the federation.
        kits: the folder of startup kits (``dlmvi federated provision``); the coordinator's
            server and admin kits are used.
        out: the run folder (resumes the federation it holds).
        wait_sites: seconds to wait for every site to connect.
        timeout: seconds the whole job may take (0: no limit).
        site_folders: the simulation's site folders (``{}`` in a real deployment).
        watch: called while waiting for the sites (see :func:`~.jobs.run_job`).

    Returns:
        ``out`` (``out/final`` is the global model).

    Raises:
        FederationError: the study stopped (too few usable sites), with the coordinator's message.
        EngineError: FLARE could not run it (the message names the log).
    """
    from dlmvi.workflow.federated.coordinator import FederationError

    kits, out = Path(kits), Path(out)
    flare = out / "flare"
    flare.mkdir(parents=True, exist_ok=True)
    (out / "federation_failed.json").unlink(missing_ok=True)
    (out / "federation.json").unlink(missing_ok=True)  # written again at the end of this run
    server = copy_kit(kits / cfg.coordinator, flare / "server")
    keep_storage_inside(server, flare)
    admin = copy_kit(kits / admin_name(cfg), flare / "admin")
    job = build_job(cfg, out, site_folders)
    if (flare / "jobs").exists():
        shutil.rmtree(flare / "jobs")
    job.export_job(str(flare / "jobs"))
    proc = start_participant(server, flare / "server.log")
    t0 = time.perf_counter()

    def still_in_study() -> list[str]:
        doc = json.loads((out / "federation.json").read_text()) if (out / "federation.json").is_file() else {}
        return [s for s in cfg.sites if s not in doc.get("excluded", {})] if shutdown else []

    import signal

    previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        status = run_job(cfg, admin, flare / "jobs" / job.name, wait_sites, timeout, log, shutdown=still_in_study,
                         watch=watch, finished=lambda: (out / "federation.json").is_file()
                         or (out / "federation_failed.json").is_file())
    finally:  # the server is this command's: it ends with it, whatever happened
        signal.signal(signal.SIGTERM, previous)
        _stop(proc, grace=0.1)
    failed = out / "federation_failed.json"
    if failed.is_file():
        raise FederationError(json.loads(failed.read_text())["error"])
    if not (out / "final" / "model.json").is_file():
        raise EngineError(f"the FLARE job ended ({status}) without a global model; see {flare / 'server.log'} and "
                          f"the job's log under {server}")
    log(f"federation finished in {time.perf_counter() - t0:.0f} s: {out / 'final'}")
    return out


def keep_storage_inside(server, flare) -> None:
    """Point the FLARE server's job and snapshot stores (``/tmp/nvflare/...`` by default) into
    the run folder: nothing is written outside ``--out``, and a resumed run finds them."""
    local = Path(server) / "local"
    text = (local / "resources.json.default").read_text()
    text = text.replace("/tmp/nvflare/jobs-storage", str((Path(flare) / "jobs-storage").resolve()))
    text = text.replace("/tmp/nvflare/snapshot-storage", str((Path(flare) / "snapshot-storage").resolve()))
    (local / "resources.json").write_text(text)


def site_config(kit, config=None):
    """The federation a site joins: ``config`` or the ``fed.toml`` its kit carries."""
    from dlmvi.workflow.federated.config import load_config

    path = Path(config) if config else Path(kit) / FED_TOML
    if not path.is_file():
        raise ConfigError(f"{kit}: the kit carries no {FED_TOML}; pass the federation's fed.toml with --config")
    return load_config(path)


def run_site(cohort, kit, out, coordinator: str | None = None, config=None, column_map=None, log=print) -> int:
    """Validate and prepare the site's cohort, then serve the coordinator's tasks until it ends.

    Returns:
        the FLARE client's exit status.

    Raises:
        ConfigError: the kit is not a site's, or names a site that ``fed.toml`` does not.
        CohortError: the cohort does not fit the federation (naming the site).
    """
    cfg = site_config(kit, config)
    kind, name = kit_identity(kit)
    if kind != "client":
        raise ConfigError(f"{kit}: a {kind} kit; a site runs with its own site kit (KITS/<site>)")
    if name not in cfg.sites:
        raise ConfigError(f"site {name}: not one of the federation's sites ({', '.join(cfg.sites)}) in {cfg.source}")
    out = Path(out)
    prepare_site(cohort, out, cfg, name, column_map=column_map)
    site = Site(name, out, cfg)
    if site.problem:
        log(f"warning: site {name}: {site.problem.replace('_', ' ')} - the coordinator will leave this site out")
    log(f"site {name}: {len(site.train_ids)} training and {len(site.test_ids)} held-out patients; "
        f"connecting to {coordinator or cfg.address}")
    ws = copy_kit(kit, out / "flare", coordinator)
    write_json(ws / "local" / SITE_CONFIG, {"folder": str(out.resolve())})
    proc = start_participant(ws, out / "flare.log")
    import signal

    previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        return proc.wait()
    finally:  # a stopped site command stops its FLARE client (and the job process under it)
        signal.signal(signal.SIGTERM, previous)
        _stop(proc, grace=0.1)


__all__ = ["run_coordinator", "run_site", "site_config"]
