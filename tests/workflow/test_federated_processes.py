"""Federated training on NVIDIA FLARE with real processes over loopback (mutual TLS):

* ``dlmvi federated simulate`` on a small phantom split into two sites: its global model is an
  ordinary run folder whose predictions ``dlmvi predict`` reproduces; every message a site sent
  (its outbox) holds no patient ID, no path and no voxel;
* ``dlmvi federated provision|run|site`` as separate processes, three sites, one of which is
  stopped after its first update: the second round goes on without it, named.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

TINY_NET = '[network]\ninput_size = 32\nstem_width = 8\nwidths = [4, 8]\nblocks = [1, 1]\n'


def dlmvi(*args, **kw):
    return subprocess.run([sys.executable, "-m", "dlmvi.cli", *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), **kw)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from dlmvi.datasets.phantom import make_phantom

    root = tmp_path_factory.mktemp("fedsim")
    cohort = make_phantom(root / "cohort", n_patients=32, seed=3, size=64, progress=False)
    (root / "fed.toml").write_text(
        '[federation]\nrounds = 2\nround_timeout = 300\n[study]\nfolds = 3\nharmonization = "nyul"\n'
        + TINY_NET + "[sites.site_2015]\n[sites.site_2018]\n")
    t0 = time.perf_counter()
    res = dlmvi("federated", "simulate", cohort, "--site-column", "cohort", "--config", root / "fed.toml",
                "--out", root / "run", timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return {"root": root, "cohort": cohort, "run": root / "run", "out": res.stdout, "seconds": time.perf_counter() - t0}


def test_simulate_writes_an_ordinary_run_reproduced_by_predict(simulated):
    run = simulated["run"]
    assert "*** SYNTHETIC data" in simulated["out"]
    doc = json.loads((run / "run.json").read_text())
    assert doc["complete"] and doc["federated"] and doc["synthetic"]
    fed = json.loads((run / "federation.json").read_text())
    assert [r["round"] for r in fed["rounds"]] == [1, 2]
    assert all(r["sites"] == ["site_2015", "site_2018"] and r["bytes_from_sites"] > 0 for r in fed["rounds"])
    assert fed["harmonization"]["method"] == "nyul" and fed["engine"].startswith("nvflare 2.9")
    sites = pd.read_csv(run / "sites.csv")
    assert len(sites) == 6  # the global model and both local-only models, each on both sites
    assert sites[["auc", "auc_ci_low", "auc_ci_high"]].notna().all().all()
    for site in ("site_2018",):  # (the other site's file is written by the same code)
        work = run / "sites" / site / "work"
        held = pd.read_csv(work / "predictions" / "global.csv", dtype={"patient_id": str})
        split = json.loads((work / "split.json").read_text())
        assert sorted(held["patient_id"]) == sorted(split["test"]) and not set(split["test"]) & set(split["train"])
        out = simulated["root"] / f"predict_{site}.csv"
        res = dlmvi("predict", run, work / "cache", "--out", out, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        again = pd.read_csv(out, dtype={"patient_id": str}).set_index("patient_id").loc[held["patient_id"]]
        np.testing.assert_allclose(again["dl_prob"].to_numpy(), held["dl_prob"].to_numpy(), atol=1e-6)
        row = sites[(sites["model"] == "global (federated)") & (sites["site"] == site)].iloc[0]
        from dlmvi.evaluate.performance import ProbabilityMetrics

        m = ProbabilityMetrics.from_predictions(held["label"].astype(int), held["dl_prob"], threshold=0.5)
        assert row["auc"] == pytest.approx(m.auc, abs=1e-12)
    res = dlmvi("export", run, simulated["root"] / "model", timeout=300)  # export works on it unchanged
    assert res.returncode == 0, res.stderr[-2000:]
    model = json.loads((simulated["root"] / "model" / "model.json").read_text())
    assert model["training_data"]["federated"] and sorted(model["training_data"]["cohorts"]) == ["site_2015", "site_2018"]
    assert model["harmonization"]["method"] == "nyul" and model["synthetic"]
    t1 = pd.read_csv(run / "tables" / "table1.csv", dtype=str, keep_default_na=False)
    assert set(t1["site"]) == {"site_2015", "site_2018"} and (t1["mvi_absent"] == "<5").any()


def test_the_exported_global_model_recalibrates_serves_and_reports(simulated):
    """The global model is an ordinary run: `dlmvi report` builds on the coordinator's folder, its
    exported model recalibrates to a site from that site's held-out patients (the federation's own
    out-of-site predictions; no patient that trained it), `predict-patient --site` applies the update,
    and `dlmvi serve` loads it and predicts a patient."""
    import socket

    import httpx2 as httpx

    root, run = simulated["root"], simulated["run"]
    res = dlmvi("report", run, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (run / "report.html").is_file()
    model = root / "model_site"
    assert dlmvi("export", run, model, timeout=300).returncode == 0
    held = pd.concat([pd.read_csv(run / "sites" / s / "work" / "predictions" / "global.csv", dtype={"patient_id": str})
                      for s in ("site_2015", "site_2018")], ignore_index=True)
    held.to_csv(root / "held_out.csv", index=False)
    res = dlmvi("recalibrate", model, root / "held_out.csv", "--site", "fedsite", "--method", "intercept",
                "--folds", "2", timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert (model / "sites" / "fedsite.json").is_file()
    pid = held["patient_id"].iloc[0]
    patient = simulated["cohort"] / "images" / pid
    res = dlmvi("predict-patient", model, patient, "--afp", "35", "--site", "fedsite", timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "site                  fedsite" in res.stdout
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dlmvi.cli", "serve", str(model), "--threads", "1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=open(root / "serve.log", "w"),
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (root / "serve.log").read_text()[-2000:]
            try:
                if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "dlmvi serve did not start"
                time.sleep(0.3)
        info = httpx.get(url + "/api/model", timeout=30).json()
        assert info["sequences"] and info.get("synthetic") is True
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_nothing_but_weights_counts_and_landmarks_left_a_site(simulated):
    """Every message in the sites' outboxes: no patient ID, no path, no array the size of an image."""
    from safetensors.numpy import load_file

    from dlmvi.workflow.federated.local import weight_shapes
    from dlmvi.workflow.federated.config import load_config
    from dlmvi.workflow.federated.payload import MAX_STAT_VALUES

    run, cohort = simulated["run"], Path(simulated["cohort"])
    ids = pd.read_csv(cohort / "clinical.csv", dtype=str)["patient_id"].tolist()
    shapes = weight_shapes(load_config(run / "fed.toml").network_config())
    for site in ("site_2015", "site_2018"):
        box = run / "sites" / site / "work" / "outbox"
        tasks = [json.loads(p.read_text())["task"] for p in sorted(box.glob("*.json"))]
        assert tasks == ["summary", "moments", "train", "train", "evaluate", "cross_evaluate"]
        for p in sorted(box.glob("*.json")):
            text = p.read_text()
            assert not [i for i in ids if i in text], p
            assert "/" not in json.dumps(json.loads(text)["meta"]), p
        for p in sorted(box.glob("*.safetensors")):
            for name, arr in load_file(str(p)).items():
                assert (name in shapes and arr.shape == shapes[name]) or arr.size <= MAX_STAT_VALUES, (p, name)
            raw = p.read_bytes()
            assert not [i for i in ids if i.encode() in raw] and str(cohort).encode() not in raw, p
    for f in [run / "run.json", run / "federation.json", run / "sites.csv", run / "final" / "model.json",
              run / "tables" / "table1.csv", run / "tables" / "events.csv"]:
        text = f.read_text()
        assert not [i for i in ids if i in text] and str(cohort) not in text, f


