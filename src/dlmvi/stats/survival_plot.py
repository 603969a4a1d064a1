"""Kaplan-Meier figure: curves with 95 % bands, censor marks, median lines, log-rank p and a
numbers-at-risk table under the plot (as survminer's ``ggsurvplot(risk.table = TRUE)``).

Drawing only; the numbers come from :mod:`dlmvi.stats.survival`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dlmvi.stats.survival import SurvivalComparison


def at_risk_counts(curve: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """Patients still at risk (time >= t) at each of ``times``, from a ``km_curve`` table."""
    if len(curve) == 0:
        return np.zeros(len(times), dtype=int)
    leaving = (curve["n_event"] + curve["n_censor"]).to_numpy()
    t = curve["time"].to_numpy(dtype=float)
    # Number with observed time >= x = total minus those that left strictly before x.
    left_before = np.concatenate([[0], np.cumsum(leaving)])[np.searchsorted(t, times, side="left")]
    return (leaving.sum() - left_before).astype(int)


def format_p(p: float | None) -> str:
    """'p = 0.012', 'p < 0.001' or 'p = n/a'."""
    if p is None or not np.isfinite(p):
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}"


@dataclass
class KaplanMeierDisplay:
    """Kaplan-Meier curves of several groups, ready to draw.

    Attributes:
        curves: group label -> ``km_curve`` table (months).
        medians: group label -> median survival (months) or None.
        logrank_p: log-rank p-value or None.
        title: figure title.
        xlabel: x-axis label.
        ylabel: y-axis label.
        notice: optional text under the title (e.g. the synthetic-data notice).
        legend_title: title of the legend (what the groups are).
        ax_, risk_ax_, figure_: set by :meth:`plot`.
    """

    curves: dict[str, pd.DataFrame]
    medians: dict[str, float | None] = field(default_factory=dict)
    logrank_p: float | None = None
    title: str = ""
    xlabel: str = "Months since surgery"
    ylabel: str = "Survival probability"
    notice: str | None = None
    legend_title: str | None = None

    @classmethod
    def from_comparison(cls, comparison: SurvivalComparison, **kwargs: Any) -> "KaplanMeierDisplay":
        """Display of a :func:`~dlmvi.stats.survival.compare_survival` result."""
        return cls(
            curves={g.label: g.curve for g in comparison.groups},
            medians={g.label: g.median for g in comparison.groups},
            logrank_p=None if comparison.logrank is None else comparison.logrank["p"],
            **kwargs,
        )

    def risk_table(self, times: np.ndarray) -> pd.DataFrame:
        """Numbers at risk: one row per group, one column per time (months)."""
        return pd.DataFrame(
            {label: at_risk_counts(curve, times) for label, curve in self.curves.items()},
            index=[_fmt_time(t) for t in times],
        ).T

    def plot(self, ax=None, risk_table: bool = True, ci: bool = True) -> "KaplanMeierDisplay":
        """Draw the curves (and the numbers-at-risk table under ``ax``).

        Args:
            ax: matplotlib Axes to draw on; a new figure when None.
            risk_table: add the numbers-at-risk table below the plot.
            ci: draw the 95 % confidence bands.

        Returns:
            self, with ``ax_``, ``risk_ax_`` and ``figure_`` set.
        """
        import matplotlib

        from dlmvi.evaluate.display import subplots
        from mpl_toolkits.axes_grid1 import make_axes_locatable

        if ax is None:
            n_rows = max(len(self.curves), 1)
            fig, ax = subplots(figsize=(7.0, 5.0 + 0.3 * n_rows))
        colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        t_max = 0.0
        for i, (label, curve) in enumerate(self.curves.items()):
            colour = colours[i % len(colours)]
            n = int(curve["n_risk"].iloc[0]) if len(curve) else 0
            if len(curve) == 0:
                ax.plot([], [], color=colour, label=f"{label} (n = 0)")
                continue
            t = np.concatenate([[0.0], curve["time"].to_numpy(dtype=float)])
            s = np.concatenate([[1.0], curve["survival"].to_numpy(dtype=float)])
            t_max = max(t_max, float(t[-1]))
            ax.step(t, s, where="post", color=colour, lw=1.6, label=f"{label} (n = {n})")
            if ci:
                lo = np.concatenate([[1.0], curve["ci_lower"].to_numpy(dtype=float)])
                hi = np.concatenate([[1.0], curve["ci_upper"].to_numpy(dtype=float)])
                ax.fill_between(t, lo, hi, step="post", color=colour, alpha=0.15, lw=0)
            censored = curve[curve["n_censor"] > 0]
            ax.plot(censored["time"], censored["survival"], ls="none", marker="+",
                    markersize=8, color=colour)
            median = self.medians.get(label)
            if median is not None:
                ax.plot([0, median], [0.5, 0.5], ls="--", lw=0.8, color="0.4")
                ax.plot([median, median], [0, 0.5], ls="--", lw=0.8, color=colour)
        ax.set_ylim(0, 1.02)
        ax.set_xlim(0, t_max * 1.02 if t_max > 0 else 1)
        ax.set_ylabel(self.ylabel)
        ax.set_xlabel(self.xlabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", frameon=False, fontsize=9, title=self.legend_title,
                  title_fontsize=9)
        ax.text(0.03, 0.05, f"Log-rank {format_p(self.logrank_p)}", transform=ax.transAxes,
                fontsize=10)
        title = self.title + (f"\n{self.notice}" if self.notice else "")
        if title:
            ax.set_title(title, fontsize=10)

        risk_ax = None
        if risk_table:
            ticks = [t for t in ax.get_xticks() if 0 <= t <= ax.get_xlim()[1]]
            ticks = np.asarray(ticks, dtype=float)
            table = self.risk_table(ticks)
            divider = make_axes_locatable(ax)
            risk_ax = divider.append_axes("bottom", size=f"{8 + 6 * len(table)}%", pad=0.7)
            risk_ax.set_xlim(ax.get_xlim())
            risk_ax.set_ylim(-0.5, len(table) - 0.5)
            for row, (label, counts) in enumerate(table.iterrows()):
                y = len(table) - 1 - row
                for x, count in zip(ticks, counts.to_numpy()):
                    risk_ax.text(x, y, str(int(count)), ha="center", va="center", fontsize=9,
                                 color=colours[row % len(colours)])
            risk_ax.set_yticks(range(len(table)))
            risk_ax.set_yticklabels(list(table.index)[::-1], fontsize=9)
            risk_ax.set_xticks(ticks)
            risk_ax.tick_params(axis="x", labelbottom=False, length=0)
            # Pad the group names so they clear the counts centred on x = 0.
            risk_ax.tick_params(axis="y", length=0, pad=18)
            for side in ("top", "right", "bottom", "left"):
                risk_ax.spines[side].set_visible(False)
            risk_ax.set_title("Number at risk", fontsize=9, loc="left")
        self.ax_, self.risk_ax_, self.figure_ = ax, risk_ax, ax.figure
        return self


def _fmt_time(t: float) -> str:
    return str(int(t)) if float(t).is_integer() else f"{t:g}"
