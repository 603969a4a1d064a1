"""Classification at a threshold: 2x2 counts, sensitivity, specificity, PPV, NPV, accuracy
and F1, the proportions with exact binomial confidence intervals, and the Youden threshold.

* :func:`youden_threshold` - the threshold maximising sensitivity + specificity among R
  pROC's candidate thresholds (midpoints between consecutive distinct predictions), as
  ``pROC::coords(roc, "best", best.method = "youden")``; when several tie, the lowest
  (pROC's first row).
* :func:`classification_metrics` - counts and proportions of one 0/1 classification, each
  proportion with the Clopper-Pearson interval of R's ``binom.test(k, n)$conf.int``; every
  classification figure of dlmvi (``dlmvi evaluate``'s precision, recall and F1 included) is
  this function's.

A patient is classified positive when ``score >= threshold`` (pROC's ``direction = "<"``:
controls below the threshold, cases at or above it).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from dlmvi.errors import StatisticsError

__all__ = ["youden_threshold", "classification_metrics", "exact_ci", "METRICS"]

#: Proportions reported, with the counts they are computed from (events, total).
METRICS = {
    "sensitivity": ("tp", "tp + fn"),
    "specificity": ("tn", "tn + fp"),
    "ppv": ("tp", "tp + fp"),
    "npv": ("tn", "tn + fn"),
    "accuracy": ("tp + tn", "n"),
}


def _check(y_true, score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(score, dtype=float)
    if y.shape != s.shape or y.ndim != 1:
        raise StatisticsError(f"outcome {y.shape} and scores {s.shape} must be 1-d of equal length")
    bad = np.flatnonzero(~np.isin(y, (0.0, 1.0)) | ~np.isfinite(s))
    if bad.size:
        raise StatisticsError(f"rows {bad[:5].tolist()}: outcome not 0/1 or score missing")
    return y, s


def exact_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of ``k`` successes in ``n``, as R's ``binom.test(k, n)``;
    NaN when ``n`` is 0."""
    if n == 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def youden_threshold(y_true, score) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1, as pROC.

    Candidates are pROC's: -Inf, the midpoints between consecutive distinct scores, +Inf.
    Ties resolve to the lowest threshold (the first row of ``coords(..., "best")``).

    Raises:
        StatisticsError: the outcome has one class only.
    """
    y, s = _check(y_true, score)
    if y.min() == y.max():
        raise StatisticsError("a Youden threshold needs patients with and without MVI")
    u = np.unique(s)
    cand = np.concatenate([[-np.inf], (u[:-1] + u[1:]) / 2, [np.inf]])
    cases, controls = s[y == 1], s[y == 0]
    sens = (cases[None, :] >= cand[:, None]).mean(axis=1)
    spec = (controls[None, :] < cand[:, None]).mean(axis=1)
    j = sens + spec
    return float(cand[int(np.flatnonzero(j >= j.max() - 1e-12)[0])])


def classification_metrics(y_true, positive, level: float = 0.95) -> dict:
    """2x2 counts and proportions with exact CIs of a 0/1 classification.

    Args:
        y_true: 0/1 outcome (1 = MVI present).
        positive: 0/1 (or boolean) classification, e.g. ``prob >= threshold``.
        level: confidence level of the Clopper-Pearson intervals.

    Returns:
        dict with ``n, tp, fp, tn, fn``, for each of :data:`METRICS` the value and its
        ``_ci_low`` / ``_ci_high`` (NaN when the denominator is 0), and ``f1`` (``2 tp / (2 tp
        + fp + fn)``, the harmonic mean of PPV and sensitivity; no interval).
    """
    y, pos = _check(y_true, positive)
    pos = pos.astype(bool)
    yb = y.astype(bool)
    c = {"tp": int(np.sum(pos & yb)), "fp": int(np.sum(pos & ~yb)),
         "tn": int(np.sum(~pos & ~yb)), "fn": int(np.sum(~pos & yb))}
    out = {"n": int(y.size), **c}
    for name, (num, den) in METRICS.items():
        k = sum(c[t] for t in num.split(" + "))
        n = y.size if den == "n" else sum(c[t] for t in den.split(" + "))
        lo, hi = exact_ci(k, n, level)
        out.update({name: k / n if n else float("nan"), f"{name}_ci_low": lo, f"{name}_ci_high": hi})
    den = 2 * c["tp"] + c["fp"] + c["fn"]
    out["f1"] = 2 * c["tp"] / den if den else float("nan")
    return out
