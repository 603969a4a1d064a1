"""Tests of dlmvi.stats.table1 against R (glm, quantile, wilcox.test)."""

import numpy as np
import pandas as pd
import pytest

from dlmvi.errors import ClinicalTableError, StatisticsError, StatisticsWarning
from dlmvi.stats.table1 import render_table1, univariate_table
from r_reference import Y, X1, X3

RTOL = 1e-6


@pytest.fixture
def table():
    x3 = np.array(X3.split(), dtype=float)
    return pd.DataFrame({
        "patient_id": [f"P{i:03d}" for i in range(60)],
        "mvi": np.array(Y.split(), dtype=float),
        "afp": x3 * 5,
        "sex": np.array(X1.split(), dtype=float),
        "tumor_size_cm": x3,
    })


def test_univariate_against_R(table):
    """Dichotomised AFP (> 20) and continuous summaries equal R's.

    Data of tests/stats/test_roc.py's R script, afp = x3 * 5::

        d$afp20 <- as.numeric(d$x3 * 5 > 20)
        f <- glm(y ~ afp20, binomial, d, control = glm.control(epsilon = 1e-14))
        coef(summary(f))["afp20", ]   # 1.203972804325935 0.615539510420508 p 0.0504694560696839
        exp(confint.default(f))["afp20", ]   # 0.997540562225482 11.13850557246769
        table(d$afp20, d$y)  # <= 20: 12 absent / 5 present; > 20: 18 / 25
        tapply(d$x3 * 5, d$y, quantile, c(.25, .5, .75))
        # absent 17.75 21.50 30.25; present 23.625 30.500 38.750
        wilcox.test(afp[y == 1], afp[y == 0], exact = FALSE, correct = TRUE)$p.value
        # 0.0121891037290816
    """
    t = univariate_table(table, "mvi", ["afp", "sex", "tumor_size_cm"], {"afp": 20.0})
    r = t.set_index("variable").loc["afp"]
    assert r["kind"] == "dichotomised" and (r["level0"], r["level1"]) == ("<= 20", "> 20")
    assert [r["absent_level0"], r["present_level0"], r["absent_level1"],
            r["present_level1"]] == [12, 5, 18, 25]
    np.testing.assert_allclose(
        [r["coef"], r["se"], r["p_value"], r["ci_low"], r["ci_high"]],
        [1.203972804325935, 0.615539510420508, 0.0504694560696839, 0.997540562225482,
         11.13850557246769], rtol=RTOL)
    np.testing.assert_allclose(
        [r["q1_absent"], r["median_absent"], r["q3_absent"],
         r["q1_present"], r["median_present"], r["q3_present"]],
        [17.75, 21.5, 30.25, 23.625, 30.5, 38.75], rtol=1e-12)
    assert r["mannwhitney_p"] == pytest.approx(0.0121891037290816, rel=RTOL)
    s = t.set_index("variable").loc["sex"]
    assert s["kind"] == "binary" and (s["level0"], s["level1"]) == ("male", "female")
    assert np.isnan(s["mannwhitney_p"])
    # OR of sex = Woolf's 2x2 OR: table(x1, y) = 16/9 and 14/21
    assert s["odds_ratio"] == pytest.approx(21 * 16 / (14 * 9), rel=1e-9)
    c = t.set_index("variable").loc["tumor_size_cm"]
    assert c["kind"] == "continuous" and pd.isna(c["absent_level0"])
    assert c["mannwhitney_p"] == pytest.approx(0.0121891037290816, rel=RTOL)  # rank-invariant


def test_render_html_and_markdown(table):
    t = univariate_table(table, "mvi", ["afp", "sex", "tumor_size_cm"], {"afp": 20.0})
    md = render_table1(t, "markdown", title="Table 1", notice="SYNTHETIC")
    assert "| AFP (ng/mL) | <= 20 | 12 (40.0%) | 5 (16.7%) | 1 (reference) |  |" in md
    assert "| Sex | male | 16 (53.3%) | 9 (30.0%) |" in md
    assert "1.204" not in md and "3.333 (0.998-11.139)" in md  # OR = exp(1.204)
    assert md.startswith("**SYNTHETIC**")
    h = render_table1(t, "html", title="Table 1 <n=60>")
    assert "Table 1 &lt;n=60&gt;" in h and h.count("<tr>") == 6  # 3 AFP rows, 2 sex, 1 size
    assert "&lt;= 20" in h and "median (IQR)" in h


def test_bad_input(table):
    with pytest.raises(StatisticsError, match="same MVI status"):
        univariate_table(table.assign(mvi=0.0), "mvi", ["afp"], {})
    with pytest.raises(ClinicalTableError, match=r"\['ggt'\]"):
        univariate_table(table, "mvi", ["afp", "ggt"], {})
    bad = table.assign(afp=table["afp"].astype(object))
    bad.loc[2, "afp"] = ">1000"
    with pytest.raises(ClinicalTableError, match="column 'afp'.*'>1000'.*patient P002"):
        univariate_table(bad, "mvi", ["afp"], {"afp": 20.0})
    with pytest.warns(StatisticsWarning, match="sex: no odds ratio.*constant"):
        t = univariate_table(table.assign(sex=1.0), "mvi", ["sex"], {})
    assert np.isnan(t.loc[0, "odds_ratio"])


def test_separation_in_table1_and_firth(table):
    """Every woman (sex = 1) has MVI: a zero cell. R's glm returns OR 1.5e9 (see
    tests/stats/test_logistic.py); Table 1 says "not estimable (separation)" instead, and
    ``method="firth"`` gives logistf's estimate (R, brglm2 AS_mean + profile penalised
    likelihood as in test_firth_under_separation_against_R):
        OR exp(4.814748459341415) = 123.3158, 95% CI exp(2.66376317404799) = 14.3502 to
        exp(9.696648383572235) = 16263.01; penalised LR p 7.38560739368406e-09.
    """
    table.loc[table["sex"] == 1, "mvi"] = 1.0
    with pytest.warns(StatisticsWarning, match="sex: perfect or quasi-complete separation"):
        t = univariate_table(table, "mvi", ["afp", "sex"], {"afp": 20.0})
    s = t.set_index("variable").loc["sex"]
    assert s["note"] == "not estimable (separation)" and np.isnan(s["odds_ratio"])
    assert (s["absent_level1"], s["present_level1"]) == (0, 35)
    md = render_table1(t, "markdown", title="Table 1")
    assert "| female | 0 (0.0%) | 35 (" in md and "| not estimable (separation) | - |" in md
    assert "maximum-likelihood odds ratio is infinite" in md
    f = univariate_table(table, "mvi", ["sex"], {}, method="firth").set_index("variable").loc["sex"]
    assert f["note"] == ""
    assert f["odds_ratio"] == pytest.approx(np.exp(4.814748459341415), rel=1e-6)
    assert [f["ci_low"], f["ci_high"]] == pytest.approx([np.exp(2.66376317404799),
                                                         np.exp(9.696648383572235)], rel=1e-5)
    assert f["p_value"] == pytest.approx(7.38560739368406e-09, rel=1e-5)
    assert "Firth's penalised logistic regression" in render_table1(
        univariate_table(table, "mvi", ["sex"], {}, method="firth"), "markdown", method="firth")
