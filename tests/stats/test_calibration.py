"""Tests of dlmvi.stats.calibration against R's rms::val.prob, lowess and binom.test."""

import numpy as np
import pandas as pd
import pytest

from dlmvi.errors import StatisticsError, StatisticsWarning
from dlmvi.stats.calibration import (CalibrationDisplay, bootstrap_calibration_curve,
                                     bootstrap_validate, brier_score, calibration_table,
                                     lowess_smooth, spiegelhalter, val_prob)
from r_reference import Y

# Data of tests/stats/test_roc.py's R script (set.seed(20240601), n = 60), plus
# p <- round(plogis(0.8 * lp + rnorm(n, 0, 0.5)), 3)
P = ("0.375 0.324 0.489 0.497 0.274 0.614 0.303 0.477 0.366 0.595 0.343 0.458 0.465 0.391 "
     "0.613 0.751 0.656 0.369 0.404 0.194 0.665 0.401 0.77 0.714 0.449 0.528 0.633 0.358 "
     "0.596 0.643 0.454 0.599 0.73 0.457 0.506 0.412 0.692 0.308 0.785 0.428 0.397 0.573 "
     "0.568 0.563 0.526 0.328 0.643 0.441 0.564 0.885 0.338 0.743 0.123 0.382 0.795 0.817 "
     "0.877 0.516 0.522 0.592")
y = np.array(Y.split(), dtype=float)
p = np.array(P.split(), dtype=float)
RTOL = 1e-6


def test_val_prob_against_R():
    """rms 6.5.0 ``val.prob(p, y, pl = FALSE)``; rtol 1e-6 (Eavg/E90/Emax via lowess: 1e-6).

        v <- val.prob(d$p, d$y, pl = FALSE)
        # C (ROC) 0.6611111111111111  Brier 0.2302367166666667
        # Intercept -0.0832031543590094  Slope 0.8469213819841027
        # Emax 0.2856956716659825  E90 0.1573436876487892  Eavg 0.0766332837505452
        # S:z 0.4785882769545390  S:p 0.6322315598136317
    """
    v = val_prob(y, p)
    expected = {
        "c_index": 0.6611111111111111, "brier": 0.2302367166666667,
        "calibration_intercept": -0.0832031543590094, "calibration_slope": 0.8469213819841027,
        "emax": 0.2856956716659825, "e90": 0.1573436876487892, "eavg": 0.0766332837505452,
        "spiegelhalter_z": 0.4785882769545390, "spiegelhalter_p": 0.6322315598136317,
    }
    for k, want in expected.items():
        assert v[k] == pytest.approx(want, rel=RTOL), k
    assert v["n"] == 60
    assert brier_score(y, p) == pytest.approx(0.2302367166666667, rel=1e-12)
    assert spiegelhalter(y, p)[0] == pytest.approx(0.4785882769545390, rel=RTOL)


def test_lowess_against_R():
    """``lw <- lowess(d$p, d$y, iter = 0)``: lw$x[c(1, 10, 30, 60)] = 0.123 0.358 0.506 0.885,
    lw$y[c(1, 10, 30, 60)] = 0.408695671665983 0.417787786744889 0.342538546217926
    0.948635775866041; rtol 1e-6."""
    x, s = lowess_smooth(p, y)
    idx = [0, 9, 29, 59]
    np.testing.assert_allclose(x[idx], [0.123, 0.358, 0.506, 0.885])
    np.testing.assert_allclose(
        s[idx], [0.408695671665983, 0.417787786744889, 0.342538546217926, 0.948635775866041],
        rtol=RTOL)


def test_val_prob_constant_prediction_like_R():
    """R's val.prob with a single distinct p: Intercept = qlogis(mean(y)), Slope = 0."""
    v = val_prob(y, np.full_like(y, 0.4))
    assert v["calibration_intercept"] == pytest.approx(np.log(0.5 / 0.5), abs=1e-12)
    assert v["calibration_slope"] == 0.0
    assert v["eavg"] == pytest.approx(0.1)


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


def test_bad_probabilities():
    with pytest.raises(StatisticsError, match=r"\[0, 1\]; rows \[1\]"):
        val_prob([0, 1, 1], [0.2, 1.3, 0.5])
    with pytest.raises(StatisticsError, match="with and without MVI"):
        val_prob([1, 1, 1], [0.2, 0.3, 0.5])


def test_zero_one_predictions_left_out_with_warning():
    pp = p.copy()
    pp[0] = 0.0
    with pytest.warns(StatisticsWarning, match="exactly 0 or 1"):
        v = val_prob(y, pp)
    assert np.isfinite(v["calibration_slope"])


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
