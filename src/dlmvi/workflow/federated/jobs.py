"""NVIDIA FLARE's machinery: certificates (provisioning), the server and site processes, the job.

* :func:`provision` - one startup kit per participant (the coordinator's server, each site, the
  coordinator's admin), with the federation's root CA, each participant's certificate and key
  (mutual TLS: a site without a kit signed by this CA cannot connect) and ``fed.toml``;
* :func:`build_job` - the FLARE job: :class:`~.controller.DlmviController` on the server, a
  :class:`~.client.DlmviExecutor` on each site (the configuration travels; no site folder);
* :func:`start_participant` - a FLARE server or client process from a *copy* of its kit (the kit
  itself is never written to);
* :func:`run_job` - log in as the admin, wait for the sites, submit, follow the job to its end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dlmvi.errors import ConfigError, DlmviError

FED_TOML = "fed.toml"


class EngineError(DlmviError):
    """FLARE could not start, connect or finish the job; the message names the log to read."""


def admin_name(cfg) -> str:
    """The coordinator's admin user (FLARE wants an e-mail-like name)."""
    return "admin@dlmvi.local"


def project_yaml(cfg) -> dict:
    """The FLARE project (provisioning input) of a federation."""
    parts = [{"name": cfg.coordinator, "type": "server", "org": "dlmvi", "fed_learn_port": cfg.port,
              "admin_port": cfg.admin_port}]
    parts += [{"name": s, "type": "client", "org": "dlmvi"} for s in cfg.sites]
    parts.append({"name": admin_name(cfg), "type": "admin", "org": "dlmvi", "role": "project_admin"})
    return {"api_version": 3, "name": cfg.name, "description": "dlmvi federated DL-MVI", "participants": parts,
            "builders": [{"path": "nvflare.lighter.impl.workspace.WorkspaceBuilder"},
                         {"path": "nvflare.lighter.impl.static_file.StaticFileBuilder", "args": {"config_folder": "config"}},
                         {"path": "nvflare.lighter.impl.cert.CertBuilder"},
                         {"path": "nvflare.lighter.impl.signature.SignatureBuilder"}]}


def provision(cfg, fed_toml, out) -> dict[str, Path]:
    """Write the startup kits into ``out/<participant>/`` (``out`` must be new or empty).

    Returns:
        ``{participant: kit folder}``.
    """
    import yaml

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; provision into a new folder (kits hold private keys)")
    work = out / ".provision"
    work.mkdir(parents=True, exist_ok=True)
    (work / "project.yml").write_text(yaml.safe_dump(project_yaml(cfg), sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "nvflare.cli", "provision", "-p", str(work / "project.yml"),
                           "-w", str(work)], capture_output=True, text=True)
    prod = sorted((work / cfg.name).glob("prod_*"))
    if proc.returncode != 0 or not prod:
        raise EngineError(f"FLARE provisioning failed: {proc.stderr.strip() or proc.stdout.strip()}")
    kits = {}
    for kit in sorted(p for p in prod[-1].iterdir() if p.is_dir()):
        shutil.move(str(kit), str(out / kit.name))
        shutil.copyfile(fed_toml, out / kit.name / FED_TOML)
        kits[kit.name] = out / kit.name
    shutil.rmtree(work)
    return kits


def build_job(cfg, out, site_folders: dict | None = None):
    """The FLARE job of the federation (``site_folders``: the simulation's site folders)."""
    from nvflare.job_config.api import FedJob

    from dlmvi.workflow.federated.client import DlmviExecutor
    from dlmvi.workflow.federated.controller import DlmviController

    job = FedJob(name=f"{cfg.name}_fold{cfg.fold}", min_clients=cfg.min_sites)
    job.to_server(DlmviController(config=cfg.to_dict(), out=str(Path(out).resolve())))
    for site in cfg.sites:
        job.to(DlmviExecutor(config=cfg.to_dict(), site_folder=str((site_folders or {}).get(site, ""))), site)
    return job


def copy_kit(kit, dest, coordinator: str | None = None) -> Path:
    """A working copy of a startup kit (FLARE writes its workspace there); ``coordinator``
    (``host:port``) replaces the server address a client kit names."""
    kit, dest = Path(kit), Path(dest)
    if not (kit / "startup").is_dir():
        raise ConfigError(f"{kit}: not a FLARE startup kit (no startup/ folder); use a kit written by "
                          "`dlmvi federated provision`")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(kit, dest)
    client = dest / "startup" / "fed_client.json"
    if coordinator and client.is_file():
        doc = json.loads(client.read_text())
        doc["servers"][0]["service"]["target"] = coordinator
        client.write_text(json.dumps(doc, indent=2))
    return dest


def kit_identity(kit) -> tuple[str, str]:
    """(kind, name) of a startup kit: ("client", site) or ("server", host) or ("admin", user)."""
    startup = Path(kit) / "startup"
    if (startup / "fed_client.json").is_file():
        return "client", json.loads((startup / "fed_client.json").read_text())["client"]["fqsn"]
    if (startup / "fed_server.json").is_file():
        return "server", json.loads((startup / "fed_server.json").read_text())["servers"][0].get("name", "")
    if (startup / "fed_admin.json").is_file():
        return "admin", json.loads((startup / "fed_admin.json").read_text())["admin"].get("username", "")
    raise ConfigError(f"{kit}: not a FLARE startup kit (no fed_client.json, fed_server.json or fed_admin.json)")


