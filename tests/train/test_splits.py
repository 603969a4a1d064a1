"""Tests of src/dlmvi/train/splits.py: patient-level, stratified, reproducible."""

import numpy as np
import pytest

from dlmvi.errors import ConfigError
from dlmvi.train.splits import holdout_split, kfold_splits

IDS = [f"P{i:03d}" for i in range(60)]
LABELS = np.array([i % 3 == 0 for i in range(60)], dtype=int)  # 20 present, 40 absent


def test_holdout_is_9_to_1_stratified_and_reproducible():
    tr, va = holdout_split(IDS, LABELS, 0.1, seed=0)
    assert len(va) == 6 and len(tr) == 54 and not set(tr) & set(va)
    assert sum(LABELS[IDS.index(p)] for p in va) == 2  # 20/60 present -> 2 of 6
    assert holdout_split(IDS, LABELS, 0.1, seed=0) == (tr, va)
    assert holdout_split(IDS, LABELS, 0.1, seed=1) != (tr, va)
    assert holdout_split(IDS, LABELS, 0.0) == (IDS, [])


def test_kfold_partitions_patients():
    splits = kfold_splits(IDS, LABELS, folds=5, seed=3)
    tests = [p for s in splits for p in s.test]
    assert sorted(tests) == IDS  # every patient tested exactly once
    for s in splits:
        assert len(s.test) == 12 and sum(LABELS[IDS.index(p)] for p in s.test) == 4
        assert set(s.train) | set(s.val) | set(s.test) == set(IDS)
        assert len(s.train) + len(s.val) + len(s.test) == 60  # pairwise disjoint
        assert len(s.val) == 5
    again = kfold_splits(IDS, LABELS, folds=5, seed=3)
    assert again == splits
    assert kfold_splits(IDS, LABELS, folds=5, seed=4) != splits


def test_split_errors():
    with pytest.raises(ConfigError, match="more than once"):
        holdout_split(IDS + ["P000"], np.r_[LABELS, 0])
    with pytest.raises(ConfigError, match="smallest class has only 3 patients"):
        kfold_splits(IDS[:9], [0, 0, 0, 0, 0, 0, 1, 1, 1], folds=5)
    with pytest.raises(ConfigError, match="at least 2 folds"):
        kfold_splits(IDS, LABELS, folds=1)
