"""Tests of src/dlmvi/evaluate/performance.py: one object measures probabilities, and every output
that shows a figure shows the same number for the same predictions."""

import json

import numpy as np
import pandas as pd
import pytest

from dlmvi.errors import NotEstimableWarning
from dlmvi.evaluate.performance import ProbabilityMetrics


def _predictions(n=120, seed=4):
    """Over-confident predictions of a network, some of them exactly 0 or 1 (float32 saturation)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(2.5 * (y - 0.5) * 2 + rng.normal(0, 2.2, n))))
    p[:4], p[4:7] = 0.0, 1.0
    y[:2], y[4:6] = 0, 1  # two of each right, the others wrong
    return y, p


def test_every_output_shows_the_same_figures_for_the_same_predictions(tmp_path):
    from dlmvi.evaluate.metrics import evaluate_predictions
    from dlmvi.stats.clinical import cohort_metrics
    from dlmvi.stats.recalibration import performance
    from dlmvi.stats.sites import group_table, write_groups
    from dlmvi.workflow.transport import remedy_figures

    y, p = _predictions()
    m = ProbabilityMetrics.from_predictions(y, p, threshold=0.5)
    assert m.calibration_excluded == 7 and np.isfinite(m.calibration_slope)
    frame = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(len(y))], "cohort": "2018",
                          "mvi_grade": np.where(y == 1, "M1", "M0"), "label": y, "dl_prob": p,
                          "dl_mvi": (p >= 0.5).astype(int)})
    ev = evaluate_predictions(frame)["cohorts"]["2018"]["binary"]
    groups = group_table(frame, "dl_prob", None, threshold=0.5, decision_column="dl_mvi")
    write_groups(groups, tmp_path)
    g = json.loads((tmp_path / "groups.json").read_text())["groups"][0]  # what the model card reads
    val = cohort_metrics(y, p)
    site_before = performance(y, p)
    transport = remedy_figures(y, p)
    for key in ("auc", "auc_ci_low", "auc_ci_high"):
        assert ev[key] == g[key] == transport[key] == getattr(m, key), key
    assert val["auc"] == site_before["auc"] == m.auc and val["auc_ci"] == [m.auc_ci_low, m.auc_ci_high]
    for key in ("calibration_intercept", "calibration_slope", "brier"):
        assert g[key] == val[key] == site_before[key] == transport[key] == getattr(m, key), key
    for key in ("accuracy", "sensitivity", "specificity"):
        assert ev[key] == g[key] == m.classification[key], key
    assert val["calibration_excluded"] == site_before["calibration_excluded"] == transport["calibration_excluded"] == 7


def test_predictions_of_zero_and_one_follow_one_stated_rule():
    """Left out of the calibration fits only (as rms::val.prob), counted and noted; never clipped."""
    from dlmvi.evaluate.calibration import val_prob

    y, p = _predictions()
    m = ProbabilityMetrics.from_predictions(y, p)
    inside = (p > 0) & (p < 1)
    ref = val_prob(y[inside], p[inside])
    assert (m.calibration_intercept, m.calibration_slope) == (ref["calibration_intercept"], ref["calibration_slope"])
    assert m.brier == float(np.mean((y - p) ** 2))  # the Brier score keeps every patient
    assert any("7 prediction(s) of exactly 0 or 1" in n for n in m.notes)


def test_figures_that_these_patients_cannot_give_are_nan_with_a_reason():
    one_class = ProbabilityMetrics.from_predictions([1, 1, 1], [0.2, 0.6, 0.9], threshold=0.5)
    assert np.isnan(one_class.auc) and one_class.classification["sensitivity"] == 2 / 3
    assert "all 3 patients have outcome 1" in one_class.notes[0]
    constant = ProbabilityMetrics.from_predictions([0, 1, 0, 1], [0.4] * 4)
    assert np.isnan(constant.calibration_slope) and "constant" in " ".join(constant.notes)
    one_case = ProbabilityMetrics.from_predictions([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9])
    assert one_case.auc == 1.0 and np.isnan(one_case.auc_ci_low)  # no DeLong interval with one case
    separated = ProbabilityMetrics.from_predictions([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert separated.auc == 1.0 and np.isnan(separated.calibration_slope)
    assert any("not estimable (the predictions separate the outcomes)" in n for n in separated.notes)
    # the calibration function itself names the figure it could not estimate
    from dlmvi.evaluate.calibration import recalibration

    with pytest.warns(NotEstimableWarning, match="calibration intercept and slope not estimable"):
        recalibration(np.array([0, 0, 1, 1.0]), np.log(np.array([0.1, 0.2, 0.8, 0.9]) / (1 - np.array([0.1, 0.2, 0.8, 0.9]))))