def start_participant(workspace, log_path) -> subprocess.Popen:
    """Start the FLARE server or client of a kit copy as its own process (mutual TLS)."""
    kind, name = kit_identity(workspace)
    ws = str(Path(workspace).resolve())
    if kind == "server":
        cmd = [sys.executable, "-u", "-m", "nvflare.private.fed.app.server.server_train", "-m", ws, "-s",
               "fed_server.json", "--set", "secure_train=true", "config_folder=config", "org=dlmvi"]
    else:
        cmd = [sys.executable, "-u", "-m", "nvflare.private.fed.app.client.client_train", "-m", ws, "-s",
               "fed_client.json", "--set", f"uid={name}", "secure_train=true", "config_folder=config", "org=dlmvi"]
    log = open(log_path, "ab")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(cmd, cwd=ws, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def follow_job(sess, job_id: str, timeout: float, finished=None, grace: float = 5.0) -> str:
    """Wait for the job's end; FLARE's status. When ``finished()`` says the study wrote its result
    and the job still runs ``grace`` seconds later (FLARE waits for a dropped-out site's job
    until its heartbeat times out), the job is ended."""
    t0, done_at = time.monotonic(), None
    while True:
        status = str(sess.get_job_meta(job_id).get("status"))
        if status.startswith("FINISHED") or (timeout and time.monotonic() - t0 > timeout):
            return status
        if done_at is None and finished is not None and finished():
            done_at = time.monotonic()
        if done_at is not None and time.monotonic() - done_at > grace:
            from nvflare.fuel.flare_api.api_spec import InternalError

            try:
                sess.abort_job(job_id)
            except InternalError:  # the job ended on its own between the status check and the abort
                status = str(sess.get_job_meta(job_id).get("status"))
                if status.startswith("FINISHED"):
                    return status
                raise
            return "FINISHED:COMPLETED (ended by the coordinator; a site had dropped out)"
        time.sleep(1)


def run_job(cfg, admin_kit, job_dir, wait_sites: float, timeout: float, log=print, shutdown=True,
            watch=None, finished=None) -> str:
    """Submit the exported job as the admin and follow it; returns FLARE's final job status.

    ``watch()`` is called while waiting for the sites (the simulation raises there when one of
    its site processes has stopped). ``shutdown``: True (every site's FLARE client is shut down at
    the end), False, or a function returning the sites to shut down (those still in the study: a
    site that dropped out would keep the command waiting for its answer). ``finished()``: the
    study wrote its result (see :func:`follow_job`)."""
    from nvflare.fuel.flare_api.flare_api import new_secure_session

    try:
        sess = new_secure_session(admin_name(cfg), str(admin_kit), timeout=60)
    except Exception as exc:  # noqa: BLE001 - FLARE raises many kinds; all mean "no server"
        raise EngineError(f"cannot log in to the FLARE server at {cfg.address}: {exc}") from None
    try:
        t0, names = time.monotonic(), []
        while time.monotonic() - t0 < wait_sites:
            names = [c.name for c in sess.get_system_info().client_info]
            if set(cfg.sites) <= set(names):
                break
            if watch is not None:
                watch()
            time.sleep(1)
        if len(names) < cfg.min_sites:
            raise EngineError(f"after {wait_sites:.0f} s only {len(names)} site(s) connected ({', '.join(names) or 'none'}); "
                              f"min_sites = {cfg.min_sites}: start `dlmvi federated site` at the others")
        missing = [s for s in cfg.sites if s not in names]
        if missing:
            log(f"not connected, going on without: {', '.join(missing)}")
        job_id = sess.submit_job(str(Path(job_dir).resolve()))
        log(f"job {job_id} submitted to {len(names)} site(s): {', '.join(sorted(names))}")
        status = follow_job(sess, job_id, timeout, finished)
        targets = shutdown() if callable(shutdown) else (list(cfg.sites) if shutdown else [])
        if targets:  # the sites' FLARE clients end (and so their `dlmvi federated site`); the server is ours
            try:
                sess.set_timeout(10)  # seconds the server waits for the sites' replies
                sess.shutdown("client", client_names=targets, wait=False)
            except Exception as exc:  # noqa: BLE001 - a site already gone; nothing to shut down
                log(f"note: shutting the sites down: {exc}")
        return status
    finally:
        sess.close()


def free_port() -> int:
    """A free TCP port p on loopback with p + 1 free too (FLARE's federated and admin ports)."""
    import socket

    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            p = a.getsockname()[1]
            if p >= 65534:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", p + 1))
                except OSError:
                    continue
            return p
    raise EngineError("no free pair of TCP ports on 127.0.0.1")


__all__ = ["provision", "build_job", "copy_kit", "start_participant", "run_job", "kit_identity", "free_port",
           "EngineError", "admin_name", "FED_TOML"]
