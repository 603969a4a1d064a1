"""Calibration of predicted MVI probabilities, and bootstrap optimism correction.

* :func:`val_prob` - Brier score, logistic recalibration intercept and slope, Spiegelhalter's
  z test, C index and Eavg/E90/Emax, matching R's ``rms::val.prob`` (same definitions; the
  intercept and slope are fitted jointly: ``logit P(y) = a + b * logit(p)``).
* :func:`lowess_smooth` - R's ``lowess(p, y, iter = 0)``, the smooth calibration curve.
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


def logistic_recalibration(y_true, lp) -> tuple[float, float]:
    """Fit ``logit P(y = 1) = a + b * lp``; return ``(a, b)`` (NaN if it cannot be fitted).

    ``lp`` is the model's linear predictor (log odds). A well calibrated model has a = 0,
    b = 1; b < 1 means predictions too extreme (overfitting).
    """
    y = np.asarray(y_true, dtype=float)
    lp = np.asarray(lp, dtype=float)
    if y.min() == y.max() or np.ptp(lp) == 0:
        return float("nan"), float("nan")
    # two-parameter Newton-Raphson (called thousands of times by the bootstrap, so no
    # statsmodels overhead); converges to the same MLE as R's lrm.fit / glm
    x = np.column_stack([np.ones_like(lp), lp])
    beta = np.array([0.0, 1.0])
    for _ in range(100):
        eta = np.clip(x @ beta, -700, 700)
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = mu * (1.0 - mu)
        hess = x.T @ (x * w[:, None])
        try:
            step = np.linalg.solve(hess, x.T @ (y - mu))
        except np.linalg.LinAlgError:
            return float("nan"), float("nan")
        beta = beta + step
        if np.max(np.abs(step)) < 1e-12 * (1.0 + np.max(np.abs(beta))):
            break
    if not np.all(np.isfinite(beta)):
        return float("nan"), float("nan")
    return float(beta[0]), float(beta[1])


def lowess_smooth(x, y, frac: float = 2 / 3) -> tuple[np.ndarray, np.ndarray]:
    """R's ``lowess(x, y, f = frac, iter = 0)``: sorted x and the smoothed y.

    Uses statsmodels' lowess with R's default ``delta = 0.01 * range(x)``.
    """
    from statsmodels.nonparametric.smoothers_lowess import lowess

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    out = lowess(y, x, frac=frac, it=0, delta=0.01 * float(np.ptp(x)), return_sorted=True)
    return out[:, 0], out[:, 1]


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


def val_prob(y_true, prob) -> dict[str, float]:
    """Validation indexes of predicted probabilities, as R's ``rms::val.prob(p, y)``.

    Args:
        y_true: 0/1 outcome (1 = MVI present).
        prob: predicted probability of MVI, in [0, 1].

    Returns:
        dict with ``n``, ``c_index`` (AUC), ``brier``, ``calibration_intercept`` and
        ``calibration_slope`` (``rms``'s Intercept/Slope), ``spiegelhalter_z``,
        ``spiegelhalter_p``, ``eavg``, ``e90``, ``emax`` (absolute differences between the
        lowess calibration curve and the prediction). Probabilities of exactly 0 or 1 are
        left out of the logistic recalibration with a warning, as in R.
    """
    y, p = _check(y_true, prob)
    if y.min() == y.max():
        raise StatisticsError(
            f"calibration needs patients with and without MVI; all {y.size} have "
            f"outcome {int(y[0])}"
        )
    z, zp = spiegelhalter(y, p)
    out = {"n": int(y.size), "brier": float(np.mean((y - p) ** 2)),
           "spiegelhalter_z": z, "spiegelhalter_p": zp}
    from dlmvi.evaluate.roc import delong_placements

    out["c_index"] = delong_placements(y, p)[0]
    if np.unique(p).size == 1:
        # R: intercept = qlogis(mean(y)), slope 0, errors |p - mean(y)|
        out.update(calibration_intercept=float(np.log(y.mean() / (1 - y.mean()))),
                   calibration_slope=0.0)
        e = abs(p[0] - y.mean())
        out.update(eavg=e, e90=e, emax=e)
        return out
    inside = (p > 0) & (p < 1)
    if not inside.all():
        warnings.warn(f"{int((~inside).sum())} predictions of exactly 0 or 1 left out of the "
                      "logistic recalibration", StatisticsWarning, stacklevel=2)
    lp = np.log(p[inside] / (1 - p[inside]))
    a, b = logistic_recalibration(y[inside], lp)
    out.update(calibration_intercept=a, calibration_slope=b)
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
        t = self.table
        ax.errorbar(t["mean_predicted"], t["observed"],
                    yerr=[t["observed"] - t["ci_low"], t["ci_high"] - t["observed"]],
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
