"""Agreement of two readers: their boxes, their key slices, and what their ROIs do to DL-MVI.

* **Boxes**: per patient and sequence, the two readers' boxes as voxel sets of the sequence's
  own grid (each boxed slice's rectangle, inclusive indices): IoU = |A n B| / |A u B| and
  Dice = 2 |A n B| / (|A| + |B|).
* **Key slices**: the slices both boxed (of ``n``), whether they boxed the same ones, and the
  offset of their centres (slices, A - B).
* **Probabilities** (with a model): DL-MVI's probability of each patient from reader A's ROIs
  and from reader B's, compared by the ICC (two-way random effects, single rater, absolute
  agreement: ``psych::ICC``'s ICC2, :mod:`dlmvi.stats.icc`), a Bland-Altman analysis
  (bias = mean of A - B; 95 % limits of agreement bias +- 1.96 SD, with the approximate 95 %
  CIs of Bland & Altman 1999: SE of the bias SD / sqrt(n), of each limit SD * sqrt(3 / n)),
  and the share of patients whose decision (DL-MVI at the model's threshold) differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from dlmvi.errors import StatisticsError


def box_voxels(rows) -> dict[int, tuple[int, int, int, int]]:
    """{slice: (x0, y0, x1, y1)} of a sequence's boxes (one rectangle per slice)."""
    return {int(r[0]): tuple(int(v) for v in r[1:]) for r in rows}


def _area(b) -> int:
    return (b[2] - b[0] + 1) * (b[3] - b[1] + 1)


def _overlap(a, b) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    return max(w, 0) * max(h, 0)


def box_agreement(rows_a, rows_b) -> dict:
    """IoU, Dice and key-slice agreement of two readers' boxes on one sequence.

    Returns:
        {iou, dice, voxels_a, voxels_b, voxels_both, slices_a, slices_b, common_slices,
        same_key_slices, centre_offset_slices}.
    """
    a, b = box_voxels(rows_a), box_voxels(rows_b)
    va = sum(_area(r) for r in a.values())
    vb = sum(_area(r) for r in b.values())
    both = sum(_overlap(a[s], b[s]) for s in set(a) & set(b))
    union = va + vb - both
    return {
        "iou": both / union if union else float("nan"),
        "dice": 2 * both / (va + vb) if va + vb else float("nan"),
        "voxels_a": va, "voxels_b": vb, "voxels_both": both,
        "slices_a": " ".join(str(s) for s in sorted(a)), "slices_b": " ".join(str(s) for s in sorted(b)),
        "common_slices": len(set(a) & set(b)),
        "same_key_slices": sorted(a) == sorted(b),
        "centre_offset_slices": float(np.mean(list(a)) - np.mean(list(b))) if a and b else float("nan"),
    }


def boxes_table(boxes_a: dict, boxes_b: dict) -> tuple[pd.DataFrame, list[tuple[str, str, str]]]:
    """Per patient and sequence boxed by both readers, their agreement.

    Args:
        boxes_a, boxes_b: {(patient, sequence): rows} of readers A and B.

    Returns:
        (table with ``patient_id, sequence`` and the :func:`box_agreement` columns,
        [(patient, sequence, "boxed by A only" / "boxed by B only")]).
    """
    rows, single = [], []
    for key in sorted(set(boxes_a) | set(boxes_b)):
        if key not in boxes_b:
            single.append((*key, "boxed by reader A only"))
            continue
        if key not in boxes_a:
            single.append((*key, "boxed by reader B only"))
            continue
        rows.append({"patient_id": key[0], "sequence": key[1], **box_agreement(boxes_a[key], boxes_b[key])})
    cols = ["patient_id", "sequence", "iou", "dice", "voxels_a", "voxels_b", "voxels_both", "slices_a", "slices_b",
            "common_slices", "same_key_slices", "centre_offset_slices"]
    return pd.DataFrame(rows, columns=cols), single


