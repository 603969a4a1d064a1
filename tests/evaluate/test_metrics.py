"""Tests of dlmvi.evaluate.metrics against hand-computed figures, scikit-learn and dlmvi.evaluate.roc."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from dlmvi.cli import run_cli
from dlmvi.errors import StatisticsError
from dlmvi.evaluate.metrics import (
    POOLED,
    binary_metrics,
    evaluate_predictions,
    multiclass_metrics,
    run_evaluate,
)
from dlmvi.evaluate.roc import delong_auc_ci

Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1])
P = np.array([1, 1, 0, 1, 0, 1, 0, 0, 0, 0])
S = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.6, 0.2, 0.1, 0.45, 0.35])


def test_binary_metrics_hand_computed():
    # tp = 3 (rows 0, 1, 3), fn = 2 (rows 2, 9), fp = 1 (row 5), tn = 4
    m = binary_metrics(Y, P, S)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 2, 1, 4)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == m["sensitivity"] == pytest.approx(0.6)
    assert m["specificity"] == pytest.approx(0.8)
    assert m["npv"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    # cases 0.9 0.8 0.4 0.7 0.35 vs controls 0.3 0.6 0.2 0.1 0.45: 5+5+3+5+3 = 21 of 25 pairs ordered
    assert m["auc"] == pytest.approx(21 / 25)


def test_binary_metrics_match_sklearn_and_delong():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = np.clip(0.3 * y + rng.normal(0.35, 0.25, 200), 0, 1)
    p = (s >= 0.5).astype(int)
    m = binary_metrics(y, p, s)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert m["precision"] == pytest.approx(skm.precision_score(y, p))
    assert m["recall"] == pytest.approx(skm.recall_score(y, p))
    assert m["f1"] == pytest.approx(skm.f1_score(y, p))
    tn, fp, fn, tp = skm.confusion_matrix(y, p).ravel()
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    auc, lo, hi = delong_auc_ci(y, s)
    assert (m["auc"], m["auc_ci_low"], m["auc_ci_high"]) == pytest.approx((auc, lo, hi))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, s))


def test_undefined_figures_are_nan():
    m = binary_metrics([0, 0, 0], [0, 1, 0], [0.1, 0.7, 0.2])
    assert math.isnan(m["sensitivity"]) and math.isnan(m["auc"])
    assert m["specificity"] == pytest.approx(2 / 3)


def _three_class_frame(n=90, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), g] += 1.2
    pr = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return g, pr


def test_multiclass_matches_sklearn():
    g, pr = _three_class_frame()
    m = multiclass_metrics(g, pr)
    pred = pr.argmax(1)
    prec, rec, f1, _ = skm.precision_recall_fscore_support(g, pred, labels=[0, 1, 2])
    for j, grade in enumerate(("M0", "M1", "M2")):
        pc = m["per_class"][grade]
        assert pc["precision"] == pytest.approx(prec[j])
        assert pc["recall"] == pytest.approx(rec[j])
        assert pc["f1"] == pytest.approx(f1[j])
        assert pc["auc"] == pytest.approx(skm.roc_auc_score(g == j, pr[:, j]))
        assert pc["auc_ci_low"] < pc["auc"] < pc["auc_ci_high"]
    assert m["macro"]["f1"] == pytest.approx(skm.f1_score(g, pred, average="macro"))
    assert m["macro"]["auc"] == pytest.approx(skm.roc_auc_score(g, pr, multi_class="ovr", average="macro"))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(g, pred))
    assert m["confusion_matrix"] == skm.confusion_matrix(g, pred).tolist()


def _frame():
    rows = []
    for i, (y, p, s) in enumerate(zip(Y, P, S)):
        rows.append({"patient_id": f"A{i:02d}", "cohort": "2015", "mvi_grade": "M1" if y else "M0",
                     "label": y, "dl_prob": s, "dl_mvi": p})
    # cohort 2018: perfectly ranked, all predicted present, one unlabelled patient
    for i in range(6):
        rows.append({"patient_id": f"B{i:02d}", "cohort": "2018", "mvi_grade": "M2" if i >= 3 else "M0",
                     "label": int(i >= 3), "dl_prob": 0.5 + i / 20, "dl_mvi": 1})
    rows.append({"patient_id": "B99", "cohort": "2018", "mvi_grade": "", "label": None, "dl_prob": 0.9, "dl_mvi": 1})
    return pd.DataFrame(rows)


def test_evaluate_predictions_per_cohort():
    res = evaluate_predictions(_frame())
    assert set(res["cohorts"]) == {"2015", "2018", POOLED}
    c15 = res["cohorts"]["2015"]
    assert c15["confusion_matrix"]["matrix"] == [[4, 1], [2, 3]]  # rows true absent/present
    c18 = res["cohorts"]["2018"]
    assert c18["n_patients"] == 7 and c18["n_unlabelled"] == 1
    assert c18["binary"]["accuracy"] == pytest.approx(0.5)
    assert c18["binary"]["precision"] == pytest.approx(0.5)
    assert c18["binary"]["specificity"] == pytest.approx(0.0)
    assert c18["binary"]["auc"] == pytest.approx(1.0)
    assert res["cohorts"][POOLED]["binary"]["n"] == 16
    assert not res["three_class"]


def test_run_evaluate_writes_files(tmp_path):
    csv = tmp_path / "predictions.csv"
    _frame().to_csv(csv, index=False)
    (tmp_path / "predictions.json").write_text(json.dumps({"synthetic": True}))
    assert run_cli(["evaluate", str(csv), "--out", str(tmp_path / "ev")]) == 0
    doc = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert doc["synthetic"] is True and "notice" in doc
    assert doc["cohorts"]["2015"]["binary"]["f1"] == pytest.approx(2 / 3)
    cm = pd.read_csv(tmp_path / "ev" / "confusion_2015.csv", index_col=0)
    assert cm.loc["true MVI present", "predicted MVI present"] == 3
    roc = pd.read_csv(tmp_path / "ev" / "roc_2018.csv")
    assert roc["tpr"].iloc[-1] == 1.0
    assert (tmp_path / "ev" / "roc_2015.png").stat().st_size > 1000
    table = pd.read_csv(tmp_path / "ev" / "metrics.csv", dtype={"cohort": str})
    assert table.set_index("cohort").loc["2015", "accuracy"] == pytest.approx(0.7)


def test_three_class_table(tmp_path):
    g, pr = _three_class_frame(60, seed=1)
    grades = np.array(["M0", "M1", "M2"])[g]
    df = pd.DataFrame({"patient_id": [f"P{i}" for i in range(60)], "cohort": "2015", "mvi_grade": grades,
                       "label": (g > 0).astype(int), "dl_prob": pr[:, 1:].sum(1),
                       "dl_mvi": (pr[:, 1:].sum(1) >= 0.5).astype(int),
                       "p_M0": pr[:, 0], "p_M1": pr[:, 1], "p_M2": pr[:, 2]})
    csv = tmp_path / "p.csv"
    df.to_csv(csv, index=False)
    doc = run_evaluate(csv, tmp_path / "ev")
    t3 = doc["cohorts"]["2015"]["three_class"]
    assert t3["macro"]["auc"] == pytest.approx(skm.roc_auc_score(g, pr, multi_class="ovr", average="macro"))
    m3 = pd.read_csv(tmp_path / "ev" / "confusion3_2015.csv", index_col=0)
    assert m3.to_numpy().sum() == 60


def test_bad_tables(tmp_path):
    with pytest.raises(StatisticsError, match="lacks column"):
        evaluate_predictions(_frame().drop(columns=["dl_prob"]))
    bad = _frame()
    bad.loc[0, "dl_mvi"] = 2
    with pytest.raises(StatisticsError, match="A00"):
        evaluate_predictions(bad)
    with pytest.raises(StatisticsError, match="no such predictions"):
        run_evaluate(tmp_path / "missing.csv", tmp_path / "o")
