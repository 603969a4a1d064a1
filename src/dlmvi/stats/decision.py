"""Decision curve analysis (Vickers & Elkin 2006): net benefit across threshold probabilities.

At threshold probability ``pt`` a patient is "treated" (e.g. planned for a wide resection
margin) when the predicted probability of MVI is ``>= pt``. With N patients,

    net_benefit = TP / N - FP / N * pt / (1 - pt)
    treat_all   = prevalence - (1 - prevalence) * pt / (1 - pt)
    interventions avoided per 100 = (net_benefit - treat_all) / (pt / (1 - pt)) * 100

(the definitions of R's ``dcurves::dca`` and ``rmda``). Treat-none has net benefit 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dlmvi.errors import StatisticsError

__all__ = ["decision_curve", "DecisionCurveDisplay", "DEFAULT_THRESHOLDS"]

#: Thresholds 0.01, 0.02, ..., 0.99.
DEFAULT_THRESHOLDS = np.round(np.arange(1, 100) / 100, 2)


def decision_curve(y_true, prob, thresholds=None) -> pd.DataFrame:
    """Net benefit of treating by the model vs treating everyone or no one.

    Args:
        y_true: 0/1 outcome (1 = MVI present).
        prob: predicted probability of MVI.
        thresholds: threshold probabilities in (0, 1); default 0.01-0.99 by 0.01.

    Returns:
        DataFrame with ``threshold, net_benefit, treat_all, treat_none,
        interventions_avoided_per_100, true_positives, false_positives``.
    """
    try:
        y = np.asarray(y_true, dtype=float)
        p = np.asarray(prob, dtype=float)
    except (TypeError, ValueError) as exc:
        raise StatisticsError("outcome and probabilities must be numbers") from exc
    if y.shape != p.shape or y.ndim != 1 or y.size == 0:
        raise StatisticsError(f"outcome {y.shape} and probabilities {p.shape} must be 1-d, "
                              "equal length and non-empty")
    bad = np.flatnonzero(~np.isin(y, (0.0, 1.0)) | ~np.isfinite(p))
    if bad.size:
        raise StatisticsError(f"rows {bad[:5].tolist()}: outcome not 0/1 or probability missing")
    pt = DEFAULT_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=float)
    if np.any((pt <= 0) | (pt >= 1)):
        raise StatisticsError("thresholds must lie strictly between 0 and 1")
    n = y.size
    prevalence = y.mean()
    # sort once, count patients at or above each threshold by binary search: O(n log n)
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order]
    cum_events_above = np.concatenate([np.cumsum(ys[::-1])[::-1], [0.0]])
    first = np.searchsorted(ps, pt, side="left")  # first index with p >= pt
    tp = cum_events_above[first]
    fp = (n - first) - tp
    odds = pt / (1 - pt)
    nb = tp / n - fp / n * odds
    treat_all = prevalence - (1 - prevalence) * odds
    return pd.DataFrame({
        "threshold": pt,
        "net_benefit": nb,
        "treat_all": treat_all,
        "treat_none": np.zeros_like(pt),
        "interventions_avoided_per_100": (nb - treat_all) / odds * 100,
        "true_positives": tp.astype(int),
        "false_positives": fp.astype(int),
    })


@dataclass
class DecisionCurveDisplay:
    """Decision curves of one or more models against treat-all and treat-none.

    ``curves`` maps a model name to :func:`decision_curve`'s table (same thresholds).
    """

    curves: dict[str, pd.DataFrame]
    title: str = ""
    ax_: object = field(default=None, repr=False)

    @classmethod
    def from_predictions(cls, y_true, probs: dict[str, np.ndarray], thresholds=None,
                         title: str = ""):
        """Compute a decision curve for each model in ``probs`` ({name: probabilities})."""
        return cls({k: decision_curve(y_true, v, thresholds) for k, v in probs.items()},
                   title=title)

    def plot(self, ax=None):
        """Draw net benefit against threshold probability."""
        from dlmvi.evaluate.display import subplots

        if ax is None:
            _, ax = subplots(figsize=(6, 4.5))
        first = next(iter(self.curves.values()))
        ax.plot(first["threshold"], first["treat_all"], color="0.5", lw=1, label="Treat all")
        ax.axhline(0, color="k", lw=1, label="Treat none")
        for name, t in self.curves.items():
            ax.plot(t["threshold"], t["net_benefit"], lw=1.5, label=name)
        top = max(float(t["net_benefit"].max()) for t in self.curves.values())
        top = max(top, float(first["treat_all"].max()))
        ax.set_ylim(-0.05 * max(top, 0.1), max(top, 0.1) * 1.1)
        ax.set_xlim(0, 1)
        ax.set_xlabel("Threshold probability")
        ax.set_ylabel("Net benefit")
        ax.legend(fontsize=8)
        if self.title:
            ax.set_title(self.title, fontsize=9)
        self.ax_ = ax
        return self