def summarise_boxes(table: pd.DataFrame) -> pd.DataFrame:
    """Per sequence (and ``all``): n, median IoU with quartiles, mean Dice, share with the same key slices."""
    out = []
    for name, t in [*table.groupby("sequence", sort=False), ("all", table)]:
        if t.empty:
            continue
        q = t["iou"].quantile([0.25, 0.5, 0.75]).to_numpy()
        out.append({"sequence": name, "n": len(t), "iou_median": q[1], "iou_q1": q[0], "iou_q3": q[2],
                    "iou_mean": t["iou"].mean(), "dice_mean": t["dice"].mean(),
                    "same_key_slices": float(t["same_key_slices"].mean()),
                    "common_slices_mean": float(t["common_slices"].mean())})
    return pd.DataFrame(out)


@dataclass(frozen=True)
class BlandAltman:
    """Bland-Altman analysis of paired measurements (A - B).

    Attributes:
        n: pairs; bias: mean difference; sd: SD of the differences (n - 1);
        loa_low, loa_high: bias -+ 1.96 SD; *_ci: approximate 95 % CIs (Bland & Altman 1999).
    """

    n: int
    bias: float
    sd: float
    bias_ci: tuple[float, float]
    loa_low: float
    loa_high: float
    loa_low_ci: tuple[float, float]
    loa_high_ci: tuple[float, float]

    def to_dict(self) -> dict:
        return {"n": self.n, "bias": self.bias, "sd": self.sd, "bias_ci": list(self.bias_ci),
                "loa_low": self.loa_low, "loa_high": self.loa_high, "loa_low_ci": list(self.loa_low_ci),
                "loa_high_ci": list(self.loa_high_ci)}


def bland_altman(a, b, level: float = 0.95) -> BlandAltman:
    """Bias and limits of agreement of ``a - b`` (pairs with a missing value left out)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    n = int(d.size)
    if n < 2:
        raise StatisticsError(f"Bland-Altman needs at least 2 complete pairs, got {n}")
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    t = float(stats.t.ppf(0.5 + level / 2, n - 1))
    se_b, se_l = sd / np.sqrt(n), sd * np.sqrt(3.0 / n)
    lo, hi = bias - 1.96 * sd, bias + 1.96 * sd
    return BlandAltman(n, bias, sd, (bias - t * se_b, bias + t * se_b), lo, hi,
                       (lo - t * se_l, lo + t * se_l), (hi - t * se_l, hi + t * se_l))


@dataclass
class BlandAltmanDisplay:
    """A Bland-Altman plot: difference (A - B) against the mean, with bias and limits."""

    mean: np.ndarray
    diff: np.ndarray
    result: BlandAltman
    label_a: str = "A"
    label_b: str = "B"
    quantity: str = "DL-MVI probability"
    title: str = ""
    ax_: object = field(default=None, repr=False)

    @classmethod
    def from_pairs(cls, a, b, label_a="A", label_b="B", quantity="DL-MVI probability", title=""):
        a, b = np.asarray(a, float), np.asarray(b, float)
        ok = np.isfinite(a) & np.isfinite(b)
        return cls((a[ok] + b[ok]) / 2, a[ok] - b[ok], bland_altman(a, b), label_a, label_b, quantity, title)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"mean": self.mean, "difference": self.diff})

    def plot(self, ax=None):
        """Draw on ``ax`` (default: a new :class:`matplotlib.figure.Figure`)."""
        if ax is None:
            from matplotlib.figure import Figure

            ax = Figure(figsize=(5.5, 4)).subplots()
        r = self.result
        ax.scatter(self.mean, self.diff, s=12, alpha=0.7, color="#345")
        ax.axhline(r.bias, color="#b00020", lw=1.2, label=f"bias {r.bias:+.3f}")
        for v, name in ((r.loa_low, "lower"), (r.loa_high, "upper")):
            ax.axhline(v, color="#b00020", lw=1, ls="--", label=f"{name} limit {v:+.3f}")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel(f"mean {self.quantity} ({self.label_a}, {self.label_b})")
        ax.set_ylabel(f"difference ({self.label_a} - {self.label_b})")
        ax.legend(fontsize=7, loc="best")
        if self.title:
            ax.set_title(self.title, fontsize=9)
        self.ax_ = ax
        return self


__all__ = ["box_voxels", "box_agreement", "boxes_table", "summarise_boxes", "BlandAltman", "bland_altman",
           "BlandAltmanDisplay"]
