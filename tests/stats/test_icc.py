"""Tests of src/dlmvi/stats/icc.py against R's psych::ICC."""

import numpy as np
import pytest

from dlmvi.errors import StatisticsError
from dlmvi.stats.icc import icc, icc_all

R1 = "4.63 7.65 14.26 7.16 10.73 13.71 11.35 12.93 6.05 10.08 12.25 6.78 10.81 11.28 9.87 13.13 14.06 7.34 9.45 10.27"
R2 = "8.76 8.82 15.98 8.54 11.19 13.31 14.32 14.12 7.39 11.44 12.48 4.91 13.25 9.47 7.8 13.07 14.73 9.52 10.91 12.16"
R3 = "4.68 9.66 14.04 5.78 10.96 11.67 12.86 13.32 5.41 9 10.9 5.38 11.24 10.6 7.66 9.75 13.48 9.86 8.83 10.8"
RATINGS = np.column_stack([np.array(r.split(), dtype=float) for r in (R1, R2, R3)])


@pytest.mark.parametrize("k, expected", [
    (3, {"ICC1": (0.821375144171304, 0.670013154599750, 0.917843239742810, 14.7949750670592, 19, 40,
                  1.56097787628333e-12),
         "ICC2": (0.824186317426264, 0.625930071571763, 0.924830384647390, 20.2267268350832, 19, 38,
                  2.49052319760315e-14),
         "ICC3": (0.865027359977056, 0.741463303719590, 0.939252673888883, 20.2267268350832, 19, 38,
                  2.49052319760315e-14)}),
    (2, {"ICC1": (0.803570174333296, 0.574397901896193, 0.916793182156106, 9.18175316916248, 19, 20,
                  3.69414683596532e-06),
         "ICC2": (0.807701769129524, 0.516128336539724, 0.924115197625484, 11.75277238608445, 19, 19,
                  7.96619706285905e-07),
         "ICC3": (0.843171356043149, 0.646136084992785, 0.934838143808996, 11.75277238608445, 19, 19,
                  7.96619706285905e-07)}),
])
def test_icc_against_R_psych(k, expected):
    """R 4.2.2, psych 2.2.9; tolerance 1e-10 (estimates, bounds, F), relative 1e-6 (p)::

        library(psych); set.seed(20261207); n <- 20; true <- rnorm(n, 10, 3)
        r1 <- round(true + rnorm(n, 0, 1), 2); r2 <- round(true + 0.8 + rnorm(n, 0, 1.2), 2)
        r3 <- round(true - 0.5 + rnorm(n, 0, 0.9), 2)
        print(ICC(cbind(r1, r2, r3), lmer = FALSE)$results[1:3, ], digits = 15)
        print(ICC(cbind(r1, r2), lmer = FALSE)$results[1:3, ], digits = 15)
    """
    res = icc_all(RATINGS[:, :k])
    for form, (value, lo, hi, f, df1, df2, p) in expected.items():
        r = res[form]
        assert (r.icc, r.ci_low, r.ci_high, r.f) == pytest.approx((value, lo, hi, f), abs=1e-10), form
        assert (r.df1, r.df2, r.n, r.k) == (df1, df2, 20, k)
        assert r.p == pytest.approx(p, rel=1e-6)
    assert icc(RATINGS).icc == res["ICC2"].icc if k == 3 else True


def test_rows_with_a_missing_rating_are_left_out():
    x = RATINGS.copy()
    x[[0, 5], 1] = np.nan
    assert icc(x).n == 18
    assert icc(x).icc == pytest.approx(icc(np.delete(RATINGS, [0, 5], axis=0)).icc, abs=1e-15)


def test_perfect_agreement_is_one_and_an_offset_costs_absolute_agreement_only():
    a = np.array([1.0, 2.0, 3.5, 7.0, 4.0])
    assert icc(np.column_stack([a, a])).icc == pytest.approx(1.0)
    shifted = np.column_stack([a, a + 1.0])
    assert icc(shifted, "ICC3").icc == pytest.approx(1.0)  # consistency ignores the offset
    # closed form: MSB = 2 * 21 / 4 = 10.5, MSJ = 5 * 0.5 = 2.5, MSE = 0 -> 10.5 / (10.5 + 2 * 2.5 / 5)
    assert icc(shifted, "ICC2").icc == pytest.approx(10.5 / 11.5, abs=1e-12)


@pytest.mark.parametrize("bad, match", [
    (np.ones((5, 1)), "at least 2 raters"),
    (np.array([[1.0, 2.0], [np.nan, 1.0]]), "at least 2 subjects"),
    (np.full((4, 2), 3.0), "all 8 ratings are equal"),
])
def test_bad_tables_are_refused(bad, match):
    with pytest.raises(StatisticsError, match=match):
        icc(bad)
    with pytest.raises(StatisticsError, match="form"):
        icc(RATINGS, form="ICC(2,k)")
