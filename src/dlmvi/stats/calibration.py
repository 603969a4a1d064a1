"""Calibration of predicted MVI probabilities, and bootstrap optimism correction.

* :func:`val_prob` - Brier score, logistic recalibration intercept and slope, Spiegelhalter's
  z test, C index and Eavg/E90/Emax, matching R's ``rms::val.prob`` (same definitions; the
  intercept and slope are fitted jointly: ``logit P(y) = a + b * logit(p)``).
* :func:`recalibration` - calibration intercept and slope with Wald CIs, and
  calibration-in-the-large (R ``glm(y ~ offset(lp))``).
* :func:`lowess_smooth` - R's ``lowess(p, y, iter = 0)``, the smooth calibration curve, ported
  from R's C code so that tied predictions (a nomogram of binary inputs has a handful of
  distinct risks) give R's values.
* :func:`calibration_table` - observed vs predicted by bins with exact (Clopper-Pearson) CIs.
* :func:`bootstrap_validate` / :func:`bootstrap_calibration_curve` - Efron's optimism
  bootstrap in the style of ``rms::validate`` and ``rms::calibrate``: refit the model on each
  bootstrap sample, measure it on that sample and on the original data; the mean difference
  is the optimism, subtracted from the apparent value. Seeded; ``B = 200`` by default.
* :class:`CalibrationDisplay` draws the binned points, the smooth and the corrected curve.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from dlmvi.errors import StatisticsError, StatisticsWarning

__all__ = [
    "brier_score",
    "spiegelhalter",
    "logistic_recalibration",
    "recalibration",
    "val_prob",
    "lowess_smooth",
    "calibration_table",
    "bootstrap_predictions",
    "bootstrap_validate",
    "bootstrap_calibration_curve",
    "CalibrationDisplay",
]


def _check(y, p) -> tuple[np.ndarray, np.ndarray]:
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


def brier_score(y_true, prob) -> float:
    """Mean squared difference between outcome (0/1) and predicted probability."""
    y, p = _check(y_true, prob)
    return float(np.mean((y - p) ** 2))


def spiegelhalter(y_true, prob) -> tuple[float, float]:
    """Spiegelhalter's z test of calibration; returns ``(z, two-sided p)`` as rms::val.prob."""
    y, p = _check(y_true, prob)
    num = np.sum((y - p) * (1 - 2 * p))
    den = np.sqrt(np.sum((1 - 2 * p) ** 2 * p * (1 - p)))
    if den == 0:
        return float("nan"), float("nan")
    z = num / den
    return float(z), float(2 * stats.norm.sf(abs(z)))


