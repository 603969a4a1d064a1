"""Tests of dlmvi.stats.clinical's nomogram outputs (issue 16: 2-5) against R.

Development cohort 2015 = the 60 patients of tests/r_reference.py with AFP > 20 ng/mL where
x1 = 1 and DL-MVI = x2; validation cohort 2018 = the same outcomes with the inputs swapped
(AFP from x2, DL-MVI from x1). R 4.2.2, rms 6.5-0, pROC 1.18, brglm2 0.9::

    ctl <- glm.control(epsilon = 1e-14, maxit = 100)
    dev <- data.frame(y = Y, afp = X1, dl = X2); val <- data.frame(y = Y, afp = X2, dl = X1)
    f <- glm(y ~ afp + dl, binomial, dev, control = ctl)
    p15 <- fitted(f); p18 <- predict(f, newdata = val, type = "response")
"""

import json

import numpy as np
import pandas as pd
import pytest

from dlmvi.stats.clinical import analyse_clinical
from dlmvi.stats.config import ClinicalConfig
from r_reference import X1, X2, Y

RTOL = 1e-6


def _table(y, afp, dl, cohort, offset):
    return pd.DataFrame({"patient_id": [f"{cohort}-{i + offset:03d}" for i in range(len(y))],
                         "cohort": cohort, "mvi_grade": np.where(y == 1, "M1", "M0"),
                         "afp": np.where(afp == 1, 30.0, 10.0), "dl_mvi": dl})


@pytest.fixture
def table():
    y, x1, x2 = (np.array(s.split(), dtype=float) for s in (Y, X1, X2))
    return pd.concat([_table(y, x1, x2, "2015", 0), _table(y, x2, x1, "2018", 0)], ignore_index=True)


@pytest.fixture
def result(table):
    cfg = ClinicalConfig(n_bootstrap=0, variables=("afp",))
    return analyse_clinical(table, develop_cohort="2015", config=cfg, synthetic=True)


def test_model_fit_and_added_value_against_R(result):
    """anova(glm(y ~ afp, binomial, dev), f, test = "LRT"): Deviance 0.00181709957745113,
    Pr(>Chi) 0.9659985126527; AIC(f) 85.7799093307556;
    lrm(y ~ afp + dl, dev)$stats: Model L.R. 3.3977523364378328, R2 0.0734074873409953.
    coef(f): -0.5862850633135819 0.9813792825404067 0.0227143679711903. rtol 1e-6.
    """
    nomo = result.nomogram
    assert nomo["intercept"] == pytest.approx(-0.5862850633135819, rel=RTOL)
    assert nomo["coefficients"] == pytest.approx({"afp": 0.9813792825404067, "dl_mvi": 0.0227143679711903},
                                                 rel=RTOL)
    lt = nomo["lr_test"]
    assert (lt["base"], lt["added"], lt["df"], lt["n"]) == (["afp"], ["dl_mvi"], 1, 60)
    assert [lt["chi2"], lt["p"]] == pytest.approx([0.00181709957745113, 0.9659985126527], rel=RTOL)
    assert nomo["aic"] == pytest.approx(85.7799093307556, rel=1e-9)
    assert nomo["model_lr"]["chi2"] == pytest.approx(3.3977523364378328, rel=RTOL)
    assert nomo["nagelkerke_r2"] == pytest.approx(0.0734074873409953, rel=RTOL)
    assert nomo["method"] == "ml"
    # DeLong only between non-nested curves; the nomogram against its inputs is the LR test
    cmp = result.roc_comparison
    assert cmp[["curve_a", "curve_b"]].drop_duplicates().values.tolist() == [["AFP > 20", "DL-MVI"]]


def test_validation_keys_against_R(result):
    """val.prob(p18, val$y, pl = FALSE): Brier 0.26447146404448174, Intercept
    0.00254532583137153, Slope 0.02212198484065779, Eavg 0.13306182441486511,
    E90 0.26417509168227321, Emax 0.26417509168227321;
    confint.default(glm(val$y ~ qlogis(p18), binomial)): (Intercept) -0.517316633178636
    0.522407284841379; slope -1.011781772047055 1.056025741728371;
    f0 <- glm(val$y ~ offset(qlogis(p18)), binomial): 0.116377973291662,
    confint.default(f0) -0.404901163037645 0.637657109620969. rtol 1e-6.
    """
    v = result.nomogram["validation"]["2018"]
    assert v["role"] == "validation" and (v["n"], v["n_events"]) == (60, 30)
    assert v["brier"] == pytest.approx(0.26447146404448174, rel=RTOL)
    assert v["brier_scaled"] == pytest.approx(1 - 0.26447146404448174 / 0.25, rel=RTOL)
    assert v["calibration_intercept"] == pytest.approx(0.00254532583137153, rel=1e-5)
    assert v["calibration_slope"] == pytest.approx(0.02212198484065779, rel=1e-5)
    assert v["calibration_intercept_ci"] == pytest.approx([-0.517316633178636, 0.522407284841379], rel=RTOL)
    assert v["calibration_slope_ci"] == pytest.approx([-1.011781772047055, 1.056025741728371], rel=RTOL)
    assert v["calibration_in_the_large"] == pytest.approx(0.116377973291662, rel=RTOL)
    assert v["calibration_in_the_large_ci"] == pytest.approx([-0.404901163037645, 0.637657109620969], rel=RTOL)
    assert [v["eavg"], v["e90"], v["emax"]] == pytest.approx(
        [0.13306182441486511, 0.26417509168227321, 0.26417509168227321], rel=RTOL)


