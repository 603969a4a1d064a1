"""Leakage canary: with labels shuffled at random, patient-level cross-validation must find nothing.

A tiny cache in dlmvi's format is written with a strong, learnable image signal (a large
bright disk for MVI present: the same design on which tests/train/test_run.py reaches an
out-of-fold AUC >= 0.85), then its ``patients.csv`` ``mvi_grade`` column is permuted with a
seeded generator, balanced so that half of the MVI-present grades land on patients whose
images show MVI and half on patients whose images do not (a plain permutation of 60 labels
leaves a chance agreement of its own: seed 2026 gave an image-oracle AUC of 0.60). The
images now say nothing about the labels, so the pooled out-of-fold AUC must be near 0.5. If any patient's samples reached both the training and the test side
of a fold (the leak the study risked with 27 samples per patient), or test labels fed into
training, a network can score above chance here.

Bound: under the null (scores independent of labels) the AUC is the Mann-Whitney statistic
scaled by n0 * n1; its standard error is SE = sqrt((n0 + n1 + 1) / (12 n0 n1)) (Hanley &
McNeil 1982; DeLong's variance estimate has the same expectation under the null). With
n0 = n1 = 30: SE = sqrt(61 / 10800) = 0.0752; the test asserts |AUC - 0.5| < 3 SE = 0.225
(two-sided false-alarm probability about 0.3 % for a leak-free pipeline). Measured: 0.476.

What it can and cannot see: it catches label information flowing into the out-of-fold
predictions by a path that needs no memorising (test labels used for training targets,
thresholds, calibration or normalisation; predictions taken from a model fitted on the test
patients' labels with a usable image-label link). The tiny network cannot memorise 60
random labels: a deliberately injected sample-level leak (each fold trained on its test
patients too) still gave AUC 0.50 after 20 epochs, so per-patient memorisation leaks are
guarded by the split property tests (tests/train/test_split_properties.py) and
tests/train/test_run.py::test_no_patient_straddles_a_split instead.
"""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

pytestmark = pytest.mark.slow


def _write_cache(root):
    from cachefactory import write_cache

    return write_cache(root, n_patients=60, size=32, cohorts=("2015",), excluded=0, seed=11)


def _balanced_permutation(grades: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Permute ``grades`` so that present (M1/M2) grades go half to old-present, half to old-absent patients."""
    present = np.flatnonzero(grades != "M0")
    absent = np.flatnonzero(grades == "M0")
    assert len(present) == len(absent) and len(present) % 2 == 0
    half = len(present) // 2
    p, a = rng.permutation(present), rng.permutation(absent)
    out = grades.copy()
    out[np.r_[p[:half], a[:half]]] = grades[rng.permutation(present)]
    out[np.r_[p[half:], a[half:]]] = grades[rng.permutation(absent)]
    return out


def test_shuffled_labels_give_chance_auc(tmp_path, monkeypatch):
    from dlmvi.model.presets import PRESETS, Preset
    from dlmvi.train.config import TrainConfig
    from dlmvi.train.run import run_training

    # the tiny network of tests/train/conftest.py (32 px, 8-4-8 channels)
    monkeypatch.setitem(PRESETS, "tiny", Preset(name="tiny", input_size=32, stem_width=8, widths=(4, 8),
                                                blocks=(1, 1), epochs=8, batch_size=8, lr=3e-3, patience=0))
    cache = _write_cache(tmp_path / "cache")
    pats = pd.read_csv(cache / "patients.csv", dtype=str, keep_default_na=False)
    original = pats["mvi_grade"].to_numpy()
    pats["mvi_grade"] = _balanced_permutation(original, np.random.default_rng(2026))
    pats.to_csv(cache / "patients.csv", index=False)
    y_old = (original != "M0").astype(int)
    y_new = (pats["mvi_grade"].to_numpy() != "M0").astype(int)
    n1 = int(y_new.sum())
    n0 = len(y_new) - n1
    assert (n0, n1) == (30, 30)
    # A perfect reader of the images (the old labels) scores exactly chance on the new labels.
    assert roc_auc_score(y_new, y_old) == 0.5
    assert sorted(pats["mvi_grade"]) == sorted(original)  # a permutation of the grades

    res = run_training(cache, tmp_path / "run", TrainConfig(preset="tiny", folds=5, epochs=8, seed=0,
                                                            device="cpu", progress=False))
    cv = res.cv_predictions
    assert sorted(cv["patient_id"]) == sorted(pats["patient_id"])  # each patient tested once
    auc = roc_auc_score(cv["label"], cv["dl_prob"])
    se = math.sqrt((n0 + n1 + 1) / (12 * n0 * n1))
    assert abs(se - 0.0752) < 1e-4
    print(f"out-of-fold AUC on shuffled labels: {auc:.4f}")
    assert abs(auc - 0.5) < 3 * se, f"out-of-fold AUC {auc:.3f} on shuffled labels: leakage?"
