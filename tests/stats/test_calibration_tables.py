"""Tests of dlmvi.stats.calibration (tables, bootstrap, display) against R."""

import numpy as np
import pandas as pd
import pytest

from dlmvi.stats.calibration import (CalibrationDisplay, bootstrap_calibration_curve, bootstrap_validate,
                                     calibration_table)
from r_reference import P, Y

y = np.array(Y.split(), dtype=float)
p = np.array(P.split(), dtype=float)
RTOL = 1e-6


def test_calibration_table_clopper_pearson_against_R():
    """Five equal groups of 12; CIs equal R's ``binom.test(k, n)$conf.int``:
    binom.test(3, 12): 0.0548606445279928 0.5718584618781891;
    binom.test(9, 12): 0.428141538121811 0.945139355472007;
    binom.test(0, 7): 0 0.409616397225003."""
    t = calibration_table(y, p, n_bins=5)
    assert t["n"].tolist() == [12] * 5
    assert t["events"].tolist() == [6, 3, 5, 7, 9]
    np.testing.assert_allclose(t.loc[1, ["ci_low", "ci_high"]].astype(float),
                               [0.0548606445279928, 0.5718584618781891], rtol=RTOL)
    np.testing.assert_allclose(t.loc[4, ["ci_low", "ci_high"]].astype(float),
                               [0.428141538121811, 0.945139355472007], rtol=RTOL)
    assert t["mean_predicted"].iloc[4] == pytest.approx(np.sort(p)[48:].mean())
    t0 = calibration_table(np.zeros(7), np.full(7, 0.2), n_bins=5)
    assert t0[["ci_low", "ci_high"]].iloc[0].tolist() == pytest.approx([0.0, 0.409616397225003],
                                                                       rel=RTOL)


def test_calibration_table_few_distinct_predictions():
    t = calibration_table([0, 1, 1, 0, 1, 1], [0.2, 0.2, 0.7, 0.7, 0.7, 0.9], n_bins=10)
    assert t["n"].tolist() == [2, 3, 1]
    assert t["observed"].tolist() == pytest.approx([0.5, 2 / 3, 1.0])


class _Logit:
    """Minimal estimator for the bootstrap: logistic regression on all columns but 'y'."""

    def fit(self, x, yy):
        from dlmvi.stats.logistic import fit_logit

        d = x.drop(columns="y").assign(y=np.asarray(yy))
        self.res_ = fit_logit(d, "y", [c for c in x.columns if c != "y"], check_epv=False)
        return self

    def predict_proba(self, x):
        return 1 / (1 + np.exp(-self.res_.linear_predictor(x)))


def _overfit_data(n=80, k=6, seed=3):
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, k)), columns=[f"n{i}" for i in range(k)])
    yy = (rng.random(n) < 1 / (1 + np.exp(-x["n0"]))).astype(float)
    return x.assign(y=yy), yy


def test_bootstrap_validate_is_seeded_and_corrects_optimism():
    x, yy = _overfit_data()
    a = bootstrap_validate(_Logit(), x, yy, B=30, seed=11)
    b = bootstrap_validate(_Logit(), x, yy, B=30, seed=11)
    pd.testing.assert_frame_equal(a, b)
    # apparent recalibration of a logistic MLE is exactly intercept 0, slope 1
    assert a.loc["calibration_intercept", "apparent"] == pytest.approx(0, abs=1e-8)
    assert a.loc["calibration_slope", "apparent"] == pytest.approx(1, rel=1e-8)
    # 5 noise predictors: the model is optimistic
    assert a.loc["auc", "corrected"] < a.loc["auc", "apparent"]
    assert a.loc["calibration_slope", "corrected"] < 0.95
    assert a.loc["brier", "corrected"] > a.loc["brier", "apparent"]
    assert list(a.columns) == ["apparent", "training", "test", "optimism", "corrected", "n"]
    c = bootstrap_validate(_Logit(), x, yy, B=30, seed=12)
    assert c.loc["auc", "corrected"] != a.loc["auc", "corrected"]


def test_bootstrap_calibration_curve():
    x, yy = _overfit_data()
    c = bootstrap_calibration_curve(_Logit(), x, yy, B=20, seed=0)
    assert len(c) == 50 and c["n"].max() <= 20
    assert np.all(np.diff(c["predicted"]) > 0)
    # overfitting: after correction the curve is flatter (predictions too extreme)
    fin = c.dropna()
    slope_app = np.polyfit(fin["predicted"], fin["apparent"], 1)[0]
    slope_cor = np.polyfit(fin["predicted"], fin["corrected"], 1)[0]
    assert slope_cor < slope_app


def test_calibration_display():
    import matplotlib

    matplotlib.use("Agg")
    d = CalibrationDisplay.from_predictions(y, p, n_bins=5).plot()
    assert d.metrics["brier"] == pytest.approx(0.2302367166666667)
    assert len(d.table) == 5
    assert d.ax_.get_xlabel() == "Predicted probability of MVI"


