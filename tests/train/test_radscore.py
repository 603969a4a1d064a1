"""The rad-score inside the folds: chance on random labels, signal found, same seed same result."""

import numpy as np
import pandas as pd
import pytest

from dlmvi.train.learning import radscore_learning_curve, subsample
from dlmvi.train.radscore import CorrelationFilter, NearConstantFilter, RadScoreConfig, cross_validate_radscore
from dlmvi.train.splits import kfold_splits


def _data(n=120, p=300, seed=0, signal=0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = rng.integers(0, 2, n)
    x[:, 0] += signal * y  # one informative feature when signal > 0
    ids = [f"P{i:03d}" for i in range(n)]
    frame = pd.DataFrame(x, columns=[f"T1V.tumour.f{j}" for j in range(p)])
    frame.insert(0, "patient_id", ids)
    frame.insert(1, "cohort", "2015")
    frame.insert(2, "mvi_grade", np.where(y == 1, "M1", "M0"))
    splits = {"folds": [s.to_dict() for s in kfold_splits(ids, y, 5, seed=0)]}
    splits["final"] = {"train": ids, "val": []}
    return frame, pd.Series(y.astype(float), index=ids), splits


def _auc(pred):
    from sklearn.metrics import roc_auc_score

    oof = pred[pred["fold"] >= 0]
    return roc_auc_score(oof["mvi"], oof["rad_score"])


def test_random_labels_stay_at_chance_with_selection_inside_the_folds():
    frame, y, splits = _data()
    cv = cross_validate_radscore(frame, y, splits, RadScoreConfig(seed=0))
    assert len(cv.predictions[cv.predictions["fold"] >= 0]) == 120
    assert 0.35 < _auc(cv.predictions) < 0.65
    # the same 300 noise features selected on ALL patients before the folds (the leak) look predictive
    from sklearn.linear_model import LogisticRegression

    cols = [c for c in frame.columns if c.startswith("T1V")]
    r = np.array([abs(np.corrcoef(frame[c], y)[0, 1]) for c in cols])
    top = [cols[i] for i in np.argsort(-r)[:10]]
    leak = []
    for s in splits["folds"]:
        tr, te = s["train"] + s["val"], s["test"]
        m = LogisticRegression(max_iter=1000).fit(frame.set_index("patient_id").loc[tr, top], y[tr])
        leak.append(pd.DataFrame({"mvi": y[te].to_numpy(), "rad_score": m.decision_function(
            frame.set_index("patient_id").loc[te, top]), "fold": 0}))
    assert _auc(pd.concat(leak)) > 0.7


def test_signal_found_and_seed_reproducible():
    frame, y, splits = _data(signal=2.0, p=40)
    a = cross_validate_radscore(frame, y, splits, RadScoreConfig(seed=3))
    b = cross_validate_radscore(frame, y, splits, RadScoreConfig(seed=3))
    assert _auc(a.predictions) > 0.8
    assert "T1V.tumour.f0" in a.final.selected_
    pd.testing.assert_frame_equal(a.predictions, b.predictions)
    assert [f["selected"] for f in a.folds] == [f["selected"] for f in b.folds]


def test_filters_drop_constant_and_correlated_columns():
    x = np.column_stack([np.r_[np.ones(19), 2.0], np.arange(20.0), np.arange(20.0) * 2 + 1, np.sin(np.arange(20.0))])
    assert NearConstantFilter(0.9).fit(x).support_.tolist() == [False, True, True, True]
    assert CorrelationFilter(0.9).fit(x[:, 1:]).support_.tolist() == [True, False, True]


def test_learning_curve_keeps_the_test_folds():
    frame, y, splits = _data(signal=2.0, p=20, n=80)
    lc = radscore_learning_curve(frame, y, splits, fractions=(0.25, 1.0))
    a, b = (lc[lc["fraction"] == f].sort_values("patient_id") for f in (0.25, 1.0))
    assert a["patient_id"].tolist() == b["patient_id"].tolist()  # the same test patients at every fraction
    assert a["n_train"].mean() == pytest.approx(b["n_train"].mean() / 4, rel=0.1)
    assert subsample(["a", "b", "c", "d"], [0, 0, 1, 1], 0.1, 0) == ["a", "b", "c", "d"]  # >= 2 per class


def test_icc_filter_is_applied_inside_each_fold():
    frame, y, splits = _data(signal=2.0, p=20, n=80)
    seen = []

    def icc_of(ids):  # the workflow computes it on these training patients
        seen.append(len(ids))
        return pd.Series({c: (0.9 if c in ("T1V.tumour.f1", "T1V.tumour.f2") else 0.5)
                          for c in frame.columns if c.startswith("T1V")})

    cv = cross_validate_radscore(frame, y, splits, RadScoreConfig(min_icc=0.75), icc_of)
    assert seen[:5] == [len(s["train"]) + len(s["val"]) for s in splits["folds"]] and seen[5] == 80
    for f in cv.folds:
        assert set(f["selected"]) <= {"T1V.tumour.f1", "T1V.tumour.f2"} and f["steps"]["ICC >= 0.75"] == 2