def _site_cohorts(root):
    from factories import write_cohort

    return {name: write_cohort(root / f"cohort_{name}", n=12, seed=seed)
            for seed, name in enumerate(("hospital_a", "hospital_b"), start=1)}


def test_coordinator_and_sites_as_processes_a_site_drops_out(tmp_path):
    """provision, run and two sites as separate processes over loopback; hospital_b is stopped
    after its round-1 update: round 2 waits round_timeout (10 s) for it, then goes on without it."""
    from dlmvi.workflow.federated.jobs import free_port

    cohorts = _site_cohorts(tmp_path)
    (tmp_path / "fed.toml").write_text(
        f'[federation]\nname = "loopback"\ncoordinator = "localhost"\nport = {free_port()}\nrounds = 2\n'
        'round_timeout = 10\nmin_sites = 1\n[study]\nfolds = 2\nharmonization = "none"\nlocal_models = false\n'
        + TINY_NET + "[sites.hospital_a]\n[sites.hospital_b]\n")
    res = dlmvi("federated", "provision", tmp_path / "fed.toml", "--out", tmp_path / "kits")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "kits" / "hospital_a" / "startup" / "client.key").is_file()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "dlmvi.cli", "federated"]
    logs = {}

    def start(name, args):
        logs[name] = open(tmp_path / f"{name}.log", "w")
        return subprocess.Popen(cmd + [str(a) for a in args], stdout=logs[name], stderr=subprocess.STDOUT, env=env)

    coord = start("coordinator", ["run", tmp_path / "fed.toml", "--kits", tmp_path / "kits", "--out", tmp_path / "run",
                                  "--wait-sites", "300"])
    sites = {s: start(s, ["site", c, "--kit", tmp_path / "kits" / s, "--out", tmp_path / f"site_{s}"])
             for s, c in cohorts.items()}
    try:
        first = tmp_path / "site_hospital_b" / "outbox" / "0002_train.json"
        deadline = time.monotonic() + 400
        while not first.is_file() and coord.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.is_file(), (tmp_path / "coordinator.log").read_text()[-3000:]
        sites["hospital_b"].send_signal(signal.SIGTERM)  # the site goes away in the middle of the study
        assert coord.wait(timeout=400) == 0, (tmp_path / "coordinator.log").read_text()[-3000:]
    finally:
        for p in [coord, *sites.values()]:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=60)
    fed = json.loads((tmp_path / "run" / "federation.json").read_text())
    assert fed["rounds"][0]["sites"] == ["hospital_a", "hospital_b"]
    assert fed["rounds"][1]["sites"] == ["hospital_a"] and fed["rounds"][1]["dropped"] == ["hospital_b"]
    assert fed["excluded"] == {"hospital_b": "dropped_out"}
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    assert pd.read_csv(tmp_path / "run" / "sites.csv")["site"].tolist() == ["hospital_a"]