def _logit_fit(y: np.ndarray, x: np.ndarray, start: np.ndarray,
               offset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Newton-Raphson MLE of ``logit P(y) = offset + x @ beta``; ``(beta, covariance)`` or None.

    Small and fast (the bootstrap calls it thousands of times); converges to the same MLE as
    R's ``glm``/``lrm.fit``, the covariance is the inverse observed information (R's
    ``vcov``), so ``beta +- z * sqrt(diag(cov))`` is ``confint.default``.
    """
    off = np.zeros_like(y) if offset is None else offset
    beta = np.asarray(start, dtype=float).copy()
    for _ in range(100):
        eta = np.clip(off + x @ beta, -700, 700)
        mu = 1.0 / (1.0 + np.exp(-eta))
        hess = x.T @ (x * (mu * (1.0 - mu))[:, None])
        try:
            step = np.linalg.solve(hess, x.T @ (y - mu))
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(step)):  # separated (e.g. a bootstrap sample): no MLE
            return None
        beta = beta + step
        if np.max(np.abs(step)) < 1e-12 * (1.0 + np.max(np.abs(beta))):
            break
    if not np.all(np.isfinite(beta)):
        return None
    eta = np.clip(off + x @ beta, -700, 700)
    mu = 1.0 / (1.0 + np.exp(-eta))
    try:
        cov = np.linalg.inv(x.T @ (x * (mu * (1.0 - mu))[:, None]))
    except np.linalg.LinAlgError:
        return None
    return beta, cov


def logistic_recalibration(y_true, lp) -> tuple[float, float]:
    """Fit ``logit P(y = 1) = a + b * lp``; return ``(a, b)`` (NaN if it cannot be fitted).

    ``lp`` is the model's linear predictor (log odds). A well calibrated model has a = 0,
    b = 1; b < 1 means predictions too extreme (overfitting).
    """
    y = np.asarray(y_true, dtype=float)
    lp = np.asarray(lp, dtype=float)
    if y.min() == y.max() or np.ptp(lp) == 0:
        return float("nan"), float("nan")
    fit = _logit_fit(y, np.column_stack([np.ones_like(lp), lp]), np.array([0.0, 1.0]))
    if fit is None:
        return float("nan"), float("nan")
    return float(fit[0][0]), float(fit[0][1])


def recalibration(y_true, lp, level: float = 0.95) -> dict[str, float | list[float]]:
    """Calibration intercept and slope with Wald CIs, and calibration-in-the-large.

    Returns:
        dict with ``calibration_intercept``, ``calibration_slope`` (R ``glm(y ~ lp,
        binomial)``, = ``rms::val.prob``'s Intercept and Slope) and their ``_ci``
        (``confint.default``), ``calibration_in_the_large`` (the intercept with the slope
        fixed at 1, R ``glm(y ~ offset(lp), binomial)``) and its ``_ci``. NaN where a fit
        is impossible (one outcome class; the slope when ``lp`` is constant).
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
    citl = _logit_fit(y, np.ones((y.size, 1)), np.zeros(1), offset=lp)
    if citl is not None:
        a, se = float(citl[0][0]), float(np.sqrt(citl[1][0, 0]))
        out.update(calibration_in_the_large=a, calibration_in_the_large_ci=[a - q * se, a + q * se])
    if np.ptp(lp) > 0:
        fit = _logit_fit(y, np.column_stack([np.ones_like(lp), lp]), np.array([0.0, 1.0]))
        if fit is not None:
            (a, b), se = fit[0], np.sqrt(np.diag(fit[1]))
            out.update(calibration_intercept=float(a), calibration_slope=float(b),
                       calibration_intercept_ci=[float(a - q * se[0]), float(a + q * se[0])],
                       calibration_slope_ci=[float(b - q * se[1]), float(b + q * se[1])])
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


def _interp_ties(xs: np.ndarray, ys: np.ndarray, xout: np.ndarray, ties: str) -> np.ndarray:
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
        offset(logit(p)))``), ``spiegelhalter_z``, ``spiegelhalter_p``, ``eavg``, ``e90``,
        ``emax`` (absolute differences between R's ``lowess(p, y, iter = 0)`` and the
        prediction). Probabilities of exactly 0 or 1 are left out of the logistic
        recalibration with a warning, as in R.
    """
    y, p = _check(y_true, prob)
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
    inside = (p > 0) & (p < 1)
    if not inside.all():
        warnings.warn(f"{int((~inside).sum())} predictions of exactly 0 or 1 left out of the "
                      "logistic recalibration", StatisticsWarning, stacklevel=2)
    lp = np.log(p[inside] / (1 - p[inside]))
    out.update(recalibration(y[inside], lp, level))
    if np.unique(p).size == 1:
        # R: intercept = qlogis(mean(y)), slope 0, errors |p - mean(y)|
        out.update(calibration_intercept=float(np.log(ybar / (1 - ybar))), calibration_slope=0.0)
        e = abs(p[0] - ybar)
        out.update(eavg=e, e90=e, emax=e)
        return out
    sx, sy = lowess_smooth(p, y)
    err = np.abs(p - _interp_ties(sx, sy, p, ties="mean"))
    out.update(eavg=float(np.mean(err)), e90=float(np.quantile(err, 0.9)),
               emax=float(np.max(err)))
    return out


def calibration_table(y_true, prob, n_bins: int = 10, strategy: str = "quantile",
                      level: float = 0.95) -> pd.DataFrame:
    """Observed proportion of MVI against mean predicted probability, by bins.

    Args:
        n_bins: number of bins (fewer when predictions take fewer distinct values).
        strategy: ``"quantile"`` (equal-size groups; patients with the same prediction stay
            together) or ``"uniform"`` (equal-width bins on [0, 1]).
        level: confidence level of the exact binomial (Clopper-Pearson) interval.

    Returns:
        DataFrame with ``bin, n, events, mean_predicted, observed, ci_low, ci_high``.
    """
    y, p = _check(y_true, prob)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
        if np.unique(p).size <= n_bins:  # few distinct predictions: one bin each
            groups = np.unique(p, return_inverse=True)[1]
        else:
            groups = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, edges.size - 2)
            groups = np.unique(groups, return_inverse=True)[1]
    elif strategy == "uniform":
        groups = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
        groups = np.unique(groups, return_inverse=True)[1]
    else:
        raise StatisticsError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    alpha = 1 - level
    rows = []
    for g in range(groups.max() + 1):
        sel = groups == g
        n, k = int(sel.sum()), int(y[sel].sum())
        lo = stats.beta.ppf(alpha / 2, k, n - k + 1) if k > 0 else 0.0
        hi = stats.beta.ppf(1 - alpha / 2, k + 1, n - k) if k < n else 1.0
        rows.append({"bin": g + 1, "n": n, "events": k, "mean_predicted": float(p[sel].mean()),
                     "observed": k / n, "ci_low": float(lo), "ci_high": float(hi)})
    return pd.DataFrame(rows)


def _fit_clone(estimator, x: pd.DataFrame, y: np.ndarray):
    est = copy.deepcopy(estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(x, y)


def _indexes(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from dlmvi.evaluate.roc import _placements

    eps = 1e-12
    pc = np.clip(p, eps, 1 - eps)
    a, b = logistic_recalibration(y, np.log(pc / (1 - pc)))
    auc = _placements(y.astype(bool), p)[0] if 0 < y.sum() < y.size else float("nan")
    return {"auc": auc, "brier": float(np.mean((y - p) ** 2)),
            "calibration_intercept": a, "calibration_slope": b}


def bootstrap_predictions(estimator, x: pd.DataFrame, y, B: int = 200,
                          seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Refit ``estimator`` on ``B`` bootstrap samples (numpy ``default_rng(seed)``).

    Returns:
        One ``(idx, p_train, p_test)`` per sample that could be fitted: the resampled row
        positions, the refitted model's probabilities on its bootstrap sample and on the
        original data. Pass it as ``boot=`` to :func:`bootstrap_validate` and
        :func:`bootstrap_calibration_curve` to share the refits.
    """
    y = np.asarray(y, dtype=float)
    x = x.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(B):
        idx = rng.integers(0, len(y), len(y))
        xb = x.iloc[idx].reset_index(drop=True)
        try:
            fb = _fit_clone(estimator, xb, y[idx])
        except StatisticsError:  # e.g. a predictor constant in the sample: skipped, as rms
            continue
        out.append((idx, np.asarray(fb.predict_proba(xb), dtype=float),
                    np.asarray(fb.predict_proba(x), dtype=float)))
    if len(out) < B:
        warnings.warn(f"bootstrap: {B - len(out)} of {B} samples could not be fitted and "
                      "were skipped", StatisticsWarning, stacklevel=2)
    if not out:
        raise StatisticsError("bootstrap: no bootstrap sample could be fitted")
    return out


