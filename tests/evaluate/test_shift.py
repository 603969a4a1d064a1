"""Tests of dlmvi.evaluate.shift: MMD permutation test, separability AUC, t-SNE and run_shift."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dlmvi.errors import StatisticsError
from dlmvi.evaluate.shift import mmd_test, run_shift, separability_auc, shift_scores


def _samples(shift, seed=0, n=60, d=16):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, d)), rng.normal(0, 1, (n, d)) + shift


def test_mmd_same_distribution_not_significant():
    x, y = _samples(0.0)
    r = mmd_test(x, y, n_permutations=200, seed=0)
    assert r["p_value"] > 0.05
    assert abs(r["mmd2"]) < 0.01
    # median heuristic: pooled pairwise distance of N(0, I_16) is about sqrt(2 * 16)
    assert r["bandwidth"] == pytest.approx(np.sqrt(32), rel=0.1)


def test_mmd_shifted_distribution_significant_and_seeded():
    x, y = _samples(0.5)
    r = mmd_test(x, y, n_permutations=200, seed=0)
    assert r["p_value"] == pytest.approx(1 / 201)  # no permutation reaches the observed MMD
    assert r["mmd2"] > 0.02
    assert mmd_test(x, y, n_permutations=50, seed=3) == mmd_test(x, y, n_permutations=50, seed=3)


def test_separability_auc():
    x, y = _samples(0.0, seed=1)
    g = np.array(["2015"] * len(x) + ["2018"] * len(y))
    assert separability_auc(np.vstack([x, y]), g, seed=0) == pytest.approx(0.5, abs=0.15)
    x, y = _samples(1.5, seed=1)
    assert separability_auc(np.vstack([x, y]), g, seed=0) > 0.97
    with pytest.raises(StatisticsError, match="exactly 2 groups"):
        separability_auc(x, ["a"] * len(x))


def test_shift_scores_per_sequence():
    rng = np.random.default_rng(2)
    n = 40
    cohorts = np.array(["2015"] * n + ["2018"] * n)
    f = rng.normal(0, 1, (2 * n, 2, 8))
    f[n:, 0] += 1.5  # sequence A shifted, sequence B not
    t = shift_scores(f, cohorts, ("A", "B"), seed=0, n_permutations=100).set_index("sequence")
    assert t.loc["A", "separability_auc"] > 0.95 and t.loc["A", "mmd_p_value"] < 0.05
    assert t.loc["B", "separability_auc"] < 0.7 and t.loc["B", "mmd_p_value"] > 0.05
    assert (t["reference"] == "2015").all() and (t["n_cohort"] == n).all()
    with pytest.raises(StatisticsError, match="at least two cohorts"):
        shift_scores(f[:n], cohorts[:n], ("A", "B"))


def test_run_shift_end_to_end(tiny_cache, tmp_path):
    from dlmvi.model.checkpoint import save_checkpoint
    from dlmvi.model.network import NetworkConfig, build_network
    from dlmvi.preprocess.cache import PatchCache

    cfg = NetworkConfig(stem_width=8, widths=(4, 8), blocks=(1, 1), n_sequences=3, n_classes=2, input_size=32)
    torch.manual_seed(0)
    model = build_network(cfg)
    cache = PatchCache(tiny_cache)
    save_checkpoint(tmp_path / "ck" / "model", model, {
        "network": cfg.to_dict(), "sequences": ["T1", "T1V", "T1D"], "classes": 2,
        "prepare": cache.meta["params"], "develop_cohort": "2015", "synthetic": True,
    })
    doc = run_shift(tmp_path / "ck", tiny_cache, tmp_path / "shift", seed=0, n_permutations=20)
    assert doc["reference_cohort"] == "2015" and doc["n_patients"] == {"2015": 24, "2018": 16}
    assert set(doc["sequences"]) == {"T1", "T1V", "T1D"}
    for seq in doc["sequences"].values():
        s = seq["2018"]
        assert 0.0 <= s["separability_auc"] <= 1.0 and 1 / 21 <= s["mmd_p_value"] <= 1.0
    assert doc["synthetic"] is True
    tsne = pd.read_csv(tmp_path / "shift" / "tsne.csv", dtype={"patient_id": str, "cohort": str})
    assert len(tsne) == 40 * 3 and set(tsne["mvi_grade"]) == {"M0", "M1", "M2"}
    assert (tmp_path / "shift" / "tsne.png").stat().st_size > 5000
    assert json.loads((tmp_path / "shift" / "shift.json").read_text())["seed"] == 0


def test_tsne_seeded():
    from dlmvi.evaluate.shift import tsne_embedding

    x, y = _samples(3.0, n=15, d=8)
    f = np.vstack([x, y])
    a, b = tsne_embedding(f, seed=5), tsne_embedding(f, seed=5)
    assert np.array_equal(a, b) and a.shape == (30, 2)
    # the two well-separated groups stay apart in the embedding
    assert np.linalg.norm(a[:15].mean(0) - a[15:].mean(0)) > 2 * a[:15].std(0).mean()


def test_cli_shift_without_model(tiny_cache, tmp_path):
    from dlmvi.cli import run_cli

    assert run_cli(["shift", str(tmp_path / "no_run"), str(tiny_cache), "--out", str(tmp_path / "s")]) == 2
    assert not (tmp_path / "s" / "shift.json").exists()
