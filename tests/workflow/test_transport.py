"""Tests of src/dlmvi/workflow/transport.py: the external cohort without/with each remedy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlmvi.workflow.transport import halves, swapped_halves_recalibration


def test_halves_are_stratified_and_seeded():
    y = np.array([1] * 31 + [0] * 20)
    h = halves(y, seed=0)
    assert np.array_equal(h, halves(y, seed=0)) and not np.array_equal(h, halves(y, seed=1))
    assert [int(((h == k) & (y == c)).sum()) for k in (0, 1) for c in (0, 1)] == [10, 16, 10, 15]


def test_each_half_is_scored_by_the_update_of_the_other_half():
    from dlmvi.stats.recalibration import Recalibration, expit

    rng = np.random.default_rng(0)
    lp = rng.normal(0, 1.2, 120)
    y = (rng.random(120) < expit(lp)).astype(int)
    p = expit(0.8 + 2 * lp)
    r = swapped_halves_recalibration(y, p, method="logistic", seed=3)
    h = r["half"]
    for k in (0, 1):
        other = Recalibration("logistic").fit(y[h != k], p[h != k])
        np.testing.assert_allclose(r["probabilities"][h == k], other.predict_proba(p[h == k]), atol=1e-12)
        assert r["updates"][1 - k]["slope"] == pytest.approx(other.slope_)
    assert [x["n"] for x in r["per_half"]] == [int((h == 0).sum()), int((h == 1).sum())]


@pytest.fixture(scope="module")
def transport(tiny_study):
    from dlmvi.workflow.transport import run_transport

    doc = run_transport(tiny_study["run"], log=lambda m: None)
    return tiny_study["run"], doc


@pytest.mark.slow
def test_transport_table_on_the_tiny_study(transport):
    """The tiny study (40 SYNTHETIC patients, zscore, 2 folds, 10 epochs, seed 0): one row per
    remedy for the external cohort 2018 (n = 21, 12 with MVI); the study model's row is
    evaluate's figure; ComBat makes every sequence's features inseparable (separability AUC
    T1 0.62 -> 0.04, T1D 0.71 -> 0.02; under 0.5 because ComBat equalises the cohorts' means
    on exactly these patients). The tiny network is barely trained, so the AUCs are near chance;
    the seeded values (1 thread) are stated with a tolerance of 3 patient pairs (0.03) for AUCs.
    Calibration intercepts move with the CPU's float kernels: CI's machine gave 0.053 for the study
    model where this one gives -0.047, so intercepts are held to 0.25 (about half their standard
    error at n = 21) and slopes to 20 %."""
    run, doc = transport
    t = pd.DataFrame(doc["rows"])
    assert t["remedy"].tolist() == ["study model (zscore)", "image harmonisation: global", "image harmonisation: nyul",
                                    "ComBat on features", "recalibration (intercept) on half",
                                    "recalibration (logistic) on half"]
    assert set(t["cohort"]) == {"2018"}
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())["cohorts"]["2018"]["binary"]
    assert t.loc[0, "auc"] == pytest.approx(metrics["auc"], abs=1e-12) and t.loc[0, "n"] == metrics["n"]
    assert (t["n"] == metrics["n"]).all()
    shift = pd.read_csv(run / "transport" / "combat_shift.csv")
    piv = shift.pivot_table(index="sequence", columns="features", values="separability_auc")
    for seq in ("T1", "T1D"):
        assert piv.loc[seq, "after ComBat"] < piv.loc[seq, "before ComBat"]
    want = {"study model (zscore)": (0.370, -0.047, -3.93), "image harmonisation: global": (0.676, 1.052, 23.3),
            "image harmonisation: nyul": (0.463, 0.565, 2.03), "ComBat on features": (0.370, -0.038, -4.14),
            "recalibration (intercept) on half": (0.407, 0.945, -2.17),
            "recalibration (logistic) on half": (0.611, 0.213, 0.239)}
    for r in t.to_dict("records"):
        auc, intercept, slope = want[r["remedy"]]
        assert r["auc"] == pytest.approx(auc, abs=0.03), r["remedy"]
        assert r["calibration_intercept"] == pytest.approx(intercept, abs=0.25), r["remedy"]
        assert r["calibration_slope"] == pytest.approx(slope, rel=0.2, abs=0.1), r["remedy"]
    assert piv.loc["T1", "before ComBat"] == pytest.approx(0.617, abs=0.03)
    assert piv.loc["T1D", "after ComBat"] == pytest.approx(0.015, abs=0.03)
    assert "unlabelled" in t.loc[3, "uses_external"] and "labelled external patients" in t.loc[5, "uses_external"]
    assert doc["synthetic"] is True and (run / "transport" / "transport.csv").is_file()
