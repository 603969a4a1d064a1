"""NRI, IDI, likelihood-ratio test, ICC and sample size against R, on survival::pbc.

Data: ``tests/data/pbc_clinical.csv`` (see tests/stats/test_clinical_screening.py); "MVI"
stands for histologic stage 4. Reference values from R 4.2.2 (Hmisc 4.8.0, psych 2.2.9)::

    library(Hmisc); library(psych)
    d <- read.csv("tests/data/pbc_clinical.csv")
    d$y <- as.integer(d$mvi_grade == "M1")
    d <- d[complete.cases(d[, c("age", "alb", "tb", "y")]), ]
    m1 <- glm(y ~ age + alb, binomial, d); m2 <- glm(y ~ age + alb + tb, binomial, d)
    p1 <- fitted(m1); p2 <- fitted(m2)
    r <- improveProb(p1, p2, d$y)       # nri, se.nri, nri.ev, se.nri.ev, nri.ne, se.nri.ne, idi, se.idi
    c1 <- findInterval(p1, c(0.3, 0.7)); c2 <- findInterval(p2, c(0.3, 0.7))
    rc <- improveProb(c1 / 2, c2 / 2, d$y)   # categorical NRI (improveProb wants [0, 1])
    a <- anova(m1, m2, test = "Chisq")       # a$Deviance[2], a$`Pr(>Chi)`[2]
    rat <- cbind(d$alb, d$alb + (d$plt %% 5) / 2, d$alb - (d$age %% 3) / 4)
    rat <- rat[complete.cases(rat), ]
    ICC(rat, lmer = FALSE)$results["Single_random_raters", ]   # ICC2 and its 95 % CI (ANOVA)
    # sample size: R pmsampsize is not installable here (no CRAN); Riley 2020's formulas by hand:
    n <- nrow(d); phi <- mean(d$y); p <- 3
    r2 <- 1 - exp((m2$deviance - m2$null.deviance) / n)
    maxr2 <- 1 - (phi^phi * (1 - phi)^(1 - phi))^2
    n1 <- ceiling(p / ((0.9 - 1) * log(1 - r2 / 0.9)))
    S2 <- r2 / (r2 + 0.05 * maxr2); n2 <- ceiling(p / ((S2 - 1) * log(1 - r2 / S2)))
    n3 <- ceiling((1.96 / 0.05)^2 * phi * (1 - phi))      # 140 74 350; events ceiling(350 * phi) = 123
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from dlmvi.errors import StatisticsError
from dlmvi.stats.compare import categorical_nri, improve_prob, lr_test
from dlmvi.stats.reproducibility import dl_reproducibility, feature_icc
from dlmvi.stats.samplesize import cox_snell_r2, riley_sample_size

PBC = Path(__file__).resolve().parents[1] / "data" / "pbc_clinical.csv"


@pytest.fixture(scope="module")
def pbc():
    d = pd.read_csv(PBC)
    d["y"] = (d["mvi_grade"] == "M1").astype(int)
    d = d.dropna(subset=["age", "alb", "tb"]).reset_index(drop=True)
    fits = {}
    for name, cols in (("m1", ["age", "alb"]), ("m2", ["age", "alb", "tb"])):
        fits[name] = sm.GLM(d["y"], sm.add_constant(d[cols]), family=sm.families.Binomial()).fit()
    return d, fits


def test_improve_prob_against_r(pbc):
    d, f = pbc
    r = improve_prob(f["m1"].fittedvalues, f["m2"].fittedvalues, d["y"])
    assert r["n"] == 312
    assert r["nri"] == pytest.approx(0.28652777150088121, abs=1e-9)
    assert r["nri_se"] == pytest.approx(0.11168039905638506, abs=1e-9)
    assert r["nri_events"] == pytest.approx(-0.21100917431192662, abs=1e-9)
    assert r["nri_events_se"] == pytest.approx(0.09362599460434694, abs=1e-9)
    assert r["nri_nonevents"] == pytest.approx(0.49753694581280783, abs=1e-9)
    assert r["nri_nonevents_se"] == pytest.approx(0.06088254813770701, abs=1e-9)
    assert r["idi"] == pytest.approx(0.01036635506004778, abs=1e-8)
    assert r["idi_se"] == pytest.approx(0.00611943023861081, abs=1e-8)
    assert r["idi_ci"][0] == pytest.approx(0.01036635506004778 - 1.959963984540054 * 0.00611943023861081, abs=1e-8)


def test_categorical_nri_against_r(pbc):
    d, f = pbc
    r = categorical_nri(f["m1"].fittedvalues, f["m2"].fittedvalues, d["y"], (0.3, 0.7))
    assert r["nri"] == pytest.approx(0.00695982284087314, abs=1e-10)
    assert r["nri_se"] == pytest.approx(0.03144678275363655, abs=1e-10)
    assert r["nri_events"] == pytest.approx(-0.02752293577981652, abs=1e-10)
    assert r["nri_nonevents"] == pytest.approx(0.03448275862068965, abs=1e-10)


def test_lr_test_against_r(pbc):
    _, f = pbc
    t = lr_test(f["m1"].llf, f["m2"].llf, 1)
    assert t["lr"] == pytest.approx(3.3594842139137313, abs=1e-6)
    assert t["p"] == pytest.approx(0.0668189935967457, abs=1e-7)


def test_feature_icc_against_psych(pbc):
    d, _ = pbc
    readers = [d["alb"], d["alb"] + (d["plt"] % 5) / 2, d["alb"] - (d["age"] % 3) / 4]
    long = pd.concat([pd.DataFrame({"patient_id": d["patient_id"], "reader": r, "T1V.tumour.x": v})
                      for r, v in enumerate(readers)], ignore_index=True)
    t = feature_icc(long).iloc[0]
    assert t["n"] == 308  # complete rows: 4 patients lack a platelet count
    assert t["icc"] == pytest.approx(0.961444474341961, abs=1e-10)
    assert t["ci_low"] == pytest.approx(0.714203330875702, abs=1e-10)
    assert t["ci_high"] == pytest.approx(0.986533841868023, abs=1e-10)


def test_riley_sample_size_against_r_formulas(pbc):
    d, f = pbc
    n = len(d)
    r2 = cox_snell_r2(f["m2"].llf, f["m2"].llnull, n)
    assert r2 == pytest.approx(0.173687240913634, abs=1e-9)
    ss = riley_sample_size(3, float(d["y"].mean()), r2)
    assert ss.max_r2_cs == pytest.approx(0.725854922100261, abs=1e-12)
    assert ss.shrinkage_2 == pytest.approx(0.827160927951719, abs=1e-9)
    assert ss.n_criteria == (140, 74, 350)
    assert (ss.n, ss.events, ss.deciding) == (350, 123, 3)
    with pytest.raises(StatisticsError, match="must lie in"):
        riley_sample_size(3, 0.35, 0.9)


def test_dl_flips_counted_against_the_original_roi():
    frame = pd.DataFrame({"patient_id": np.repeat(["A", "B", "C", "D"], 3), "reader": [0, 1, 2] * 4,
                          "dl_prob": [0.9, 0.8, 0.7, 0.55, 0.45, 0.6, 0.1, 0.2, 0.15, 0.4, 0.52, 0.3]})
    r = dl_reproducibility(frame)
    assert (r["flips"], r["n"], r["readers"]) == (2, 4, 2)  # B and D cross 0.5 under a reader
    assert r["flip_share"] == 0.5
