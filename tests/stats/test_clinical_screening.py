"""Screening variables into the multivariate model by a test that is valid under separation.

Data: ``tests/data/pbc_clinical.csv``, survival::pbc (Mayo Clinic primary biliary cholangitis,
public) as a clinical.csv: the 312 patients with AST and histologic stage; "MVI present" stands
for stage 4 (cirrhosis); tb = bilirubin x 17.1 (umol/L), alb = albumin x 10 (g/L). Written in R::

    library(survival)
    d <- pbc[!is.na(pbc$ast) & !is.na(pbc$stage), ]
    out <- data.frame(patient_id = sprintf("PBC%03d", d$id), cohort = "pbc",
                      mvi_grade = ifelse(d$stage == 4, "M1", "M0"), age = round(d$age, 2),
                      sex = as.integer(d$sex == "f"), ast = d$ast, tb = round(d$bili * 17.1, 1),
                      alb = round(d$albumin * 10, 1), plt = d$platelet, pt = d$protime)
    write.csv(out, "pbc_clinical.csv", row.names = FALSE, quote = FALSE, na = "")

AST <= 40 U/L holds 2 patients, both without the outcome: AST separates the outcome, yet its
association is chance (likelihood-ratio p = 0.19). It must not enter the model.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlmvi.errors import StatisticsWarning
from dlmvi.stats.clinical import analyse_clinical
from dlmvi.stats.config import ClinicalConfig

PBC = Path(__file__).resolve().parents[1] / "data" / "pbc_clinical.csv"
VARIABLES = ("age", "sex", "ast", "tb", "alb", "plt", "pt")


def _analyse(table=PBC, **kw):
    cfg = ClinicalConfig(variables=VARIABLES, nomogram_predictors=("tb", "alb"), n_bootstrap=0, **kw)
    with pytest.warns(StatisticsWarning):
        return analyse_clinical(table, config=cfg, synthetic=False)


def test_likelihood_ratio_screen_and_the_multivariate_model_against_R():
    """R 4.2.2 with glm's convergence tightened (epsilon 1e-14: R's default 1e-8 deviance criterion
    leaves its standard errors ~1e-7 off); LR p-values abs 1e-9 or rel 1e-6, coefficients and Wald
    CIs abs 1e-8. Under AST's
    separation the likelihood's supremum is reached at an infinite coefficient: R's glm with its
    default 1e-8 deviance criterion stops early (p 0.188908652705921), tightened it reaches the
    supremum (p 0.188908410796548; closed form: 2 patients with p = 0 and 310 at their proportion,
    0.188908410796340)::

        o <- read.csv("pbc_clinical.csv"); o$y <- as.integer(o$mvi_grade == "M1")
        cut <- c(age = 50, ast = 40, tb = 19, alb = 40, plt = 100, pt = 12)
        for (v in c("age", "sex", "ast", "tb", "alb", "plt", "pt")) {
          x <- if (v %in% names(cut)) as.integer(o[[v]] > cut[[v]]) else o[[v]]; ok <- !is.na(x)
          print(anova(glm(o$y[ok] ~ 1, binomial), glm(o$y[ok] ~ x[ok], binomial,
                control = glm.control(epsilon = 1e-14, maxit = 100)), test = "LRT")[2, 5]) }
        f <- glm(y ~ I(age > 50) + I(tb > 19) + I(alb > 40) + I(plt > 100) + I(pt > 12), binomial, o,
                 control = glm.control(epsilon = 1e-14, maxit = 100))
        cbind(coef(f), confint.default(f))
    """
    res = _analyse()
    univ = res.univariate.set_index("variable")
    lr = {"age": 0.00366976293777661, "sex": 0.373139234125484, "ast": 0.188908410796548,
          "tb": 3.35230284114526e-08, "alb": 3.40692985774352e-05, "plt": 0.00326495542534245,
          "pt": 0.000435512162779272}
    for v, p in lr.items():
        assert univ.loc[v, "lr_p_value"] == pytest.approx(p, abs=1e-9, rel=1e-6), v
    # AST: separated (no Wald p), chance by the LR test, left out of the model
    assert univ.loc["ast", "note"] == "not estimable (separation)" and np.isnan(univ.loc["ast", "p_value"])
    assert (univ.loc["ast", "absent_level0"], univ.loc["ast", "present_level0"]) == (2, 0)
    assert res.selected == ["age", "tb", "alb", "plt", "pt"]
    assert "likelihood-ratio" in res.summary["multivariate_screen"] and res.summary["multivariate_separated"] == []
    m = res.multivariate.set_index("variable")
    want = {"(Intercept)": (-0.369349928027729, -2.078633717784323, 1.339933861728864),
            "age": (0.827755765257009, 0.303650543608471, 1.351860986905546),
            "tb": (1.229892719691587, 0.657672928866845, 1.802112510516328),
            "alb": (-1.897763640046279, -3.375645681837667, -0.419881598254891),
            "plt": (-1.432065631812006, -3.067645247439225, 0.203513983815213),
            "pt": (0.745705843082838, -0.180051845653011, 1.671463531818687)}
    for v, (coef, lo, hi) in want.items():
        assert (m.loc[v, "coef"], np.log(m.loc[v, "ci_low"]), np.log(m.loc[v, "ci_high"])) == pytest.approx(
            (coef, lo, hi), abs=1e-8), v
    assert (m["note"] == "").all() and int(m["n"].iloc[0]) == 308
    assert res.multivariate_firth is None


def test_an_associated_variable_that_separates_is_named_and_firth_is_fitted(tmp_path):
    """A variable whose level of 14 patients all have the outcome (LR p far below 0.05) enters the
    model and separates it: only its row (and a diverging intercept) say not estimable, a warning
    names it, and Firth's fit of the same model is written beside it."""
    t = pd.read_csv(PBC, dtype={"patient_id": str})
    y = (t["mvi_grade"] == "M1").to_numpy()
    flag = np.zeros(len(t), dtype=int)
    flag[np.flatnonzero(y)[:14]] = 1  # present only in patients with the outcome
    t["ascites"] = flag
    path = tmp_path / "clinical.csv"
    t.to_csv(path, index=False)
    cfg = ClinicalConfig(variables=(*VARIABLES, "ascites"), nomogram_predictors=("tb", "alb"), n_bootstrap=0)
    with pytest.warns(StatisticsWarning, match=r"multivariate model \(all\): ascites separate\(s\) the outcome.*"
                                                r"Firth's penalised fit of the same model is in multivariate_firth.csv"):
        res = analyse_clinical(path, config=cfg, synthetic=False)
    assert "ascites" in res.selected and res.summary["multivariate_separated"] == ["ascites"]
    m = res.multivariate.set_index("variable")
    assert m.loc["ascites", "note"] == "not estimable (separation)" and np.isnan(m.loc["ascites", "odds_ratio"])
    assert np.isfinite(m.loc["tb", "odds_ratio"])  # the other terms keep their estimates
    f = res.multivariate_firth.set_index("variable")
    assert np.isfinite(f.loc["ascites", "odds_ratio"]) and f.loc["ascites", "odds_ratio"] > 10
    assert (f["method"].str.startswith("Firth")).all()
    written = res.write(tmp_path / "out")
    assert Path(written["multivariate_firth"]).name == "multivariate_firth.csv"
