"""Property tests (hypothesis) of src/dlmvi/train/splits.py: kfold_splits and holdout_split.

For random cohorts (2 or 3 classes, any class balance that allows the folds), fold counts,
seeds and holdout fractions:
* within a fold no patient is in two of train / val / test, and together they are the cohort;
* across folds every patient is tested exactly once;
* each class's count in each fold's test part is within one patient of the stratified ideal
  n_class / folds, and within one patient of ideal in the inner validation part;
* the same seed gives the same splits;
* with at least 2 x folds patients per class the inner validation split never fails; below
  that it may, with a clean ConfigError.
"""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dlmvi.errors import ConfigError
from dlmvi.train.splits import holdout_split, kfold_splits

SETTINGS = settings(max_examples=80, deadline=None)


@st.composite
def cohorts(draw):
    """(ids, labels, folds): class sizes each >= folds, ids with leading zeros in random order."""
    folds = draw(st.integers(2, 6))
    n_classes = draw(st.integers(2, 3))
    sizes = [draw(st.integers(folds, 40)) for _ in range(n_classes)]
    labels = np.repeat(np.arange(n_classes), sizes)
    perm = np.random.default_rng(draw(st.integers(0, 2**31))).permutation(len(labels))
    labels = labels[perm]
    # "007" and "7" are different patients; ids are strings.
    ids = [f"{i:03d}" if i % 2 else str(i) for i in range(len(labels))]
    return ids, labels, folds


def _count(ids, lab_of, c):
    return sum(lab_of[p] == c for p in ids)


@SETTINGS
@given(cohort=cohorts(), seed=st.integers(0, 2**31 - 1), holdout=st.sampled_from([0.0, 0.1, 0.2]))
def test_kfold_partitions_and_stratifies(cohort, seed, holdout):
    ids, labels, folds = cohort
    classes, n_c = np.unique(labels, return_counts=True)
    try:
        splits = kfold_splits(ids, labels, folds=folds, seed=seed, holdout=holdout)
    except ConfigError as exc:
        # Only a class too small for the inner validation split may fail, and it fails cleanly.
        assert holdout > 0 and n_c.min() < 2 * folds
        assert "cannot split" in str(exc) and "--holdout 0" in str(exc)
        return
    lab_of = dict(zip(ids, labels))
    assert len(splits) == folds
    tested = [p for s in splits for p in s.test]
    assert sorted(tested) == sorted(ids)  # every patient tested exactly once
    for s in splits:
        tr, va, te = set(s.train), set(s.val), set(s.test)
        assert len(tr) == len(s.train) and len(va) == len(s.val) and len(te) == len(s.test)
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert tr | va | te == set(ids)
        for c, n in zip(classes, n_c):
            assert abs(_count(s.test, lab_of, c) - n / folds) < 1
        if holdout == 0:
            assert not va
        else:
            dev = list(s.train) + list(s.val)
            for c in classes:
                ideal = len(s.val) * _count(dev, lab_of, c) / len(dev)
                assert abs(_count(s.val, lab_of, c) - ideal) <= 1
    assert kfold_splits(ids, labels, folds=folds, seed=seed, holdout=holdout) == splits


@SETTINGS
@given(cohort=cohorts(), seed=st.integers(0, 2**31 - 1), fraction=st.floats(0.05, 0.45))
def test_holdout_partitions_and_stratifies(cohort, seed, fraction):
    ids, labels, _ = cohort
    n_classes = len(np.unique(labels))
    n_val = max(int(round(fraction * len(ids))), n_classes)
    assume(len(ids) - n_val >= n_classes)  # otherwise a ConfigError is the documented answer
    train, val = holdout_split(ids, labels, fraction, seed=seed)
    lab_of = dict(zip(ids, labels))
    assert not set(train) & set(val) and sorted(train + val) == sorted(ids)
    assert len(val) == n_val
    for c, n in zip(*np.unique(labels, return_counts=True)):
        assert abs(_count(val, lab_of, c) - n_val * n / len(ids)) <= 1
    assert holdout_split(ids, labels, fraction, seed=seed) == (train, val)
