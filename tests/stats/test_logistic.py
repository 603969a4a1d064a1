"""Tests of dlmvi.stats.logistic against R's glm and closed forms."""

import warnings

import numpy as np
import pandas as pd
import pytest

from dlmvi.errors import ClinicalTableError, StatisticsError, StatisticsWarning
from dlmvi.stats.logistic import fit_logit, require_numeric, univariate_logit
from r_reference import Y, X1, X2, X3


RTOL = 1e-6


@pytest.fixture
def data():
    cols = {k: np.array(v.split(), dtype=float) for k, v in
            {"y": Y, "x1": X1, "x2": X2, "x3": X3}.items()}
    df = pd.DataFrame(cols)
    df.insert(0, "patient_id", [f"P{i:03d}" for i in range(len(df))])
    return df


def test_multivariate_against_R(data):
    """R's glm with Wald intervals (confint.default); rtol 1e-6.

    Data: R code in tests/stats/test_roc.py (set.seed(20240601), n = 60)::

        ctl <- glm.control(epsilon = 1e-14, maxit = 100)   # exact MLE
        f <- glm(y ~ x1 + x2 + x3, family = binomial, control = ctl)
        coef(summary(f)); confint.default(f)
        #             Estimate           Std. Error        Pr(>|z|)
        # (Intercept) -2.675734414000316 0.999282289854533 0.00741392756115294
        # x1           1.196100209165925 0.590042336648055 0.04264778753433639
        # x2           0.170020308735942 0.573180530648014 0.76675197785973515
        # x3           0.359756751816169 0.141860794737240 0.01121317530415037
        # exp(confint.default(f)):
        # (Intercept) 0.0097129841878125  0.488128242572169
        # x1          1.0404345682695255 10.512467548497710
        # x2          0.3854310779928192  3.645281186090474
        # x3          1.0851461770537669  1.892310937320334
    """
    res = fit_logit(data, "y", ["x1", "x2", "x3"])
    s = res.summary.set_index("variable")
    np.testing.assert_allclose(
        s["coef"], [-2.675734414000316, 1.196100209165925, 0.170020308735942,
                    0.359756751816169], rtol=RTOL)
    np.testing.assert_allclose(
        s["se"], [0.999282289854533, 0.590042336648055, 0.573180530648014,
                  0.141860794737240], rtol=RTOL)
    np.testing.assert_allclose(
        s["z"], [-2.677656195017553, 2.027143028347418, 0.296626105816477,
                 2.535984325214894], rtol=RTOL)
    np.testing.assert_allclose(
        s["p_value"], [0.00741392756115294, 0.04264778753433639, 0.76675197785973515,
                       0.01121317530415037], rtol=RTOL)
    np.testing.assert_allclose(
        s["ci_low"], [0.0097129841878125, 1.0404345682695255, 0.3854310779928192,
                      1.0851461770537669], rtol=RTOL)
    np.testing.assert_allclose(
        s["ci_high"], [0.488128242572169, 10.512467548497710, 3.645281186090474,
                       1.892310937320334], rtol=RTOL)
    assert (res.n, res.n_events, res.dropped, res.separation) == (60, 30, [], [])
    lp = res.linear_predictor(data)
    assert lp[0] == pytest.approx(-2.675734414000316 + 1.196100209165925 + 0.359756751816169
                                  * 1.9, rel=1e-9)


def test_univariate_against_R_and_woolf(data):
    """One binary predictor: glm equals the 2x2 table's odds ratio and Woolf CI.

        f1 <- glm(y ~ x1, family = binomial, control = ctl)
        coef(summary(f1))["x1", ]   # 0.980829253011725 0.540979417500083 z 1.81306205242379
                                    # p 0.0698222511837974
        exp(confint.default(f1))["x1", ]   # 0.923604876469313 7.69930009280042
        table(x1, y)   # x1 = 0: 16 without, 9 with MVI; x1 = 1: 14 without, 21 with
    """
    u = univariate_logit(data, "y", ["x1", "x3"]).set_index("variable")
    r = u.loc["x1"]
    np.testing.assert_allclose(
        [r["coef"], r["se"], r["p_value"], r["ci_low"], r["ci_high"]],
        [0.980829253011725, 0.540979417500083, 0.0698222511837974, 0.923604876469313,
         7.69930009280042], rtol=RTOL)
    a, b, c, d = 21, 14, 9, 16  # exposed with/without, unexposed with/without
    woolf_or = a * d / (b * c)
    se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    assert r["odds_ratio"] == pytest.approx(woolf_or, rel=1e-9)
    assert r["se"] == pytest.approx(se, rel=1e-9)
    assert r["ci_low"] == pytest.approx(np.exp(np.log(woolf_or) - 1.959963984540054 * se),
                                        rel=1e-9)
    assert (r["n"], r["n_events"]) == (60, 30)


def test_missing_values_are_dropped_with_warning(data):
    data.loc[[3, 7], "x3"] = np.nan
    with pytest.warns(StatisticsWarning, match=r"2 of 60 rows dropped.*patient P003"):
        res = fit_logit(data, "y", ["x1", "x3"])
    assert res.n == 58 and res.dropped == ["P003", "P007"]


def test_one_class_outcome(data):
    data["y"] = 1.0
    with pytest.raises(StatisticsError, match="one class only"):
        fit_logit(data, "y", ["x1"])


def test_constant_predictor(data):
    data["x2"] = 1.0
    with pytest.raises(StatisticsError, match="predictor 'x2' is constant"):
        fit_logit(data, "y", ["x1", "x2"])
    with pytest.warns(StatisticsWarning, match="'x2' skipped"):
        u = univariate_logit(data, "y", ["x1", "x2"])
    assert np.isnan(u.loc[1, "odds_ratio"]) and np.isfinite(u.loc[0, "odds_ratio"])


def test_missing_column(data):
    with pytest.raises(ClinicalTableError, match=r"\['ggt'\].*not in the clinical table"):
        fit_logit(data, "y", ["x1", "ggt"])


def test_non_numeric_names_column_and_patients(data):
    data["x3"] = data["x3"].astype(object)
    data.loc[4, "x3"] = "<0.5"
    data.loc[9, "x3"] = "n/a"
    with pytest.raises(ClinicalTableError, match=r"column 'x3'.*'<0.5'.*patient P004, patient P009"):
        require_numeric(data, ["x3"])


def test_separation_warns(data):
    data["sep"] = data["y"]  # perfect predictor
    with pytest.warns(StatisticsWarning, match="separation"):
        res = fit_logit(data, "y", ["sep"])
    assert res.separation == ["sep"]


def test_few_events_per_variable_warn(data):
    small = data.iloc[:20]
    with pytest.warns(StatisticsWarning, match="events per variable"):
        fit_logit(small, "y", ["x1", "x2", "x3"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_logit(data, "y", ["x1"])  # 30 events for 1 variable: no warning


def test_collinear(data):
    data["x1_copy"] = 1 - data["x1"]
    with pytest.raises(StatisticsError, match="collinear"):
        fit_logit(data, "y", ["x1", "x1_copy"])
