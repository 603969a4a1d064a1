"""Calibration of predicted probabilities: the figures of ``rms::val.prob`` and R's ``glm``.

* :func:`val_prob` - Brier score (and scaled), calibration intercept and slope
  (``logit P(y) = a + b * logit(p)``, fitted jointly, as rms's Intercept and Slope) with Wald
  CIs, calibration-in-the-large (``glm(y ~ offset(logit(p)))``) with its CI, Spiegelhalter's z
  test, the C index and Eavg/E90/Emax from R's ``lowess(p, y, iter = 0)``.
* :func:`recalibration` - the three logistic calibration fits alone (on the logit scale).
* :func:`lowess_smooth` - R's ``lowess(x, y, iter = 0)``, ported from R's C code so that tied
  predictions (a nomogram of binary inputs has a handful of distinct risks) give R's values.

**The rule for predictions of exactly 0 or 1** (one rule, used by every figure of dlmvi through
:class:`dlmvi.evaluate.performance.ProbabilityMetrics`): they have no logit, so they are left out
of the three logistic calibration fits - as ``rms::val.prob`` does - and counted
(``calibration_excluded``); every other figure (AUC, Brier, Spiegelhalter, E statistics,
classification) uses all patients. Nothing is clipped.

Every fit is :func:`dlmvi.evaluate.logit.fit_binomial` (statsmodels); a fit that does not exist
(the predictions separate the outcomes) or does not converge gives NaN with a
:class:`~dlmvi.errors.NotEstimableWarning` naming the figure, never a silent number.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from dlmvi.errors import NotEstimableWarning, StatisticsError, StatisticsWarning
from dlmvi.evaluate.logit import fit_binomial

__all__ = ["check_probabilities", "brier_score", "spiegelhalter", "logistic_recalibration", "recalibration",
           "val_prob", "lowess_smooth", "interp_ties", "logit_of", "CALIBRATION_RULE"]

#: The rule stated wherever calibration figures are written.
CALIBRATION_RULE = ("predictions of exactly 0 or 1 have no logit: they are left out of the calibration intercept, "
                    "slope and calibration-in-the-large fits (as rms::val.prob) and counted in calibration_excluded; "
                    "every other figure uses all patients")


def check_probabilities(y, p) -> tuple[np.ndarray, np.ndarray]:
    """``(y, p)`` as float arrays: y 0/1, p in [0, 1], one-dimensional and of equal length.

    Raises:
        StatisticsError: naming the first offending rows.
    """
    try:
        y = np.asarray(y, dtype=float)
        p = np.asarray(p, dtype=float)
    except (TypeError, ValueError) as exc:
        raise StatisticsError("outcome and probabilities must be numbers") from exc
    if y.shape != p.shape or y.ndim != 1:
        raise StatisticsError(f"outcome {y.shape} and probabilities {p.shape} differ in shape")
    bad = np.flatnonzero(~np.isin(y, (0.0, 1.0)))
    if bad.size:
        raise StatisticsError(f"outcome must be 0/1; rows {bad[:5].tolist()} are not")
    bad = np.flatnonzero(~np.isfinite(p) | (p < 0) | (p > 1))
    if bad.size:
        raise StatisticsError(
            f"predicted probabilities must lie in [0, 1]; rows {bad[:5].tolist()} do not "
            f"({p[bad[:5]].tolist()})"
        )
    return y, p


def logit_of(p) -> tuple[np.ndarray, np.ndarray]:
    """``(logit(p) of the predictions strictly inside (0, 1), the boolean mask of those)``."""
    p = np.asarray(p, dtype=float)
    inside = (p > 0) & (p < 1)
    q = p[inside]
    return np.log(q / (1 - q)), inside


def brier_score(y_true, prob) -> float:
    """Mean squared difference between outcome (0/1) and predicted probability."""
    y, p = check_probabilities(y_true, prob)
    return float(np.mean((y - p) ** 2))


def spiegelhalter(y_true, prob) -> tuple[float, float]:
    """Spiegelhalter's z test of calibration; returns ``(z, two-sided p)`` as rms::val.prob."""
    y, p = check_probabilities(y_true, prob)
    num = np.sum((y - p) * (1 - 2 * p))
    den = np.sqrt(np.sum((1 - 2 * p) ** 2 * p * (1 - p)))
    if den == 0:
        return float("nan"), float("nan")
    z = num / den
    return float(z), float(2 * stats.norm.sf(abs(z)))


def _not_estimable(what: str, why: str) -> None:
    warnings.warn(f"{what} not estimable: {why}; reported as NaN", NotEstimableWarning, stacklevel=3)


