"""Tests of dlmvi.evaluate.ablation: combinations, t intervals, resumable cross-validation."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from dlmvi.errors import CacheError, ConfigError, DlmviWarning
from dlmvi.evaluate import ablation
from dlmvi.evaluate.ablation import all3_combos, default_combos, parse_combos, run_ablation, t_interval
from dlmvi.train.config import TrainConfig


def test_default_combos_dedupe_study_repeat():
    combos = default_combos()
    # 6 singles + 8 published combinations, of which T1V+T1D+T1 repeats T1+T1D+T1V
    assert len(combos) == 13
    assert combos[:6] == [("T1",), ("T1A",), ("T1V",), ("T1D",), ("T2",), ("DWI",)]
    assert combos.count(("T1", "T1V", "T1D")) == 1
    assert ("T1A", "T2", "DWI") in combos and ("T1V", "T1D") in combos
    assert len(all3_combos()) == 20


def test_parse_combos():
    assert parse_combos("T1+T1V, T1D,T1V+T1") == [("T1", "T1V"), ("T1D",)]
    with pytest.warns(DlmviWarning, match="skipping 8 "):
        got = parse_combos("default", ("T1", "T1V", "T1D"))
    assert got == [("T1",), ("T1V",), ("T1D",), ("T1", "T1V", "T1D"), ("T1V", "T1D")]
    assert parse_combos("all3", ("T1", "T1V", "T1D", "T2")) == [
        ("T1", "T1V", "T1D"), ("T1", "T1V", "T2"), ("T1", "T1D", "T2"), ("T1V", "T1D", "T2")]
    with pytest.raises(CacheError, match="T1\\+T2 need sequences"):
        parse_combos("T1+T2", ("T1", "T1V"))
    with pytest.raises(ConfigError, match="unknown sequence"):
        parse_combos("T1+FLAIR")


def test_t_interval_hand_computed():
    r = t_interval([0.6, 0.7, 0.8])
    # sd = 0.1, t(0.975, 2) = 4.302653, half width = 4.302653 * 0.1 / sqrt(3) = 0.248414
    assert r["mean"] == pytest.approx(0.7) and r["sd"] == pytest.approx(0.1)
    assert r["ci_low"] == pytest.approx(0.7 - 0.248414, abs=1e-6)
    assert r["ci_high"] == pytest.approx(0.7 + 0.248414, abs=1e-6)
    r = t_interval([0.5, math.nan, 0.7])  # undefined folds are left out
    assert r["n"] == 2 and r["mean"] == pytest.approx(0.6)
    assert math.isnan(t_interval([0.5])["ci_low"])


def test_run_ablation_resumes(tiny_cache, tiny_preset, tmp_path, monkeypatch):
    import dlmvi.train.engine as engine

    calls = []
    real_fit = engine.fit

    def counting_fit(*a, **k):
        calls.append(k.get("description"))
        return real_fit(*a, **k)

    monkeypatch.setattr(engine, "fit", counting_fit)
    cfg = TrainConfig(preset="tiny", develop_cohort="2015", progress=False, device="cpu")
    out = tmp_path / "abl"
    table = run_ablation(tiny_cache, out, combos="T1+T1V+T1D,T1D", base_config=cfg, folds=2, seed=0)
    assert len(calls) == 4  # 2 combinations x 2 folds
    assert list(table["combination"]) != [] and set(table["combination"]) == {"T1+T1V+T1D", "T1D"}
    assert list(table["rank"]) == [1, 2]
    assert table["auc_mean"].iloc[0] >= table["auc_mean"].iloc[1]
    res = json.loads((out / "combos" / "T1D" / "result.json").read_text())
    assert [f["n"] for f in res["folds"]] == [12, 12]  # 24 patients of 2015 in 2 folds
    aucs = [f["auc"] for f in res["folds"]]
    assert res["summary"]["auc"]["mean"] == pytest.approx(np.mean(aucs))
    assert res["summary"]["auc"]["sd"] == pytest.approx(np.std(aucs, ddof=1))
    pred = pd.read_csv(out / "combos" / "T1D" / "predictions.csv", dtype={"patient_id": str})
    assert len(pred) == 24 and pred["patient_id"].is_unique and set(pred["cohort"].astype(str)) == {"2015"}
    # both combinations see identical folds
    pred3 = pd.read_csv(out / "combos" / "T1+T1V+T1D" / "predictions.csv", dtype={"patient_id": str})
    assert pred.set_index("patient_id")["fold"].equals(pred3.set_index("patient_id").loc[pred["patient_id"], "fold"])
    csv = pd.read_csv(out / "ablation.csv")
    for k in ("accuracy", "auc", "sensitivity", "specificity", "f1"):
        assert {f"{k}_mean", f"{k}_sd", f"{k}_ci_low", f"{k}_ci_high"} <= set(csv.columns)
    assert "| rank | combination |" in (out / "ablation.md").read_text()
    assert (out / "ablation_chart.png").stat().st_size > 5000 and (out / "ablation.html").is_file()
    mtime = (out / "combos" / "T1D" / "result.json").stat().st_mtime_ns

    # second call: nothing is retrained; a new combination trains only its own folds
    calls.clear()
    table2 = run_ablation(tiny_cache, out, combos="T1D,T1+T1V+T1D,T1V", base_config=cfg, folds=2, seed=0)
    assert len(calls) == 2 and all(c.startswith("T1V fold") for c in calls)
    assert (out / "combos" / "T1D" / "result.json").stat().st_mtime_ns == mtime
    assert len(table2) == 3
    t1d = table2.set_index("combination").loc["T1D"]
    assert t1d["auc_mean"] == pytest.approx(table.set_index("combination").loc["T1D", "auc_mean"])

    # other settings in the same folder are refused rather than mixed
    with pytest.raises(ConfigError, match="other settings"):
        run_ablation(tiny_cache, out, combos="T1D", base_config=cfg, folds=2, seed=1)


def test_cli_ablate_rejects_one_fold(tiny_cache, tmp_path):
    from dlmvi.cli import run_cli

    assert run_cli(["ablate", str(tiny_cache), "--out", str(tmp_path / "a"), "--folds", "1"]) == 2
    assert ablation.RESULT_FORMAT.startswith("dlmvi-ablation")


def test_table_clips_intervals_to_proportions():
    summary = {k: t_interval([0.9, 1.0, 1.0]) for k in ablation.METRICS}
    doc = {"combination": "T1", "sequences": ["T1"], "n_patients": 30, "folds": [{}, {}, {}], "summary": summary}
    row = ablation.ablation_table([doc]).iloc[0]
    # mean 0.9667, sd 0.0577, half width 4.302653 * 0.057735 / sqrt(3) = 0.143422
    assert row["auc_mean"] == pytest.approx(0.966667, abs=1e-6)
    assert row["auc_ci_low"] == pytest.approx(0.966667 - 0.143422, abs=1e-6)
    assert row["auc_ci_high"] == 1.0 and summary["auc"]["ci_high"] > 1.0


def test_sharded_ablation_merges_to_the_unsharded_table(tiny_cache, tiny_preset, tmp_path):
    """3 combinations in 2 shares (T1 and T1D in 1/2, T1V in 2/2): the last share to finish
    writes ablation.csv, equal to the single run's; --merge rewrites it identically."""
    from dlmvi.cli import run_cli

    cfg = TrainConfig(preset="tiny", develop_cohort="2015", progress=False, device="cpu")
    combos = "T1,T1V,T1D"
    one = run_ablation(tiny_cache, tmp_path / "one", combos=combos, base_config=cfg, folds=2, seed=0)
    out = tmp_path / "sharded"
    assert run_ablation(tiny_cache, out, combos=combos, base_config=cfg, folds=2, seed=0, shard="1/2") is None
    assert sorted(p.name for p in (out / "combos").iterdir()) == ["T1", "T1D"]
    assert not (out / "ablation.csv").exists()
    with pytest.raises(ConfigError, match="combination\\(s\\) T1V are not finished"):
        run_ablation(tiny_cache, out, combos=combos, base_config=cfg, folds=2, seed=0, merge=True)
    merged = run_ablation(tiny_cache, out, combos=combos, base_config=cfg, folds=2, seed=0, shard="2/2")
    pd.testing.assert_frame_equal(merged, one)
    assert (out / "ablation.csv").read_text() == (tmp_path / "one" / "ablation.csv").read_text()
    assert (out / "ablation.md").read_text() == (tmp_path / "one" / "ablation.md").read_text()
    (out / "ablation.csv").unlink()
    assert run_cli(["ablate", str(tiny_cache), "--out", str(out), "--combos", combos, "--preset", "tiny",
                    "--folds", "2", "--device", "cpu", "--no-progress", "--merge"]) == 0
    assert (out / "ablation.csv").read_text() == (tmp_path / "one" / "ablation.csv").read_text()
    assert run_cli(["ablate", str(tiny_cache), "--out", str(out), "--shard", "0/2"]) == 2