def test_youden_classification_and_dca(result, tmp_path):
    """coords(roc(dev$y, p15, direction = "<"), "best", best.method = "youden")$threshold
    = 0.480115048978428, chosen on 2015 and applied unchanged to 2018, where
    table(round(p18, 6), y) gives p >= 0.48: 14 with / 14 without MVI, below: 16 / 16;
    binom.test(14, 30)$conf.int = 0.283418079183537 0.656744761839266. rtol 1e-9.
    """
    assert result.nomogram["youden_threshold"]["chosen_on"] == "2015"
    assert result.nomogram["youden_threshold"]["threshold"] == pytest.approx(0.480115048978428, rel=1e-9)
    c = result.classification.set_index(["cohort", "model", "rule"])
    row = c.loc[("2018", "nomogram", "p >= 0.4801 (Youden, 2015)")]
    assert row["threshold"] == pytest.approx(0.480115048978428, rel=1e-9)
    assert [row[k] for k in ("tp", "fp", "tn", "fn")] == [14, 14, 16, 16]
    assert [row["sensitivity"], row["sensitivity_ci_low"], row["sensitivity_ci_high"]] == pytest.approx(
        [14 / 30, 0.283418079183537, 0.656744761839266], rel=1e-9)
    assert set(c.loc["2018"].index.get_level_values("model")) == {"nomogram", "AFP > 20", "DL-MVI"}
    dca = result.dca.set_index(["cohort", "model", "threshold"])
    # DL-MVI alone in 2018 (= x1): 21 of 35 positives have MVI; net benefit at pt = 0.2
    nb = dca.loc[("2018", "DL-MVI", 0.2), "net_benefit"]
    assert nb == pytest.approx(21 / 60 - 14 / 60 * 0.25, rel=1e-12)
    assert dca.loc[("2018", "DL-MVI", 0.2), "interventions_avoided_per_100"] == pytest.approx(
        (nb - (0.5 - 0.5 * 0.25)) / 0.25 * 100, rel=1e-12)
    files = result.write(tmp_path)
    assert "classification" in files
    back = type(result).read(tmp_path)
    assert len(back.classification) == len(result.classification)
    assert json.loads((tmp_path / "nomogram.json").read_text())["lr_test"]["added"] == ["dl_mvi"]


def test_firth_nomogram_under_separation_against_R(table):
    """Every 2015 patient with AFP > 20 has MVI: quasi-complete separation. With
    method = "firth" (R: glm(y ~ afp + dl, binomial, sdev, method = "brglmFit",
    type = "AS_mean")): coef -0.437045824539275 4.719021629586409 -0.200670817926967,
    SE 0.557027687823159 1.452059578837532 0.796488579181900; rtol 1e-6. Under maximum
    likelihood multivariate.csv says the AFP term is not estimable.
    """
    sep = table.copy()
    sep.loc[(sep["cohort"] == "2015") & (sep["afp"] > 20), "mvi_grade"] = "M1"
    with pytest.warns(Warning):
        ml = analyse_clinical(sep, develop_cohort="2015", synthetic=True,
                              config=ClinicalConfig(n_bootstrap=0, variables=("afp",)))
    m = ml.multivariate.set_index("variable")
    assert m.loc["afp", "note"] == "not estimable (separation)" and np.isnan(m.loc["afp", "odds_ratio"])
    assert ml.univariate.set_index("variable").loc["afp", "note"] == ""  # Table 1 pools 2018 too
    with pytest.warns(Warning):
        fi = analyse_clinical(sep, develop_cohort="2015", synthetic=True,
                              config=ClinicalConfig(n_bootstrap=0, variables=("afp",), method="firth"))
    nomo = fi.nomogram
    assert nomo["method"] == "firth"
    assert [nomo["intercept"], nomo["coefficients"]["afp"], nomo["coefficients"]["dl_mvi"]] == pytest.approx(
        [-0.437045824539275, 4.719021629586409, -0.200670817926967], rel=RTOL)
    assert np.sqrt(np.diag(nomo["covariance"])) == pytest.approx(
        [0.557027687823159, 1.452059578837532, 0.796488579181900], rel=RTOL)
    assert fi.multivariate["method"].iloc[0].startswith("Firth")


def test_method_in_variables_toml(tmp_path):
    from dlmvi.errors import ConfigError
    from dlmvi.stats.config import load_config

    toml = tmp_path / "variables.toml"
    toml.write_text('method = "firth"\n')
    assert load_config(toml).method == "firth"
    toml.write_text('method = "exact"\n')
    with pytest.raises(ConfigError, match="method must be 'ml' or 'firth'"):
        load_config(toml)
