"""Tests of dlmvi.stats.nomogram against R's glm / predict.glm."""

import json

import numpy as np
import pandas as pd
import pytest

from dlmvi.errors import ClinicalTableError, StatisticsError
from dlmvi.stats.nomogram import NomogramDisplay, NomogramModel
from r_reference import Y, X1, X3

RTOL = 1e-6


@pytest.fixture
def table():
    y = np.array(Y.split(), dtype=float)
    return pd.DataFrame({
        "patient_id": [f"P{i:03d}" for i in range(60)],
        "mvi": y,
        "afp": np.array(X3.split(), dtype=float) * 5,  # ng/mL; > 20 for 43 of 60
        "dl_mvi": np.array(X1.split(), dtype=float),
    })


def test_fit_and_interval_against_R(table):
    """Nomogram on AFP > 20 and DL-MVI equals R's glm; the CI equals predict.glm's.

    Data of tests/stats/test_roc.py's R script, with afp = x3 * 5 and dl_mvi = x1::

        d$afp20 <- as.numeric(d$afp > 20); d$dl_mvi <- d$x1
        f <- glm(y ~ afp20 + dl_mvi, family = binomial, data = d,
                 control = glm.control(epsilon = 1e-14, maxit = 100))
        coef(f)   # -1.56086983248750 1.28928993578111 1.06509747233142
        vcov(f)   # [0.455114953839310, -0.332183068843734, -0.224243068956055;
                  #  -0.332183068843734, 0.407663092302460, 0.048851510601432;
                  #  -0.224243068956055, 0.048851510601432, 0.319936046826593]
        pr <- predict(f, data.frame(afp20 = c(1, 0), dl_mvi = c(1, 0)), type = "link",
                      se.fit = TRUE)
        plogis(pr$fit - qnorm(0.975) * pr$se.fit)   # 0.4978031402592493 0.0529950997046702
        plogis(pr$fit + qnorm(0.975) * pr$se.fit)   # 0.831433732366208  0.440622798325171
        plogis(pr$fit)                              # from 0.793517575625035 -1.5608698324875
    """
    m = NomogramModel().fit(table, outcome="mvi")
    assert m.intercept_ == pytest.approx(-1.56086983248750, rel=RTOL)
    np.testing.assert_allclose(m.coef_[["afp", "dl_mvi"]],
                               [1.28928993578111, 1.06509747233142], rtol=RTOL)
    np.testing.assert_allclose(
        m.cov_.to_numpy(),
        [[0.455114953839310, -0.332183068843734, -0.224243068956055],
         [-0.332183068843734, 0.407663092302460, 0.048851510601432],
         [-0.224243068956055, 0.048851510601432, 0.319936046826593]], rtol=RTOL)
    new = pd.DataFrame({"afp": [350.0, 20.0], "dl_mvi": [1.0, 0.0]})  # 20 is not > 20
    ci = m.predict_interval(new)
    expit = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    np.testing.assert_allclose(ci["prob"], expit(np.array([0.793517575625035,
                                                           -1.5608698324875])), rtol=RTOL)
    np.testing.assert_allclose(ci["ci_low"], [0.4978031402592493, 0.0529950997046702], rtol=RTOL)
    np.testing.assert_allclose(ci["ci_high"], [0.831433732366208, 0.440622798325171], rtol=RTOL)
    np.testing.assert_allclose(m.predict_proba(new), ci["prob"])


def test_study_formula_text_and_json(table):
    m = NomogramModel().fit(table, outcome="mvi")
    assert m.formula_ == "logit(p) = -1.561 + 1.289 * [afp > 20] + 1.065 * [dl_mvi]"
    j = m.to_json({"2015": {"n": 60, "auc": 0.7}}, synthetic=True)
    assert json.loads(json.dumps(j))["coefficients"] == pytest.approx(
        {"afp": 1.28928993578111, "dl_mvi": 1.06509747233142}, rel=RTOL)
    assert j["cutoffs"] == {"afp": 20.0} and j["terms"]["afp"] == "afp > 20"
    assert j["validation"]["2015"]["auc"] == 0.7 and j["synthetic"] is True
    assert (j["n"], j["n_events"]) == (60, 30)


def test_published_nomogram_points():
    """The study's nomogram, -3.51 + 1.53 AFP + 3.58 DL-MVI: DL-MVI gets 100 points,
    AFP 100 * 1.53 / 3.58; 0 points -> plogis(-3.51)."""
    m = NomogramModel()
    m.intercept_, m.coef_ = -3.51, pd.Series({"afp": 1.53, "dl_mvi": 3.58})
    m.ranges_ = {"afp": (0.0, 1.0), "dl_mvi": (0.0, 1.0)}
    pts = m.points_table().set_index(["predictor", "value"])["points"]
    assert pts[("dl_mvi", 1.0)] == pytest.approx(100.0)
    assert pts[("afp", 1.0)] == pytest.approx(100 * 1.53 / 3.58)
    assert pts[("afp", 0.0)] == 0.0
    total = pts[("afp", 1.0)] + 100
    np.testing.assert_allclose(m.points_to_probability([0.0, total]),
                               1 / (1 + np.exp(-np.array([-3.51, -3.51 + 1.53 + 3.58]))))


def test_display(table):
    import matplotlib

    matplotlib.use("Agg")
    m = NomogramModel().fit(table, outcome="mvi")
    d = NomogramDisplay.from_model(m, labels={"dl_mvi": "DL-MVI"})
    assert d.labels == {"afp": "afp > 20", "dl_mvi": "DL-MVI"}
    # probability ticks sit where the model says they should
    pr = d.probability
    np.testing.assert_allclose(m.points_to_probability(pr["total_points"]), pr["probability"])
    d.plot()
    texts = {t.get_text() for t in d.ax_.texts}
    assert {"Points", "Total points", "Probability of MVI", "DL-MVI"} <= texts


def test_bad_input(table):
    with pytest.raises(ClinicalTableError, match=r"\['dl_mvi'\].*not in the clinical table"):
        NomogramModel().fit(table.drop(columns="dl_mvi"), outcome="mvi")
    const = table.assign(afp=5.0)
    with pytest.raises(StatisticsError, match="'afp' is constant"):
        NomogramModel().fit(const, outcome="mvi")
    with pytest.raises(StatisticsError, match="not fitted"):
        NomogramModel().predict_proba(table)
    m = NomogramModel(predictors=["afp"], cutoffs={"afp": 30}).fit(table, outcome="mvi")
    assert m.term("afp") == "afp > 30"
    assert np.isnan(m.predict_proba(pd.DataFrame({"afp": [np.nan, 40.0]}))[0])
