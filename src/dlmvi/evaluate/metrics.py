"""Classification metrics of a predictions table, per cohort (``dlmvi evaluate``).

For MVI absent/present (every model): accuracy, precision, recall (= sensitivity),
specificity, F1 (the study's external-test figures), the AUC of ``dl_prob`` with its DeLong
95 % CI (:func:`dlmvi.evaluate.roc.delong_auc_ci`, identical to R's pROC) and the 2 x 2
confusion matrix. For 3-class models (columns ``p_M0, p_M1, p_M2``) also per grade
(one-vs-rest) precision, recall, specificity, F1 and AUC with DeLong CI, their unweighted
(macro) means and the 3 x 3 confusion matrix.

Conventions: a confusion matrix has one row per *true* class and one column per *predicted*
class. A figure that cannot be computed (a cohort without MVI-positive patients has no AUC or
sensitivity) is NaN (``null`` in JSON), never an exception, because a valid table may hold a
small cohort.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.constants import GRADES
from dlmvi.errors import StatisticsError, StatisticsWarning
from dlmvi.io.skipped import SKIPPED_CSV, Skipped
from dlmvi.io.tables import read_predictions
from dlmvi.layout import METRICS_JSON

BINARY_CLASSES = ("MVI absent", "MVI present")
PREDICTION_COLUMNS = ("patient_id", "cohort", "label", "dl_prob", "dl_mvi")


def binary_metrics(y_true, y_pred, y_score=None) -> dict:
    """Binary classification figures of one group of patients.

    The counts and proportions are :func:`dlmvi.evaluate.classification.classification_metrics`'s
    (precision = PPV, recall = sensitivity) and the AUC is
    :class:`dlmvi.evaluate.performance.ProbabilityMetrics`'s: the same figures, by the same code,
    as everywhere else.

    Args:
        y_true: 0/1 truth (1 = MVI present), shape (n,).
        y_pred: 0/1 prediction, shape (n,).
        y_score: predicted probability of MVI (for the AUC), shape (n,); optional.

    Returns:
        dict with ``n, n_positive, n_negative, tn, fp, fn, tp, accuracy, precision, recall,
        sensitivity, specificity, f1, npv`` and, with ``y_score``, ``auc, auc_ci_low,
        auc_ci_high`` (DeLong 95 %). Undefined ratios are NaN.
    """
    from dlmvi.evaluate.classification import classification_metrics

    y = np.asarray(y_true, dtype=int)
    p = np.asarray(y_pred, dtype=int)
    if y.shape != p.shape or y.ndim != 1:
        raise StatisticsError(f"truth and prediction must be 1-d of equal length, got {y.shape} and {p.shape}")
    for name, v in (("truth", y), ("prediction", p)):
        if not np.isin(v, (0, 1)).all():
            raise StatisticsError(f"{name} must be 0/1 (MVI absent/present); found {sorted(set(v.tolist()))}")
    c = classification_metrics(y, p)
    out = {
        "n": int(y.size), "n_positive": c["tp"] + c["fn"], "n_negative": c["tn"] + c["fp"],
        "tn": c["tn"], "fp": c["fp"], "fn": c["fn"], "tp": c["tp"],
        "accuracy": c["accuracy"], "precision": c["ppv"], "recall": c["sensitivity"],
        "sensitivity": c["sensitivity"], "specificity": c["specificity"], "npv": c["npv"], "f1": c["f1"],
    }
    if y_score is not None:
        from dlmvi.evaluate.performance import ProbabilityMetrics

        m = ProbabilityMetrics.from_predictions(y, np.asarray(y_score, dtype=float))
        out.update(auc=m.auc, auc_ci_low=m.auc_ci_low, auc_ci_high=m.auc_ci_high)
    return out


def confusion_frame(y_true, y_pred, classes) -> pd.DataFrame:
    """Confusion matrix as a labelled table: rows ``true <class>``, columns ``predicted <class>``."""
    k = len(classes)
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return pd.DataFrame(m, index=[f"true {c}" for c in classes], columns=[f"predicted {c}" for c in classes])


def multiclass_metrics(grade_index, probs) -> dict:
    """Per-grade (one-vs-rest) and macro figures of a 3-class model.

    Args:
        grade_index: true grade as 0/1/2 (M0/M1/M2), shape (n,).
        probs: (n, 3) predicted probabilities of M0, M1, M2; the predicted grade is the argmax.

    Returns:
        dict with ``accuracy``, ``per_class`` ({grade: binary figures of that grade vs the
        rest, its AUC from the grade's probability}), ``macro`` (unweighted means of precision,
        recall, specificity, F1 and AUC over the grades where they are defined) and
        ``confusion_matrix`` (3 x 3 nested list, rows true, columns predicted).
    """
    y = np.asarray(grade_index, dtype=int)
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape != (y.size, len(GRADES)):
        raise StatisticsError(f"expected ({y.size}, 3) grade probabilities, got {probs.shape}")
    pred = probs.argmax(axis=1)
    per_class = {}
    for j, g in enumerate(GRADES):
        per_class[g] = binary_metrics((y == j).astype(int), (pred == j).astype(int), probs[:, j])
    macro = {}
    for key in ("precision", "recall", "specificity", "f1", "auc"):
        vals = np.array([per_class[g][key] for g in GRADES], dtype=float)
        macro[key] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
    return {
        "accuracy": float((pred == y).sum()) / y.size if y.size else math.nan,
        "per_class": per_class,
        "macro": macro,
        "confusion_matrix": confusion_frame(y, pred, GRADES).to_numpy().tolist(),
    }


def _check_frame(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise StatisticsError(
            f"the predictions table lacks column(s) {missing}; expected the output of `dlmvi predict` "
            f"({', '.join(PREDICTION_COLUMNS)}, optionally p_M0, p_M1, p_M2)"
        )
    return read_predictions(df)  # dl_prob in 0-1, dl_mvi and label 0/1, one row per patient


def _group_metrics(g: pd.DataFrame, three_class: bool) -> dict:
    lab = g[g["label"].notna()]
    y = lab["label"].astype(int).to_numpy()
    res = {
        "n_patients": int(len(g)),
        "n_unlabelled": int(len(g) - len(lab)),
        "binary": binary_metrics(y, lab["dl_mvi"].astype(int).to_numpy(), lab["dl_prob"].to_numpy()),
        "confusion_matrix": {
            "classes": list(BINARY_CLASSES),
            "matrix": confusion_frame(y, lab["dl_mvi"].astype(int), BINARY_CLASSES).to_numpy().tolist(),
        },
    }
    if three_class:
        gr = lab[lab["mvi_grade"].isin(GRADES)]
        idx = np.array([GRADES.index(v) for v in gr["mvi_grade"]], dtype=int)
        res["three_class"] = multiclass_metrics(idx, gr[[f"p_{x}" for x in GRADES]].to_numpy())
    return res


POOLED = "all cohorts"


def _groups(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    groups = {str(c): g for c, g in df.groupby("cohort", sort=True)}
    if len(groups) > 1:
        groups[POOLED] = df
    return groups


def evaluate_predictions(predictions_df: pd.DataFrame) -> dict:
    """Metrics per cohort (and over all patients when there are several cohorts).

    Args:
        predictions_df: a ``predictions.csv`` table (patient_id, cohort, mvi_grade, label,
            dl_prob, dl_mvi, optionally p_M0, p_M1, p_M2). Rows without ``label`` are counted
            as unlabelled and left out of the figures.

    Returns:
        ``{"threshold_note", "three_class", "cohorts": {cohort: {...}}}``; each cohort has
        ``n_patients, n_unlabelled, binary`` (see :func:`binary_metrics`),
        ``confusion_matrix`` and, for 3-class tables, ``three_class`` (see
        :func:`multiclass_metrics`). Key ``"all cohorts"`` pools the cohorts when there are several.
    """
    df = _check_frame(predictions_df)
    three = all(f"p_{g}" in df.columns for g in GRADES) and "mvi_grade" in df.columns
    groups = _groups(df)
    return {
        "three_class": three,
        "threshold_note": "dl_mvi = 1 when dl_prob >= the model's threshold (0.5); AUC of dl_prob with "
                          "DeLong 95 % CI; confusion matrices: rows true, columns predicted",
        "cohorts": {c: _group_metrics(g, three) for c, g in groups.items()},
    }


def metrics_table(result: dict) -> pd.DataFrame:
    """One row per cohort with the binary figures (the CSV next to metrics.json)."""
    rows = []
    for cohort, r in result["cohorts"].items():
        row = {"cohort": cohort, "n_patients": r["n_patients"], **r["binary"]}
        if "three_class" in r:
            row["three_class_accuracy"] = r["three_class"]["accuracy"]
            for k, v in r["three_class"]["macro"].items():
                row[f"macro_{k}"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


@dataclass
class EvaluationResult:
    """The evaluation of a predictions table, computed once (:func:`analyse_evaluation`);
    :meth:`write` writes it.

    Attributes:
        doc: the metrics.json document (:func:`evaluate_predictions` plus provenance).
        result: :func:`evaluate_predictions` of the table.
        groups: the patients of each cohort (and of all cohorts), for the ROC curves.
        synthetic: the predictions come from synthetic data.
        skipped: the patients without a label, left out of the figures.
    """

    doc: dict
    result: dict
    groups: dict
    synthetic: bool
    skipped: Skipped

    def write(self, folder) -> None:
        """The evaluation's files (see :func:`run_evaluate`), built aside and moved into ``folder``."""
        from dlmvi.io.atomic import atomic_dir

        with atomic_dir(folder, marker=METRICS_JSON) as out:
            _write_evaluation(out, self.doc, self.result, self.groups, self.synthetic, self.skipped)


def analyse_evaluation(predictions_csv) -> EvaluationResult:
    """Evaluate a predictions table (see :func:`run_evaluate`), writing nothing.

    Raises:
        StatisticsError: a malformed table, or no patient with a label.
    """
    import json

    from dlmvi.constants import SYNTHETIC_NOTICE

    predictions_csv = Path(predictions_csv)
    df = _check_frame(read_predictions(predictions_csv))
    skipped = Skipped("the evaluation")
    skipped.extend(df.loc[df["label"].isna(), "patient_id"], "no label (mvi_grade empty: unlabelled)")
    if len(skipped) == len(df):
        raise StatisticsError(
            f"{predictions_csv}: none of the {len(df)} patients has a label (MVI absent/present from "
            "mvi_grade); evaluation needs patients with a pathology result. Prospective patients' "
            "predictions need no evaluation"
        )
    result = evaluate_predictions(df)
    groups = _groups(df)
    side = predictions_csv.with_name(predictions_csv.stem + ".json")
    synthetic = False
    if side.is_file():
        try:
            synthetic = bool(json.loads(side.read_text()).get("synthetic", False))
        except (json.JSONDecodeError, AttributeError):
            synthetic = False
    if "synthetic" in df.columns:
        synthetic = synthetic or bool(df["synthetic"].astype(str).str.strip().str.lower()
                                      .isin(["1", "1.0", "true"]).any())
    doc = {"predictions": str(predictions_csv), "synthetic": synthetic, **result,
           "skipped": {"n": len(skipped), "file": SKIPPED_CSV}}
    if synthetic:
        doc["notice"] = SYNTHETIC_NOTICE
    return EvaluationResult(doc, result, groups, synthetic, skipped)


def run_evaluate(predictions_csv, out_dir) -> dict:
    """Evaluate a predictions table and write the results.

    Writes to ``out_dir``: ``metrics.json`` (:func:`evaluate_predictions` plus provenance),
    ``metrics.csv`` (:func:`metrics_table`), ``confusion_<cohort>.csv`` (and
    ``confusion3_<cohort>.csv`` for 3-class tables), per cohort with an AUC
    ``roc_<cohort>.csv`` + ``roc_<cohort>.png``, and ``skipped.csv`` (patients without a
    label, left out of the figures). The folder is built aside and moved into place at the
    end: a failing evaluation leaves nothing.

    Raises:
        StatisticsError: a malformed table, or no patient with a label.

    Returns:
        the metrics dictionary written to metrics.json.
    """
    ev = analyse_evaluation(predictions_csv)
    ev.write(out_dir)
    ev.skipped.warn(StatisticsWarning, Path(out_dir) / SKIPPED_CSV)
    return ev.doc


def _write_evaluation(out: Path, doc: dict, result: dict, groups: dict, synthetic: bool, skipped: Skipped) -> None:
    from dlmvi.evaluate.display import subplots

    from dlmvi.evaluate.roc import RocDisplay
    from dlmvi.io.atomic import save_figure, write_csv, write_json

    skipped.write(out / SKIPPED_CSV)
    for cohort, r in result["cohorts"].items():
        name = _safe(cohort)
        cm = r["confusion_matrix"]
        write_csv(out / f"confusion_{name}.csv",
                  pd.DataFrame(cm["matrix"], index=[f"true {c}" for c in cm["classes"]],
                               columns=[f"predicted {c}" for c in cm["classes"]]), index=True)
        if "three_class" in r:
            m3 = r["three_class"]["confusion_matrix"]
            write_csv(out / f"confusion3_{name}.csv",
                      pd.DataFrame(m3, index=[f"true {g}" for g in GRADES],
                                   columns=[f"predicted {g}" for g in GRADES]), index=True)
        if not math.isfinite(r["binary"].get("auc", math.nan)):
            continue
        g = groups[cohort]
        g = g[g["label"].notna()]
        disp = RocDisplay.from_predictions(g["label"].astype(int).to_numpy(),
                                           {"DL-MVI": g["dl_prob"].to_numpy()},
                                           title=f"cohort {cohort} (n = {len(g)})" + (" - synthetic" if synthetic else ""))
        write_csv(out / f"roc_{name}.csv", disp.to_frame())
        fig, ax = subplots(figsize=(4.5, 4.5))
        disp.plot(ax=ax)
        save_figure(fig, out / f"roc_{name}.png")
    write_csv(out / "metrics.csv", metrics_table(result))
    write_json(out / METRICS_JSON, doc)
