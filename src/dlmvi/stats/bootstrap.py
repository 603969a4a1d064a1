"""Vectorised bootstrap of a fixed prediction's AUC, calibration and Brier score.

For confidence intervals of a model's performance on one cohort (predictions fixed, patients
resampled). Each resample is represented by its multinomial counts, so all ``B`` resamples are
computed at once: the AUC as a weighted Mann-Whitney statistic over the sorted scores, the
calibration intercept and slope (logistic recalibration of the outcome on logit(p), as
``rms::val.prob``) by a batched Newton-Raphson. 2000 resamples of 321 patients take a few
hundredths of a second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlmvi.errors import StatisticsError


def _counts(n: int, B: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=B).astype(np.float64)


def weighted_auc(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUC for each row of weights ``w`` (B, n); ties count one half (as pROC)."""
    y = np.asarray(y, bool)
    uniq, inv = np.unique(np.asarray(score, float), return_inverse=True)
    onehot = np.zeros((len(y), len(uniq)))
    onehot[np.arange(len(y)), inv] = 1.0
    pos = (w * y) @ onehot  # (B, U) weight of positives per distinct score
    neg = (w * ~y) @ onehot
    below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each score
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def weighted_recalibration(y: np.ndarray, prob: np.ndarray, w: np.ndarray, iters: int = 30):
    """Calibration intercept and slope (logit(y) ~ a + b logit(p)) for each row of ``w``."""
    p = np.clip(np.asarray(prob, float), 1e-12, 1 - 1e-12)
    lp = np.log(p / (1 - p))
    y = np.asarray(y, float)
    B = w.shape[0]
    beta = np.zeros((B, 2))
    beta[:, 1] = 1.0
    for _ in range(iters):
        eta = np.clip(beta[:, :1] + beta[:, 1:] * lp, -30, 30)
        mu = 1 / (1 + np.exp(-eta))
        r = w * (y - mu)
        v = w * mu * (1 - mu)
        g = np.stack([r.sum(1), (r * lp).sum(1)], axis=1)
        h00, h01, h11 = v.sum(1), (v * lp).sum(1), (v * lp * lp).sum(1)
        det = h00 * h11 - h01**2
        ok = det > 1e-12
        step0 = np.where(ok, (h11 * g[:, 0] - h01 * g[:, 1]) / np.where(ok, det, 1), 0)
        step1 = np.where(ok, (h00 * g[:, 1] - h01 * g[:, 0]) / np.where(ok, det, 1), 0)
        beta += np.stack([step0, step1], axis=1)
        if np.abs(np.stack([step0, step1])).max() < 1e-10:
            break
    return beta[:, 0], beta[:, 1]


def bootstrap_auc_calibration(y_true, prob, B: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Bootstrap distribution and percentile CIs of AUC, calibration intercept/slope and Brier.

    Args:
        y_true: 0/1 outcome (n,).
        prob: predicted probabilities (n,), fixed.
        B: resamples of the patients.
        seed: seed of the resampling.
        level: confidence level of the percentile intervals.

    Returns:
        dict with ``samples`` (DataFrame, one row per resample) and ``ci``
        ({metric: [low, high]}).
    """
    y = np.asarray(y_true)
    p = np.asarray(prob, float)
    if y.ndim != 1 or y.shape != p.shape:
        raise StatisticsError(f"y_true {y.shape} and prob {p.shape} must be 1-D of equal length")
    if not np.isin(y, (0, 1)).all() or len(np.unique(y)) < 2:
        raise StatisticsError("the outcome must be 0/1 with both classes present")
    w = _counts(len(y), B, seed)
    a, b = weighted_recalibration(y, p, w)
    brier = (w * (p - y) ** 2).sum(1) / w.sum(1)
    samples = pd.DataFrame({"auc": weighted_auc(y, p, w), "calibration_intercept": a,
                            "calibration_slope": b, "brier": brier})
    alpha = (1 - level) / 2
    ci = {c: [float(np.nanquantile(samples[c], alpha)), float(np.nanquantile(samples[c], 1 - alpha))] for c in samples}
    return {"samples": samples, "ci": ci, "B": B, "seed": seed, "level": level}