def logistic_recalibration(y_true, lp) -> tuple[float, float]:
    """Fit ``logit P(y = 1) = a + b * lp``; return ``(a, b)`` (NaN, with a named warning, if it
    cannot be fitted).

    ``lp`` is the model's linear predictor (log odds). A well calibrated model has a = 0,
    b = 1; b < 1 means predictions too extreme (overfitting).
    """
    y = np.asarray(y_true, dtype=float)
    lp = np.asarray(lp, dtype=float)
    if y.size == 0 or y.min() == y.max() or np.ptp(lp) == 0:
        return float("nan"), float("nan")
    fit = fit_binomial(np.column_stack([np.ones_like(lp), lp]), y)
    if not fit.ok:
        _not_estimable("calibration intercept and slope", fit.problem())
        return float("nan"), float("nan")
    return float(fit.params[0]), float(fit.params[1])


def recalibration(y_true, lp, level: float = 0.95) -> dict[str, float | list[float]]:
    """Calibration intercept and slope with Wald CIs, and calibration-in-the-large.

    Returns:
        dict with ``calibration_intercept``, ``calibration_slope`` (R ``glm(y ~ lp,
        binomial)``, = ``rms::val.prob``'s Intercept and Slope) and their ``_ci``
        (``confint.default``), ``calibration_in_the_large`` (the intercept with the slope
        fixed at 1, R ``glm(y ~ offset(lp), binomial)``) and its ``_ci``. NaN where a fit
        is impossible (one outcome class; the slope when ``lp`` is constant) or does not exist
        (the predictions separate the outcomes: a named warning).
    """
    y = np.asarray(y_true, dtype=float)
    lp = np.asarray(lp, dtype=float)
    nan = float("nan")
    q = stats.norm.ppf(1 - (1 - level) / 2)
    out: dict = {"calibration_intercept": nan, "calibration_intercept_ci": [nan, nan],
                 "calibration_slope": nan, "calibration_slope_ci": [nan, nan],
                 "calibration_in_the_large": nan, "calibration_in_the_large_ci": [nan, nan]}
    if y.size == 0 or y.min() == y.max():
        return out
    citl = fit_binomial(np.ones((y.size, 1)), y, offset=lp)
    if citl.ok:
        a, se = float(citl.params[0]), float(citl.se[0])
        out.update(calibration_in_the_large=a, calibration_in_the_large_ci=[a - q * se, a + q * se])
    else:
        _not_estimable("calibration-in-the-large", citl.problem())
    if np.ptp(lp) > 0:
        fit = fit_binomial(np.column_stack([np.ones_like(lp), lp]), y)
        if fit.ok:
            (a, b), se = fit.params, fit.se
            out.update(calibration_intercept=float(a), calibration_slope=float(b),
                       calibration_intercept_ci=[float(a - q * se[0]), float(a + q * se[0])],
                       calibration_slope_ci=[float(b - q * se[1]), float(b + q * se[1])])
        else:
            _not_estimable("calibration intercept and slope", fit.problem())
    return out


def lowess_smooth(x, y, frac: float = 2 / 3) -> tuple[np.ndarray, np.ndarray]:
    """R's ``lowess(x, y, f = frac, iter = 0)``: sorted x and the smoothed y, ties included.

    A line-by-line port of R's ``clowess`` (``src/library/stats/src/lowess.c``) without the
    robustness iterations, with R's ``delta = 0.01 * diff(range(x))``: local fits are
    computed at points more than ``delta`` apart and interpolated in between; tied x values
    share one fit, and a window whose points all tie with x gets their mean (statsmodels'
    lowess divides by zero there and returns 0 or 1).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise StatisticsError(f"x {x.shape} and y {y.shape} must be 1-d of equal length")
    order = np.argsort(x, kind="stable")  # R's order(): ties keep their original order
    xs, ys = x[order], y[order]
    if xs.size == 0:
        return xs, ys
    return xs, _clowess(xs, ys, frac, 0.01 * float(xs[-1] - xs[0]))


def _clowess(x: np.ndarray, y: np.ndarray, f: float, delta: float) -> np.ndarray:
    """R's clowess with ``nsteps = 0`` on sorted x (0-based indices)."""
    n = x.size
    if n < 2:
        return y.copy()
    ns = max(2, min(n, int(f * n + 1e-7)))
    fit = np.empty(n)
    nleft, nright, last, i = 0, ns - 1, -1, 0
    while True:
        if nright < n - 1 and x[i] - x[nleft] > x[nright + 1] - x[i]:
            nleft += 1  # move the window right while that shrinks the radius
            nright += 1
            continue
        value = _lowest(x, y, x[i], nleft, nright)
        fit[i] = y[i] if value is None else value
        if last < i - 1:  # points skipped within delta: interpolate
            alpha = (x[last + 1:i] - x[last]) / (x[i] - x[last])
            fit[last + 1:i] = alpha * fit[i] + (1.0 - alpha) * fit[last]
        last = i
        cut = x[last] + delta
        i = last + 1
        while i < n:
            if x[i] > cut:
                break
            if x[i] == x[last]:  # ties share the fit
                fit[i] = fit[last]
                last = i
            i += 1
        i = max(last + 1, i - 1)
        if last >= n - 1:
            return fit


