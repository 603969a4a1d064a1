"""kill -9 during `dlmvi prepare` and `dlmvi train`, then rerun: it resumes and nothing is corrupt.

Each test starts the real command in a subprocess, waits for its first output (a patch file;
the first epoch's log line, ``fold_0/log.csv``), sends SIGKILL, then reruns and checks the
result against the documented formats (and, for prepare, against a clean run).
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

from cachefactory import write_cache
from dlmvi.cli import run_cli
from dlmvi.preprocess.cache import PatchCache

pytestmark = pytest.mark.slow

DLMVI = [sys.executable, "-c", "import sys; from dlmvi.cli import main; sys.exit(main())"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _start(args, log):
    return subprocess.Popen(DLMVI + args, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)


def _kill_when(proc, ready, timeout=60.0):
    """SIGKILL ``proc`` as soon as ``ready()`` is true; returns its exit code."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            return proc.wait(10)
        if proc.poll() is not None:
            return proc.returncode
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the command produced no output in time")


def _visible_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _temp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".tmp" in p.name)


def test_kill_during_prepare_then_rerun_equals_clean_run(tmp_path):
    from factories import write_cohort

    cohort = write_cohort(tmp_path / "cohort", n=30)
    cache = tmp_path / "cache"
    args = ["prepare", str(cohort), "--out", str(cache), "--size", "32", "--margin", "4"]
    with open(tmp_path / "prepare.log", "wb") as log:
        proc = _start(args, log)
        code = _kill_when(proc, lambda: any((cache / "patches").rglob("*.npy")))
    out = (tmp_path / "prepare.log").read_text(errors="replace")
    assert code == -signal.SIGKILL, f"prepare finished before it could be killed:\n{out}"
    # the interrupted cache is refused as incomplete, not read half-made
    meta = json.loads((cache / "cache.json").read_text())
    assert meta["complete"] is False
    with pytest.raises(Exception, match="incomplete"):
        PatchCache(cache)

    assert run_cli(args) == 0
    c = PatchCache(cache)
    assert len(c.patient_ids()) == 30
    for f in (cache / "patches").rglob("*.npy"):
        if not f.name.startswith("."):
            a = np.load(f, allow_pickle=False)
            assert a.shape == (3, 32, 32) and a.dtype == np.float32 and np.isfinite(a).all()
    # every visible file is part of the cache format (no half-written file under a real name)
    names = {p.relative_to(cache).as_posix() for p in _visible_files(cache)}
    expected = {"cache.json", "index.csv", "patients.csv", "problems.csv", "skipped.csv"} | {
        f"patches/{pid}/{s}.npy" for pid in c.patient_ids() for s in c.sequences}
    assert names == expected
    # Stale temporaries of the killed process are swept by the rerun (under its lock).
    assert _temp_files(cache) == []

    clean = tmp_path / "clean"
    assert run_cli(["prepare", str(cohort), "--out", str(clean), "--size", "32", "--margin", "4"]) == 0
    for rel in sorted(expected - {"cache.json"}):
        if rel.endswith(".npy"):
            np.testing.assert_array_equal(np.load(cache / rel), np.load(clean / rel), err_msg=rel)
        else:
            pd.testing.assert_frame_equal(pd.read_csv(cache / rel), pd.read_csv(clean / rel), obj=rel)


def test_kill_during_training_then_rerun_resumes(tmp_path):
    from dlmvi.model.checkpoint import load_checkpoint
    from dlmvi.train.config import TrainConfig
    from dlmvi.train.run import run_training

    cache = write_cache(tmp_path / "cache", n_patients=30, size=32)
    run = tmp_path / "run"
    epochs = 5
    args = ["train", str(cache), "--out", str(run), "--preset", "fast", "--folds", "2", "--epochs", str(epochs),
            "--patience", "0", "--seed", "0", "--device", "cpu", "--threads", "1", "--no-progress"]
    log0 = run / "fold_0" / "log.csv"
    with open(tmp_path / "train.log", "wb") as log:
        proc = _start(args, log)
        # log.csv is written just before last.json: wait for the epoch's checkpoint too
        code = _kill_when(proc, lambda: log0.is_file() and (run / "fold_0" / "last.json").is_file())
    out = (tmp_path / "train.log").read_text(errors="replace")
    assert code == -signal.SIGKILL, f"training finished before it could be killed:\n{out}"
    done = json.loads((run / "fold_0" / "last.json").read_text())["progress"]["epoch"]
    assert 1 <= done < epochs, "the kill should land inside fold 0"
    rows_before = pd.read_csv(log0).query("epoch <= @done")
    assert not json.loads((run / "run.json").read_text())["complete"]

    # Rerun with the settings the command line builds; record the epochs actually trained.
    trained = []
    cfg = TrainConfig(preset="fast", folds=2, epochs=epochs, patience=0, seed=0, device="cpu", num_threads=1,
                      progress=False)
    res = run_training(cache, run, cfg, on_epoch_end=lambda e, row: trained.append(e))
    # fold 0 continued after the last saved epoch (not from epoch 1), then fold 1 and the
    # final model ran in full
    assert trained == list(range(done + 1, epochs + 1)) + list(range(1, epochs + 1)) * 2
    log = pd.read_csv(log0)
    assert log["epoch"].tolist() == list(range(1, epochs + 1))
    pd.testing.assert_frame_equal(log[log["epoch"] <= done].reset_index(drop=True), rows_before.reset_index(drop=True))
    assert json.loads((run / "run.json").read_text())["complete"] is True
    cv = pd.read_csv(run / "cv_predictions.csv", dtype={"patient_id": str})
    assert sorted(cv["patient_id"]) == PatchCache(cache).patient_ids() and cv["dl_prob"].between(0, 1).all()
    ck = load_checkpoint(run)
    assert ck.meta["progress"]["epoch"] == epochs and res.final == run / "final"
