"""Statistics: bootstrap of AUC and calibration at n = 321, DeLong at n = 100 000."""

from __future__ import annotations

import time

import numpy as np


def bootstrap(n: int = 321, B: int = 2000) -> dict:
    from dlmvi.stats.bootstrap import bootstrap_auc_calibration

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(rng.standard_normal(n) + 1.2 * (y - 0.5))))
    bootstrap_auc_calibration(y, p, B=50, seed=0)
    t0 = time.perf_counter()
    bootstrap_auc_calibration(y, p, B=B, seed=0)
    s = time.perf_counter() - t0
    # the calibration of each resample is one fit of dlmvi's one logistic fitter (statsmodels,
    # about 2 ms); the AUC and Brier of all resamples are vectorised
    return {"n": n, "B": B, "seconds": s, "target_s": 5.0}


def delong(n: int = 100_000) -> dict:
    from dlmvi.evaluate.roc import delong_auc_ci, delong_test

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    s1 = rng.standard_normal(n) + y
    s2 = rng.standard_normal(n) + 0.8 * y
    t0 = time.perf_counter()
    delong_auc_ci(y, s1)
    t_ci = time.perf_counter() - t0
    t0 = time.perf_counter()
    delong_test(y, s1, s2)
    t_test = time.perf_counter() - t0
    return {"n": n, "ci_seconds": t_ci, "paired_test_seconds": t_test, "target_s": 1.0}
