"""Figures the report draws itself (the stages draw their own): training curves and cohort flow.

Computing is separate from drawing: :func:`training_curves` returns the numbers (a DataFrame
that the report also writes as CSV); :class:`TrainingCurvesDisplay` draws them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def training_curves(train_dir: Path) -> pd.DataFrame:
    """Per-epoch log of every model of a run, with a ``model`` column (fold_0 ... final)."""
    frames = []
    for log in sorted(Path(train_dir).glob("*/log.csv")):
        f = pd.read_csv(log)
        f.insert(0, "model", log.parent.name)
        frames.append(f)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class TrainingCurvesDisplay:
    """Loss and AUC per epoch, train and validation, one line per model."""

    def __init__(self, curves: pd.DataFrame):
        self.curves = curves

    def plot(self, ax=None):
        from dlmvi.evaluate.display import subplots

        if ax is None:
            fig, ax = subplots(1, 2, figsize=(10, 3.6))
        else:
            fig = ax[0].figure
        for name, f in self.curves.groupby("model", sort=True):
            lw = 2.0 if name == "final" else 1.0
            line = ax[0].plot(f["epoch"], f["train_loss"], lw=lw, label=f"{name} train")[0]
            if "val_loss" in f and f["val_loss"].notna().any():
                ax[0].plot(f["epoch"], f["val_loss"], lw=lw, ls="--", color=line.get_color())
            if "val_auc" in f and f["val_auc"].notna().any():
                ax[1].plot(f["epoch"], f["val_auc"], lw=lw, color=line.get_color(), label=name)
        ax[0].set(xlabel="epoch", ylabel="cross-entropy", title="Loss (solid: train, dashed: validation)")
        ax[1].set(xlabel="epoch", ylabel="AUC", title="Validation AUC", ylim=(0, 1))
        ax[1].axhline(0.5, color="grey", lw=0.8, ls=":")
        ax[1].legend(fontsize=7, ncol=2)
        fig.tight_layout()
        self.figure_, self.ax_ = fig, ax
        return self
