"""Tests of the synthetic clinical table (src/dlmvi/datasets/clinical_sim.py)."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from dlmvi.constants import CUTOFFS
from dlmvi.datasets import clinical_sim as cs

DEFAULT = [("2015", 149), ("2018", 172)]


def _table(seed: int, cohorts=DEFAULT) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return cs.simulate_clinical(cs.draw_patients(cohorts, rng), rng)


@pytest.fixture(scope="module")
def pooled():
    """Ten seeded cohorts of 321 patients (3210 rows) for the survival targets."""
    return pd.concat([_table(s) for s in range(10)], ignore_index=True)


@pytest.mark.parametrize("seed", [0, 7])
def test_two_by_two_reproduces_study_table_exactly(seed):
    # Tolerance 0: at n = 321 every cell of study.md's table is allocated exactly.
    table = cs.two_by_two(_table(seed))
    assert table == cs.STUDY_TABLE
    assert table["afp"] == (84, 60, 52, 125)  # P(AFP > 20 | MVI) = 125/185


def test_grades_and_cohorts_at_default_size():
    f = _table(0)
    assert f["cohort"].value_counts().to_dict() == {"2018": 172, "2015": 149}
    assert f["mvi_grade"].value_counts().to_dict() == {"M0": 136, "M1": 111, "M2": 74}
    assert f["patient_id"].iloc[0] == "P0001" and f["patient_id"].iloc[-1] == "P0321"
    assert (f["synthetic"] == 1).all()
    # Prevalence per cohort is close to 57.6 % in both.
    prev = f.assign(p=f["mvi_grade"] != "M0").groupby("cohort")["p"].mean()
    assert prev["2015"] == pytest.approx(86 / 149) and prev["2018"] == pytest.approx(99 / 172)


def test_scaled_cohorts_keep_proportions():
    assert cs.allocate(321, [149, 172]) == [149, 172]
    assert cs.allocate(40, [149, 172]) == [19, 21]
    assert cs.allocate(7, [1, 1, 1]) == [3, 2, 2]
    f = _table(1, [("2015", 19), ("2018", 21)])
    present = (f["mvi_grade"] != "M0").sum()
    assert present == round(40 * 185 / 321) == 23
    # Per status, the count above each cut-off is round(n_status * p_study).
    table = cs.two_by_two(f)
    a0, p0, a1, p1 = cs.STUDY_TABLE["afp"]
    assert table["afp"][3] == round(23 * p1 / (p0 + p1))
    assert table["afp"][2] == round(17 * a1 / (a0 + a1))


def test_continuous_values_real_units_and_spread():
    f = _table(0)
    present = f["mvi_grade"] != "M0"
    # AFP lognormal: medians around 10 and 55 ng/mL, long right tail.
    assert 5 < f.loc[~present, "afp"].median() < 20 < f.loc[present, "afp"].median() < 120
    assert f["afp"].max() > 1000 and f["afp"].min() > 0
    assert 35 < f["alb"].median() < 48 and 45 < f["age"].median() < 65
    assert 0.85 < f["inr"].median() < 1.15 and 10 < f["pt"].median() < 13
    # Correlated labs (Gaussian copula): ALT-AST, TB-CB, PT-INR.
    rho = f[["alt", "ast", "tb", "cb", "pt", "inr"]].corr(method="spearman")
    assert rho.loc["alt", "ast"] > 0.5 and rho.loc["tb", "cb"] > 0.6 and rho.loc["pt", "inr"] > 0.7
    # Values rounded to reporting precision never land on the wrong side of a cut-off.
    for var, cut in CUTOFFS.items():
        assert not np.any(np.isclose(f[var], cut) & (f[var] > cut))


def test_target_tumour_size_matches_study():
    """study.md: median (IQR) 4.0 (3-6) cm without MVI, 6.3 (4.5-9.25) cm with MVI."""
    rng = np.random.default_rng(0)
    grades = np.array(["M0"] * 4000 + ["M1"] * 3000 + ["M2"] * 2000)
    size = cs.target_tumour_size_cm(grades, rng)
    q0 = np.quantile(size[:4000], [0.25, 0.5, 0.75])
    q1 = np.quantile(size[4000:], [0.25, 0.5, 0.75])
    np.testing.assert_allclose(q0, [3.0, 4.0, 6.0], atol=0.5)  # lognormal: Q3 about 5.6
    np.testing.assert_allclose(q1, [4.5, 6.3, 9.25], atol=0.8)


def test_survival_targets(pooled):
    """Pooled over 10 seeds of 321 patients; targets from study.md.

    Kaplan-Meier medians (months): RFS 50.4 overall (tolerance 8), 32.5 with MVI (6), not
    reached without; OS 59.5 overall (10), 54.7 with MVI (8), not reached without MVI.
    Events: 31.5 % RFS events (0.27-0.34), 19.9 % deaths (0.17-0.23).
    """
    from lifelines import KaplanMeierFitter

    def median(t, e):
        return KaplanMeierFitter().fit(t, e).median_survival_time_

    m = (pooled["mvi_grade"] != "M0").to_numpy()
    r, re_ = pooled["rfs_months"], pooled["rfs_event"]
    o, oe = pooled["os_months"], pooled["os_event"]
    assert 0.27 <= re_.mean() <= 0.34
    assert 0.17 <= oe.mean() <= 0.23
    assert median(r, re_) == pytest.approx(50.4, abs=8)
    assert median(r[m], re_[m]) == pytest.approx(32.5, abs=6)
    assert median(r[~m], re_[~m]) == np.inf
    assert median(o, oe) == pytest.approx(59.5, abs=10)
    assert median(o[m], oe[m]) == pytest.approx(54.7, abs=8)
    assert median(o[~m], oe[~m]) == np.inf


def test_survival_default_seed_logrank_and_censoring():
    from lifelines.statistics import logrank_test

    f = _table(0)
    m = f["mvi_grade"] != "M0"
    p = logrank_test(f.rfs_months[m], f.rfs_months[~m], f.rfs_event[m], f.rfs_event[~m]).p_value
    assert p < 0.001
    # Administrative censoring at 2020-12-31: nobody is followed beyond it.
    end = dt.date(2020, 12, 31)
    limit = [(end - dt.date.fromisoformat(d)).days / (365.25 / 12) for d in f["surgery_date"]]
    assert np.all(f["os_months"] <= np.array(limit) + 0.06)
    assert np.all(f["rfs_months"] <= f["os_months"])
    assert f.loc[f.cohort == "2018", "os_months"].max() < 36.1
    assert f.loc[f.cohort == "2015", "os_months"].max() > 60
    assert set(f["surgery_date"].str[:4]) == {"2015", "2018"}
    # A death is an RFS event too.
    assert np.all(f.loc[f.os_event == 1, "rfs_event"] == 1)


def test_same_seed_same_table_different_seed_differs():
    pd.testing.assert_frame_equal(_table(3), _table(3))
    assert not _table(3)["afp"].equals(_table(4)["afp"])


def test_allocate_rejects_bad_weights():
    with pytest.raises(ValueError, match="cannot allocate"):
        cs.allocate(10, [0, 0])
