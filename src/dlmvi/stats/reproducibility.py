"""Reproducibility under the ROI: per-feature ICC, and DL-MVI's ICC and decision flips.

ICC form: two-way random effects, single rater, absolute agreement (Shrout & Fleiss
ICC(2,1), McGraw & Wong ICC(A,1); R ``psych::ICC`` row ``ICC2``) with its 95 % CI, over the
original ROI and each perturbed reader (:mod:`dlmvi.stats.icc`). Koo & Li (2016): >= 0.75
good reliability, the usual radiomics filter (``--min-icc 0.75``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlmvi.constants import DL_THRESHOLD
from dlmvi.errors import StatisticsError
from dlmvi.stats.icc import icc

__all__ = ["feature_icc", "icc_summary", "dl_reproducibility", "GOOD_ICC"]

GOOD_ICC = 0.75


def _ratings(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame.pivot(index="patient_id", columns="reader", values=column).to_numpy(float)


def feature_icc(repro: pd.DataFrame, patient_ids=None, columns=None, level: float = 0.95) -> pd.DataFrame:
    """ICC(2,1) with CI of each feature over readers (``patient_id, reader, <features>``).

    Args:
        repro: ``reproducibility.csv`` of ``dlmvi radiomics``.
        patient_ids: only these patients (a fold's training patients); None: all.
        columns: the features; None: every column but the identifying ones.

    Returns:
        ``feature, icc, ci_low, ci_high, n, k`` (NaN where undefined, e.g. a constant feature).
    """
    from dlmvi.preprocess.radiomics import feature_columns

    if patient_ids is not None:
        repro = repro[repro["patient_id"].isin(set(patient_ids))]
    cols = list(columns) if columns is not None else feature_columns(repro)
    rows = []
    for c in cols:
        try:
            r = icc(_ratings(repro, c), "ICC2", level)
            rows.append({"feature": c, "icc": r.icc, "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.n, "k": r.k})
        except StatisticsError:
            rows.append({"feature": c, "icc": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0, "k": 0})
    return pd.DataFrame(rows, columns=["feature", "icc", "ci_low", "ci_high", "n", "k"])


def icc_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per sequence and region (tumour, ring): features, median ICC, share with ICC >= 0.75."""
    parts = table["feature"].str.split(".", n=2, expand=True)
    t = table.assign(sequence=parts[0], region=parts[1])
    return (t.groupby(["sequence", "region"], sort=True)
             .agg(features=("icc", "size"), median_icc=("icc", "median"),
                  share_good=("icc", lambda v: float((v >= GOOD_ICC).mean())))
             .reset_index())


def dl_reproducibility(frame: pd.DataFrame, threshold: float = DL_THRESHOLD, level: float = 0.95) -> dict:
    """ICC(2,1) of ``dl_prob`` over readers and the share of patients whose decision flips.

    A decision flips when any perturbed reader's ``dl_prob >= threshold`` differs from the
    original ROI's (reader 0).
    """
    ratings = _ratings(frame, "dl_prob")
    r = icc(ratings, "ICC2", level)
    base = ratings[:, :1] >= threshold
    flips = (ratings[:, 1:] >= threshold) != base
    return {"icc": r.icc, "ci_low": r.ci_low, "ci_high": r.ci_high, "form": r.form, "description": r.description,
            "n": r.n, "readers": r.k - 1, "flip_share": float(flips.any(axis=1).mean()),
            "flips": int(flips.any(axis=1).sum()), "threshold": threshold,
            "mean_abs_change": float(np.abs(ratings[:, 1:] - ratings[:, :1]).mean())}
