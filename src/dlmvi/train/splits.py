"""Patient-level, MVI-stratified splits, reproducible from a seed.

Splits are made on patient ids *before* any slice combination exists, so the up to 27
samples of one patient can never fall on both sides of a split (the leak the study risked).

- :func:`holdout_split`: the study's 9:1 split into training and validation patients.
- :func:`kfold_splits`: k-fold cross-validation; each fold's training part is further split
  9:1 so that the checkpoint choice and early stopping never see the fold's test patients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlmvi.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Patient ids of one model's partitions (``test`` is empty for the final model)."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}

    @classmethod
    def from_dict(cls, d: dict) -> "Split":
        return cls(tuple(d.get("train", ())), tuple(d.get("val", ())), tuple(d.get("test", ())))


def _check(patient_ids, labels):
    ids = [str(p) for p in patient_ids]
    labels = np.asarray(labels)
    if len(ids) != len(labels):
        raise ConfigError(f"{len(ids)} patient ids but {len(labels)} labels")
    if len(set(ids)) != len(ids):
        dup = sorted({p for p in ids if ids.count(p) > 1})
        raise ConfigError(f"patient id(s) {dup[:5]} appear more than once; splits are by patient")
    return ids, labels


def holdout_split(patient_ids, labels, fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split patients into (train, validation), stratified by label.

    Args:
        patient_ids: one id per patient.
        labels: class per patient (stratification variable).
        fraction: share of patients in the validation part (0.1: the study's 9:1 split).
            0 returns all patients as training and no validation.
        seed: random seed.
    """
    from sklearn.model_selection import train_test_split

    ids, labels = _check(patient_ids, labels)
    if fraction <= 0:
        return list(ids), []
    n_val = max(int(round(fraction * len(ids))), len(np.unique(labels)))
    try:
        train, val = train_test_split(ids, test_size=n_val, stratify=labels, random_state=seed, shuffle=True)
    except ValueError as exc:
        raise ConfigError(
            f"cannot split {len(ids)} patients {1 - fraction:.0%}:{fraction:.0%} stratified by MVI "
            f"({ {int(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True))} } per class): {exc}. "
            "Use more patients, fewer classes or --holdout 0"
        ) from None
    return list(train), list(val)


def kfold_splits(patient_ids, labels, folds: int = 5, seed: int = 0, holdout: float = 0.1) -> list[Split]:
    """Stratified k-fold splits by patient, each with an inner validation part.

    Every patient is in exactly one fold's ``test``; within a fold ``train``, ``val`` and
    ``test`` are disjoint. ``val`` is a stratified ``holdout`` share of the fold's
    non-test patients (empty when ``holdout`` is 0).
    """
    from sklearn.model_selection import StratifiedKFold

    ids, labels = _check(patient_ids, labels)
    counts = {int(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True))}
    if folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {folds}")
    if min(counts.values()) < folds:
        raise ConfigError(
            f"cannot make {folds} stratified folds: the smallest class has only "
            f"{min(counts.values())} patients ({counts} per class); use fewer --folds or --classes 2"
        )
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    ids_arr = np.asarray(ids, dtype=object)
    for i, (dev_idx, test_idx) in enumerate(skf.split(ids_arr, labels)):
        train, val = holdout_split(ids_arr[dev_idx], labels[dev_idx], holdout, seed=seed + 1 + i)
        out.append(Split(tuple(train), tuple(val), tuple(ids_arr[test_idx])))
    return out
