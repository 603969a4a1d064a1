import numpy as np
import pytest
import statsmodels.api as sm
from sklearn.metrics import roc_auc_score

from dlmvi.errors import StatisticsError
from dlmvi.stats.bootstrap import _counts, bootstrap_auc_calibration, weighted_auc, weighted_recalibration


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    p = 1 / (1 + np.exp(-(rng.standard_normal(120) + 1.5 * (y - 0.5))))
    p[:10] = p[10:20]  # ties
    return y, p


def test_weighted_auc_equals_auc_of_the_resample(data):
    y, p = data
    w = _counts(len(y), 5, seed=1)
    aucs = weighted_auc(y, p, w)
    for b in range(5):
        idx = np.repeat(np.arange(len(y)), w[b].astype(int))
        assert aucs[b] == pytest.approx(roc_auc_score(y[idx], p[idx]), rel=1e-12)


def test_weighted_recalibration_equals_glm_on_the_resample(data):
    y, p = data
    w = _counts(len(y), 3, seed=2)
    a, b = weighted_recalibration(y, p, w)
    lp = np.log(p / (1 - p))
    for k in range(3):
        idx = np.repeat(np.arange(len(y)), w[k].astype(int))
        fit = sm.GLM(y[idx], sm.add_constant(lp[idx]), family=sm.families.Binomial()).fit(tol=1e-12)
        assert (a[k], b[k]) == pytest.approx(tuple(fit.params), rel=1e-7)


def test_bootstrap_is_seeded_and_cis_cover_the_estimate(data):
    y, p = data
    r1 = bootstrap_auc_calibration(y, p, B=300, seed=7)
    r2 = bootstrap_auc_calibration(y, p, B=300, seed=7)
    assert r1["samples"].equals(r2["samples"])
    lo, hi = r1["ci"]["auc"]
    assert lo < roc_auc_score(y, p) < hi
    assert r1["ci"]["calibration_slope"][0] < r1["ci"]["calibration_slope"][1]


def test_bad_outcome():
    with pytest.raises(StatisticsError, match="both classes"):
        bootstrap_auc_calibration(np.ones(10), np.full(10, 0.5))