def bootstrap_validate(estimator, x: pd.DataFrame, y, B: int = 200, seed: int = 0,
                       boot=None) -> pd.DataFrame:
    """Optimism-corrected AUC, Brier score and calibration, like ``rms::validate(fit, B)``.

    Args:
        estimator: object with ``fit(x, y)`` returning itself and ``predict_proba(x)``
            returning the probability of MVI (1-d); it is deep-copied, never modified.
        x: predictors, one row per patient.
        y: 0/1 outcome.
        B: bootstrap repetitions.
        seed: seed of the resampling (numpy ``default_rng``).
        boot: precomputed :func:`bootstrap_predictions` (then B and seed are ignored).

    Returns:
        DataFrame indexed by ``auc, brier, calibration_intercept, calibration_slope`` with
        columns ``apparent, training, test, optimism, corrected, n`` (rms's
        index.orig/training/test/optimism/index.corrected/n). Bootstrap samples where the
        model cannot be fitted (one outcome class, a constant predictor) are skipped;
        ``n`` says how many were used.
    """
    y = np.asarray(y, dtype=float)
    x = x.reset_index(drop=True)
    full = _fit_clone(estimator, x, y)
    apparent = _indexes(y, np.asarray(full.predict_proba(x), dtype=float))
    if boot is None:
        boot = bootstrap_predictions(estimator, x, y, B, seed)
    tr = pd.DataFrame([_indexes(y[idx], p_tr) for idx, p_tr, _ in boot])
    te = pd.DataFrame([_indexes(y, p_te) for _, _, p_te in boot])
    keys = list(apparent)
    out = pd.DataFrame(index=pd.Index(keys, name="index"))
    out["apparent"] = [apparent[k] for k in keys]
    out["training"] = tr[keys].mean().to_numpy()
    out["test"] = te[keys].mean().to_numpy()
    out["optimism"] = out["training"] - out["test"]
    out["corrected"] = out["apparent"] - out["optimism"]
    out["n"] = (tr[keys].notna() & te[keys].notna()).sum().to_numpy()
    return out


