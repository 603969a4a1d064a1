"""Tests of dlmvi.evaluate.roc against R's pROC 1.18.0."""

import numpy as np
import pytest

from dlmvi.errors import StatisticsError
from dlmvi.evaluate.roc import (RocDisplay, delong_auc_ci, delong_placements, delong_test,
                             roc_curve_table)
from r_reference import Y

# Generated in R (see test_delong_auc_ci_against_R): 60 patients, scores with ties.
S1 = "-0.1 1.9 -1.1 -0.8 0.1 -0.7 0.2 1.2 -1.4 0.4 -0.9 0 0.2 -0.2 -0.6 0.5 1.5 1 0.8 -1.8 -0.8 1 0.3 2.7 -0.6 1.1 1.2 0.3 0.3 0 -0.1 -0.6 1.1 -0.5 0.6 -1.5 0 -0.1 1.1 0.9 -1.8 -2.7 0.4 -0.9 0.1 -0.4 0.4 -1.7 -0.4 1.4 -2.1 -1.3 -1.3 -1.2 0.2 1 0.9 0.4 0.1 0.8"
S2 = "2.9 1.8 2.4 3.1 3.6 3.9 3.7 1.1 3.4 3.9 4 2.7 3.4 0.3 -0.4 3.3 2.2 5.7 -0.8 1.9 4.5 3.6 0.2 4.4 2.1 2.8 5.3 4.1 1.4 3.4 3.7 3.7 4.1 2 1.9 5.3 3.6 0.9 2.2 1.7 2.5 2 1.6 -1.3 4.7 0.9 1.5 1.4 5.2 5.4 3 1.4 0 1.1 4.7 4.2 4 2.2 4.1 3.8"


def _arr(s):
    return np.array(s.split(), dtype=float)


y, s1, s2 = _arr(Y), _arr(S1), _arr(S2)
RTOL = 1e-6


def test_delong_auc_ci_against_R():
    """pROC::ci.auc(method = "delong"); tolerance relative 1e-6.

    R 4.x, pROC 1.18.0::

        set.seed(20240601); n <- 60
        x1 <- rbinom(n, 1, 0.5); x2 <- rbinom(n, 1, 0.4); x3 <- round(rnorm(n, 5, 2), 1)
        lp <- -1 + 1.2 * x1 + 0.8 * x2 + 0.2 * (x3 - 5)
        y <- rbinom(n, 1, plogis(lp))
        s1 <- round(lp + rnorm(n, 0, 1), 1); s2 <- round(0.5 * x3 + rnorm(n, 0, 1), 1)
        r1 <- roc(y, s1, direction = "<", levels = c(0, 1))
        r2 <- roc(y, s2, direction = "<", levels = c(0, 1))
        ci.auc(r1, method = "delong")           # 0.475185336068572 0.623333333333333 0.771481330598094
        ci.auc(r2, method = "delong", conf.level = 0.9)
                                                # 0.607897698713874 0.716111111111111 0.824324523508348
    """
    auc, lo, hi = delong_auc_ci(y, s1)
    np.testing.assert_allclose([auc, lo, hi],
                               [0.623333333333333, 0.475185336068572, 0.771481330598094],
                               rtol=RTOL)
    auc, lo, hi = delong_auc_ci(y, s2, level=0.9)
    np.testing.assert_allclose([auc, lo, hi],
                               [0.716111111111111, 0.607897698713874, 0.824324523508348],
                               rtol=RTOL)


def test_delong_test_against_R():
    """pROC::roc.test(r1, r2, method = "delong", paired = TRUE) (data as above); rtol 1e-6.

        t <- roc.test(r1, r2, method = "delong", paired = TRUE)
        t$statistic   # -0.989389034378125
        t$p.value     # 0.322472837540257
        t$conf.int    # -0.2765690840200190  0.0910135284644633
    """
    t = delong_test(y, s1, s2)
    np.testing.assert_allclose(t["z"], -0.989389034378125, rtol=RTOL)
    np.testing.assert_allclose(t["p"], 0.322472837540257, rtol=RTOL)
    np.testing.assert_allclose([t["ci_low"], t["ci_high"]],
                               [-0.2765690840200190, 0.0910135284644633], rtol=RTOL)
    np.testing.assert_allclose([t["auc1"], t["auc2"]], [0.623333333333333, 0.716111111111111],
                               rtol=RTOL)


def test_auc_matches_mann_whitney_and_sklearn():
    from sklearn.metrics import roc_auc_score

    auc, v10, v01 = delong_placements(y, s1)
    assert auc == pytest.approx(roc_auc_score(y, s1), rel=1e-12)
    assert v01.mean() == pytest.approx(auc, rel=1e-12)  # both placements average to the AUC
    assert v10.size == int(y.sum()) and v01.size == int((1 - y).sum())


def test_identical_curves_give_z0_p1():
    t = delong_test(y, s1, s1)
    assert (t["z"], t["p"], t["diff"]) == (0.0, 1.0, 0.0)


def test_perfect_separation_ci_clipped_to_one():
    yy = np.array([0, 0, 0, 1, 1, 1])
    assert delong_auc_ci(yy, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]) == (1.0, 1.0, 1.0)


def test_delong_on_100000_patients_with_ties():
    """Large n with many ties (speed is benchmarked in benchmarks/bench_stats.py, not here)."""
    rng = np.random.default_rng(1)
    yy = rng.integers(0, 2, 100_000)
    a = yy + rng.normal(size=yy.size)
    b = np.round(a + rng.normal(size=yy.size), 1)  # many ties
    auc, lo, hi = delong_auc_ci(yy, a)
    t = delong_test(yy, a, b)
    assert lo < auc < hi and 0.74 < auc < 0.78  # AUC of N(1,1) vs N(0,1) = Phi(1/sqrt 2) = 0.760
    assert t["auc1"] > t["auc2"] and t["p"] < 1e-10


@pytest.mark.parametrize("y_bad, match", [
    (np.zeros(6), "only one class"),
    (np.array([0, 1, 2, 0, 1, 0]), "must be 0 or 1"),
])
def test_bad_outcome(y_bad, match):
    with pytest.raises(StatisticsError, match=match):
        delong_auc_ci(y_bad, np.arange(6.0))


def test_missing_score_names_rows():
    with pytest.raises(StatisticsError, match=r"rows \[2\]"):
        delong_auc_ci([0, 1, 0, 1], [0.1, 0.4, np.nan, 0.8])


def test_too_few_for_variance():
    with pytest.raises(StatisticsError, match="at least 2"):
        delong_auc_ci([0, 1, 1, 1], [0.1, 0.4, 0.5, 0.8])


def test_roc_table_and_display(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    t = roc_curve_table(y, s1)
    assert (t["fpr"].iloc[0], t["tpr"].iloc[0]) == (0.0, 0.0)
    assert (t["fpr"].iloc[-1], t["tpr"].iloc[-1]) == (1.0, 1.0)
    assert np.trapezoid(t["tpr"], t["fpr"]) == pytest.approx(0.623333333333333, rel=1e-9)
    d = RocDisplay.from_predictions(y, {"a": s1, "b": s2}).plot()
    assert len(d.ax_.get_lines()) == 3
    assert "AUC 0.623 (0.475-0.771)" in d.ax_.get_legend().get_texts()[0].get_text()
    assert set(d.to_frame()["curve"]) == {"a", "b"}
