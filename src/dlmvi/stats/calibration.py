"""Calibration tables and curves, and the bootstrap optimism correction of a fitted model.

The calibration figures themselves (``rms::val.prob``: Brier, intercept, slope,
calibration-in-the-large, Spiegelhalter, E statistics; R's lowess) are
:mod:`dlmvi.evaluate.calibration`'s, and every stage reads them through
:class:`dlmvi.evaluate.performance.ProbabilityMetrics`. Here:

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
from dlmvi.evaluate.calibration import check_probabilities, interp_ties, logistic_recalibration, lowess_smooth, val_prob

__all__ = [
    "calibration_table",
    "bootstrap_predictions",
    "bootstrap_validate",
    "bootstrap_calibration_curve",
    "CalibrationDisplay",
]


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
    y, p = check_probabilities(y_true, prob)
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
    """rms::validate's indexes of one sample: AUC, Brier, calibration intercept and slope (the
    model's probabilities are never exactly 0 or 1: a logistic model's)."""
    from dlmvi.evaluate.calibration import logit_of
    from dlmvi.evaluate.roc import delong_placements

    lp, inside = logit_of(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StatisticsWarning)  # a bootstrap sample's NaN is counted in n
        a, b = logistic_recalibration(y[inside], lp)
    auc = delong_placements(y, p)[0] if 0 < y.sum() < y.size else float("nan")
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
        return interp_ties(sx, sy, grid, ties="first") - grid

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
        y, p = check_probabilities(y_true, prob)
        sx, sy = lowess_smooth(p, y)
        smooth = pd.DataFrame({"predicted": sx, "observed": sy}).drop_duplicates()
        return cls(table=calibration_table(y, p, n_bins=n_bins), smooth=smooth,
                   corrected=corrected, metrics=val_prob(y, p), title=title)

    def plot(self, ax=None):
        """Draw the calibration plot on ``ax`` (a new figure if None)."""
        from dlmvi.evaluate.display import subplots

        if ax is None:
            _, ax = subplots(figsize=(5, 5))
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