def bootstrap_calibration_curve(estimator, x: pd.DataFrame, y, B: int = 200, seed: int = 0,
                                grid: np.ndarray | None = None, boot=None) -> pd.DataFrame:
    """Bootstrap bias-corrected smooth calibration curve, like ``rms::calibrate(fit, B)``.

    The apparent curve is R's ``lowess(p, y, iter = 0)`` of the model fitted on all data;
    for each bootstrap sample the calibration error (smooth - predicted) measured on the
    sample minus that measured on the original data estimates the optimism at each
    predicted probability of ``grid`` (default: 50 points from the 5th smallest to the 5th
    largest prediction, as rms). ``boot``: precomputed :func:`bootstrap_predictions`.

    Returns:
        DataFrame with ``predicted, apparent, corrected, optimism, n``.
    """
    y = np.asarray(y, dtype=float)
    x = x.reset_index(drop=True)
    full = _fit_clone(estimator, x, y)
    p = np.asarray(full.predict_proba(x), dtype=float)
    if grid is None:
        ps = np.sort(p)
        if ps.size < 11:
            raise StatisticsError("a bootstrap calibration curve needs more than 10 patients")
        grid = np.linspace(ps[4], ps[-5], 50)
    grid = np.asarray(grid, dtype=float)

    def cal_error(pp, yy):
        sx, sy = lowess_smooth(pp, yy)
        return _interp_ties(sx, sy, grid, ties="first") - grid

    apparent_err = cal_error(p, y)
    if boot is None:
        boot = bootstrap_predictions(estimator, x, y, B, seed)
    opt = np.vstack([cal_error(p_tr, y[idx]) - cal_error(p_te, y) for idx, p_tr, p_te in boot])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns outside the range
        optimism = np.nanmean(opt, axis=0)
    apparent = apparent_err + grid
    return pd.DataFrame({"predicted": grid, "apparent": apparent,
                         "corrected": apparent - optimism, "optimism": optimism,
                         "n": np.isfinite(opt).sum(axis=0)})


@dataclass
class CalibrationDisplay:
    """Calibration plot: binned observed vs predicted with CIs, smooth and corrected curves.

    Build with :meth:`from_predictions`; ``table`` is :func:`calibration_table`, ``smooth``
    has columns ``predicted, observed`` (lowess), ``corrected`` (optional) is
    :func:`bootstrap_calibration_curve`'s table.
    """

    table: pd.DataFrame
    smooth: pd.DataFrame
    corrected: pd.DataFrame | None = None
    metrics: dict | None = None
    title: str = ""
    ax_: object = field(default=None, repr=False)

    @classmethod
    def from_predictions(cls, y_true, prob, n_bins: int = 10, corrected=None, title: str = ""):
        """Compute the binned table, the lowess smooth and val_prob metrics."""
        y, p = _check(y_true, prob)
        sx, sy = lowess_smooth(p, y)
        smooth = pd.DataFrame({"predicted": sx, "observed": sy}).drop_duplicates()
        return cls(table=calibration_table(y, p, n_bins=n_bins), smooth=smooth,
                   corrected=corrected, metrics=val_prob(y, p), title=title)

    def plot(self, ax=None):
        """Draw the calibration plot on ``ax`` (a new figure if None)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], color="0.75", lw=3, label="Ideal")
        t = self.table.astype({c: float for c in ("mean_predicted", "observed", "ci_low", "ci_high")})
        obs = t["observed"].to_numpy()
        ax.errorbar(t["mean_predicted"].to_numpy(), obs,  # arrays: pandas deprecates float(Series)
                    yerr=[obs - t["ci_low"].to_numpy(), t["ci_high"].to_numpy() - obs],
                    fmt="o", color="k", ms=4, capsize=2, label="Grouped (95% CI)")
        ax.plot(self.smooth["predicted"], self.smooth["observed"], ls=":", color="C0",
                label="Apparent (lowess)")
        if self.corrected is not None:
            c = self.corrected
            ax.plot(c["predicted"], c["corrected"], color="C3", label="Bias-corrected (bootstrap)")
        if self.metrics:
            m = self.metrics
            ax.text(0.02, 0.98,
                    f"Intercept {m['calibration_intercept']:.2f}\n"
                    f"Slope {m['calibration_slope']:.2f}\nBrier {m['brier']:.3f}",
                    va="top", ha="left", fontsize=8, transform=ax.transAxes)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("Predicted probability of MVI")
        ax.set_ylabel("Observed proportion with MVI")
        ax.legend(loc="lower right", fontsize=8)
        if self.title:
            ax.set_title(self.title, fontsize=9)
        self.ax_ = ax
        return self