def _lowest(x: np.ndarray, y: np.ndarray, xs: float, nleft: int, nright: int) -> float | None:
    """R's ``lowest``: tricube-weighted local linear fit at ``xs`` (None if all weights are 0)."""
    rng = x[-1] - x[0]
    h = max(xs - x[nleft], x[nright] - xs)
    h9, h1 = 0.999 * h, 0.001 * h
    xw, yw = x[nleft:], y[nleft:]
    r = np.abs(xw - xs)
    beyond = np.flatnonzero((r > h9) & (xw > xs))  # stop at the first point right of h
    stop = beyond[0] if beyond.size else xw.size  # (ties on the right are picked up)
    xw, yw, r = xw[:stop], yw[:stop], r[:stop]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(r <= h9, np.where(r <= h1, 1.0, (1.0 - (r / h) ** 3) ** 3), 0.0)
    a = w.sum()
    if a <= 0.0:
        return None
    w = w / a
    if h > 0.0:
        a = np.sum(w * xw)
        b = xs - a
        c = np.sum(w * (xw - a) ** 2)
        if np.sqrt(c) > 0.001 * rng:  # points spread enough for a slope
            w = w * (b / c * (xw - a) + 1.0)
    return float(np.sum(w * yw))


def interp_ties(xs: np.ndarray, ys: np.ndarray, xout: np.ndarray, ties: str) -> np.ndarray:
    """R's ``approx(xs, ys, xout, ties = mean | first)``; NaN outside the range of xs."""
    ux, inv = np.unique(xs, return_inverse=True)
    if ties == "mean":
        uy = np.bincount(inv, weights=ys) / np.bincount(inv)
    else:  # first value in (sorted) order
        _, first = np.unique(xs, return_index=True)
        uy = ys[first]
    if ux.size == 1:
        return np.where(xout == ux[0], uy[0], np.nan)
    return np.interp(xout, ux, uy, left=np.nan, right=np.nan)


def val_prob(y_true, prob, level: float = 0.95) -> dict:
    """Validation indexes of predicted probabilities, as R's ``rms::val.prob(p, y)``.

    Args:
        y_true: 0/1 outcome (1 = MVI present).
        prob: predicted probability of MVI, in [0, 1].
        level: confidence level of the Wald intervals.

    Returns:
        dict with ``n``, ``c_index`` (AUC), ``brier``, ``brier_scaled`` (``1 - Brier /
        (ybar (1 - ybar))``), ``calibration_intercept`` and ``calibration_slope``
        (``rms``'s Intercept/Slope) with ``_ci`` (Wald, R ``confint.default`` of
        ``glm(y ~ logit(p))``), ``calibration_in_the_large`` with ``_ci`` (R ``glm(y ~
        offset(logit(p)))``), ``calibration_excluded`` (predictions of exactly 0 or 1, left out
        of those three fits: :data:`CALIBRATION_RULE`), ``spiegelhalter_z``,
        ``spiegelhalter_p``, ``eavg``, ``e90``, ``emax`` (absolute differences between R's
        ``lowess(p, y, iter = 0)`` and the prediction). Constant predictions: as R, intercept
        ``qlogis(mean(y))`` and slope 0.
    """
    y, p = check_probabilities(y_true, prob)
    if y.min() == y.max():
        raise StatisticsError(
            f"calibration needs patients with and without MVI; all {y.size} have "
            f"outcome {int(y[0])}"
        )
    z, zp = spiegelhalter(y, p)
    ybar = float(y.mean())
    brier = float(np.mean((y - p) ** 2))
    out = {"n": int(y.size), "brier": brier, "brier_scaled": 1.0 - brier / (ybar * (1.0 - ybar)),
           "spiegelhalter_z": z, "spiegelhalter_p": zp}
    from dlmvi.evaluate.roc import delong_placements

    out["c_index"] = delong_placements(y, p)[0]
    lp, inside = logit_of(p)
    out["calibration_excluded"] = int((~inside).sum())
    if not inside.all():
        warnings.warn(f"{int((~inside).sum())} predictions of exactly 0 or 1 left out of the "
                      "logistic recalibration", StatisticsWarning, stacklevel=2)
    out.update(recalibration(y[inside], lp, level))
    if np.unique(p).size == 1:
        # R: intercept = qlogis(mean(y)), slope 0, errors |p - mean(y)|
        out.update(calibration_intercept=float(np.log(ybar / (1 - ybar))), calibration_slope=0.0)
        e = abs(p[0] - ybar)
        out.update(eavg=e, e90=e, emax=e)
        return out
    sx, sy = lowess_smooth(p, y)
    err = np.abs(p - interp_ties(sx, sy, p, ties="mean"))
    out.update(eavg=float(np.mean(err)), e90=float(np.quantile(err, 0.9)),
               emax=float(np.max(err)))
    return out
