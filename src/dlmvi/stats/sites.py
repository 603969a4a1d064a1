"""Validation per site and per scanner: every figure per cohort AND per scanner group.

A model that is well calibrated on average can be miscalibrated on one scanner. For each
group of patients - each cohort (site or period) and each scanner (vendor, model, field
strength) - :func:`group_table` gives the number of patients and events, the AUC with its
DeLong 95 % CI (as R's pROC), the calibration intercept and slope and the Brier score (as
R's ``rms::val.prob``) and the classification at the threshold (accuracy, sensitivity,
specificity). A group smaller than ``min_size`` patients is still reported, flagged
``small`` and warned about: its intervals are too wide to conclude anything.

Scanner of each patient (:func:`read_scanners`): ``COHORT/scanners.csv`` written by
``dlmvi import`` (patient_id, sequence, vendor, model, field_strength, series_date) when
present - a patient whose sequences come from several scanners is grouped by the scanner of
most of its sequences -, else the clinical table's columns ``scanner_vendor``,
``scanner_model`` (optional) and ``field_strength``.

Every figure is :class:`dlmvi.evaluate.performance.ProbabilityMetrics`'s, as everywhere else.
The module lives in ``stats`` because the nomogram's groups need the fitted nomogram.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.errors import ClinicalTableError, StatisticsWarning

#: Groups with fewer patients are flagged ``small`` and warned about.
MIN_GROUP_SIZE = 30
SCANNERS_CSV = "scanners.csv"
GROUP_COLUMNS = ["group_type", "group", "n", "n_events", "small", "auc", "auc_ci_low", "auc_ci_high",
                 "calibration_intercept", "calibration_slope", "brier", "accuracy", "sensitivity", "specificity",
                 "threshold"]


def _label(vendor, model, field) -> str:
    parts = []
    for v in (vendor, model):
        s = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip()
        if s and s.lower() != "nan":
            parts.append(s)
    try:
        f = float(field)
        if math.isfinite(f):
            parts.append(f"{f:g} T")
    except (TypeError, ValueError):
        pass
    return " ".join(parts) if parts else "unknown scanner"


def read_scanners(cohort_dir=None, clinical: pd.DataFrame | None = None, column_map=None) -> pd.DataFrame | None:
    """Scanner group of each patient: DataFrame ``patient_id, scanner`` or None when unknown.

    Args:
        cohort_dir: a cohort folder; its ``scanners.csv`` is read when present.
        clinical: the clinical table (used when there is no scanners.csv): columns
            ``scanner_vendor``, ``field_strength`` and optionally ``scanner_model``.
        column_map: the hospital's :class:`~dlmvi.io.tables.ColumnMap`, for reading the
            cohort's clinical.csv.

    Raises:
        ClinicalTableError: scanners.csv lacks its columns (names the file and the fix).
    """
    if cohort_dir is not None and (Path(cohort_dir) / SCANNERS_CSV).is_file():
        path = Path(cohort_dir) / SCANNERS_CSV
        t = pd.read_csv(path, dtype={"patient_id": str, "vendor": str, "model": str})
        missing = [c for c in ("patient_id", "vendor", "field_strength") if c not in t.columns]
        if missing:
            raise ClinicalTableError(f"{path}: column(s) {missing} missing; expected patient_id, sequence, vendor, "
                                     "model, field_strength, series_date (as `dlmvi import` writes)")
        t["scanner"] = [_label(v, m, f) for v, m, f in zip(t["vendor"], t.get("model", [None] * len(t)),
                                                             t["field_strength"])]
        # the scanner of most of the patient's sequences (ties: alphabetical, for determinism)
        best = (t.groupby(["patient_id", "scanner"]).size().reset_index(name="k")
                .sort_values(["patient_id", "k", "scanner"], ascending=[True, False, True])
                .drop_duplicates("patient_id"))
        return best[["patient_id", "scanner"]].reset_index(drop=True)
    if clinical is None and cohort_dir is not None and (Path(cohort_dir) / "clinical.csv").is_file():
        from dlmvi.io.tables import read_clinical

        clinical = read_clinical(Path(cohort_dir) / "clinical.csv", column_map).frame
    if clinical is None or not {"scanner_vendor", "field_strength"} <= set(clinical.columns):
        return None
    models = clinical["scanner_model"] if "scanner_model" in clinical.columns else [None] * len(clinical)
    return pd.DataFrame({"patient_id": clinical["patient_id"].astype(str).to_numpy(),
                         "scanner": [_label(v, m, f) for v, m, f in zip(clinical["scanner_vendor"], models,
                                                                       clinical["field_strength"])]})


def group_metrics(y, prob, *, threshold: float, decision=None, level: float = 0.95) -> dict:
    """The validation figures of one group (NaN where undefined, e.g. one class only), from
    :class:`dlmvi.evaluate.performance.ProbabilityMetrics` like every other figure.

    Args:
        y: 0/1 MVI; prob: predicted probability of MVI.
        threshold: the model's threshold: the classification is ``prob >= threshold``.
        decision: or the model's own 0/1 decision (a predictions file's ``dl_mvi``, made at
            ``threshold``).
    """
    from dlmvi.evaluate.performance import ProbabilityMetrics

    m = ProbabilityMetrics.from_predictions(np.asarray(y, dtype=float), np.asarray(prob, dtype=float),
                                            threshold=threshold, level=level,
                                            decision=None if decision is None else np.asarray(decision, dtype=float))
    return {"n": m.n, "n_events": m.n_events, "threshold": float(threshold), "auc": m.auc, "auc_ci_low": m.auc_ci_low,
            "auc_ci_high": m.auc_ci_high, "accuracy": m.get("accuracy"), "sensitivity": m.get("sensitivity"),
            "specificity": m.get("specificity"), "brier": m.brier, "calibration_intercept": m.calibration_intercept,
            "calibration_slope": m.calibration_slope}


def group_table(frame: pd.DataFrame, prob_column: str, scanners: pd.DataFrame | None, *, threshold: float,
                decision_column: str | None = None, min_size: int = MIN_GROUP_SIZE,
                what: str = "DL-MVI") -> pd.DataFrame:
    """Validation figures per cohort and per scanner group.

    Args:
        frame: one row per patient with ``patient_id``, ``cohort``, ``label`` (0/1, or
            ``mvi`` for clinical tables) and ``prob_column``.
        scanners: :func:`read_scanners`'s table, or None (no scanner rows then).
        threshold: the model's threshold of ``prob_column`` (classification figures).
        decision_column: the table's own 0/1 decision (``dl_mvi``), used for the
            classification instead of ``prob_column >= threshold``.
        min_size: groups with fewer patients are flagged ``small`` (and warned about).
        what: name of the prediction, for the warning.

    Returns:
        DataFrame with :data:`GROUP_COLUMNS`; ``group_type`` is ``cohort`` or ``scanner``.
    """
    f = frame.copy()
    f["patient_id"] = f["patient_id"].astype(str)
    f["cohort"] = f["cohort"].astype(str)
    ycol = "label" if "label" in f.columns else "mvi"
    f = f[pd.to_numeric(f[ycol], errors="coerce").notna()]
    groups: list[tuple[str, str, pd.DataFrame]] = [("cohort", c, g) for c, g in f.groupby("cohort", sort=True)]
    if scanners is not None and len(scanners):
        s = f.merge(scanners[["patient_id", "scanner"]], on="patient_id", how="left")
        s["scanner"] = s["scanner"].fillna("unknown scanner")
        groups += [("scanner", sc, g) for sc, g in s.groupby("scanner", sort=True)]
    rows = []
    small = []
    for kind, name, g in groups:
        decision = None if decision_column is None else pd.to_numeric(g[decision_column], errors="coerce")
        m = group_metrics(pd.to_numeric(g[ycol]), pd.to_numeric(g[prob_column], errors="coerce"), threshold=threshold,
                          decision=decision)
        m.update(group_type=kind, group=str(name), small=bool(m["n"] < min_size))
        if m["small"]:
            small.append(f"{kind} {name} (n = {m['n']})")
        rows.append(m)
    if small:
        warnings.warn(f"{what}: group(s) below {min_size} patients: {', '.join(small)}; their figures have very wide "
                      "confidence intervals", StatisticsWarning, stacklevel=2)
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)


def write_groups(table: pd.DataFrame, out_dir, name: str = "groups", scanner_source: str | None = None,
                 min_size: int = MIN_GROUP_SIZE, synthetic: bool = False) -> dict:
    """Write ``NAME.csv`` and ``NAME.json`` (records + settings) into ``out_dir``."""
    from dlmvi.evaluate.calibration import CALIBRATION_RULE
    from dlmvi.io.atomic import write_csv, write_json

    out = Path(out_dir)
    write_csv(out / f"{name}.csv", table)
    doc = {"min_group_size": min_size, "scanner_source": scanner_source, "synthetic": bool(synthetic),
           "groups": table.to_dict("records"),
           "note": "AUC with DeLong 95 % CI; calibration intercept/slope and Brier as rms::val.prob ("
                   + CALIBRATION_RULE + "); classification at the threshold; groups below the minimum size are "
                   "flagged 'small'"}
    write_json(out / f"{name}.json", doc)
    return doc


def scanner_source(cohort_dir, column_map=None) -> str | None:
    """Where the scanner groups come from (for the report), or None."""
    from dlmvi.io.tables import read_text_table

    if cohort_dir is None:
        return None
    if (Path(cohort_dir) / SCANNERS_CSV).is_file():
        return f"{SCANNERS_CSV} (written by dlmvi import)"
    p = Path(cohort_dir) / "clinical.csv"
    names = {(column_map.columns if column_map else {}).get(c, c) for c in read_text_table(p)[0].columns} \
        if p.is_file() else set()
    if {"scanner_vendor", "field_strength"} <= names:
        return "clinical.csv columns scanner_vendor, field_strength"
    return None


def nomogram_groups(table, predictions, out_dir, min_size: int = MIN_GROUP_SIZE,
                    column_map=None) -> pd.DataFrame | None:
    """The nomogram's figures per cohort and scanner group, written as ``out_dir/groups.csv``.

    Reads the fitted nomogram from ``out_dir/nomogram.json`` (``dlmvi clinical``'s output)
    and the scanner of each patient from the clinical table's folder (:func:`read_scanners`).
    Returns None (and writes nothing) when the nomogram could not be fitted.
    """
    import json

    from dlmvi.constants import RISK_THRESHOLD
    from dlmvi.layout import NOMOGRAM_JSON
    from dlmvi.stats.clinical import load_clinical_table
    from dlmvi.stats.nomogram import NomogramModel

    nom_path = Path(out_dir) / NOMOGRAM_JSON
    nom = json.loads(nom_path.read_text()) if nom_path.is_file() else None
    if not nom or "error" in nom:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StatisticsWarning)
        data, synthetic = load_clinical_table(table, predictions, column_map=column_map)
    model = NomogramModel.from_json(nom)
    inputs = data[list(model.predictors)].apply(pd.to_numeric, errors="coerce")
    ok = inputs.notna().all(axis=1)
    data = data.loc[ok].reset_index(drop=True)
    data["nomogram_prob"] = model.predict_proba(data)
    folder = Path(table).parent if isinstance(table, (str, Path)) else None
    t = group_table(data, "nomogram_prob", read_scanners(folder, clinical=data, column_map=column_map), min_size=min_size,
                    threshold=RISK_THRESHOLD, what="nomogram")
    write_groups(t, out_dir, scanner_source=scanner_source(folder, column_map), min_size=min_size, synthetic=synthetic)
    return t


__all__ = ["read_scanners", "nomogram_groups", "group_metrics", "group_table", "write_groups", "scanner_source", "MIN_GROUP_SIZE",
           "GROUP_COLUMNS"]
