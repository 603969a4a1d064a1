"""The survival step of the study: OS and RFS by pathological MVI, by DL-MVI and by any
other grouping column, written as ``survival.json`` plus one figure and one CSV per analysis.

``survival.json`` (times in months)::

    {
      "synthetic": false,
      "time_unit": "months",
      "analyses": ["os_by_mvi", "rfs_by_mvi", "os_by_dl", "rfs_by_dl", ...],
      "os_by_mvi": {
        "outcome": "os", "time_column": "os_months", "event_column": "os_event",
        "group_column": "mvi_grade", "group_definition": "...",
        "n": 321, "events": 64, "excluded": [], "left_out": [{"patient_id", "reason"}],
        "overall": {"n", "events", "median", "median_ci": [lower, upper]},
        "reference": "absent",
        "groups": {"absent": {"n", "events", "median", "median_ci"}, "present": {...}},
        "logrank": {"chi2", "df", "p"},
        "cox": {"reference", "comparison", "hr", "ci": [lower, upper], "p", "p_test": "wald",
                "ties": "efron", "conf_level", "coef",
                "lr_test": {"chi2", "df", "p"}, "score_test": {"chi2", "df", "p"}},
        "rates": {"times": [12, 36, 60],
                  "overall": [{"time", "survival", "std_err", "ci": [lower, upper], "n_risk"}
                              or null, ...],
                  "groups": {"absent": [...], "present": [...]}},
        "median_follow_up": {"median", "ci": [lower, upper], "method": "reverse Kaplan-Meier"},
        "concordance": {"c", "se"},
        "ph_test": {"transform": "km", "terms": {"group": {"chisq", "df", "p"}},
                    "global": {"chisq", "df", "p"}},
        "notes": [], "figure": "os_by_mvi.png", "curve_csv": "os_by_mvi.csv"
      },
      ...,
      "multivariable_cox_os": {
        "outcome": "os", "covariates": {"dl_mvi": "DL-MVI predicted present (0/1)", ...},
        "terms": {"dl_mvi": {"hr", "ci", "p", "coef", "se"}, "afp > 20": {...},
                  "tumor_size_cm": {...}, "edmondson": {...}},
        "n", "events", "excluded": [patients without complete data], "missing": {column: n},
        "lr_test", "score_test", "wald_test", "concordance", "ph_test", "ties": "efron",
        "conf_level"
      },
      "multivariable_cox_rfs": {...},
      "notes": {"os_by_dl": "why this analysis is null", ...}
    }

An analysis that cannot be done (no predictions, no RFS columns, ...) is ``null`` with its
reason under ``notes``; ``median``, a limit of ``median_ci``, ``logrank`` or ``cox`` is
``null`` where not reached or not estimable. See :mod:`dlmvi.stats.survival` and
:mod:`dlmvi.stats.cox` for the methods (each as R's ``survival``).
Each ``--group`` column gives ``os_by_<column>`` and ``rfs_by_<column>``. The multivariable
models adjust DL-MVI for :data:`ADJUST_FOR` (those in the table; ``adjust_for`` changes them),
on the patients with every covariate (complete cases, the others named in ``excluded``).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dlmvi.constants import SYNTHETIC_NOTICE
from dlmvi.errors import ClinicalTableError, StatisticsError, StatisticsWarning
from dlmvi.io.atomic import save_figure, write_csv, write_json
from dlmvi.io.provenance import is_synthetic
from dlmvi.layout import SURVIVAL_JSON
from dlmvi.stats.survival import (
    DAYS_PER_MONTH,
    OUTCOMES,
    SurvivalComparison,
    check_outcome,
    compare_survival,
    durations_from_dates,
)

#: Most levels a ``--group`` column may have (a continuous column must be dichotomised first).
MAX_GROUP_LEVELS = 8

#: Covariates of the multivariable Cox models besides DL-MVI (used where in the table).
ADJUST_FOR: tuple[str, ...] = ("afp", "tumor_size_cm", "edmondson")

#: Cut-offs of the multivariable Cox covariates (``value > cut-off`` = 1; others as they are).
COX_CUTOFFS: dict[str, float] = {"afp": 20.0}

_OUTCOME_NAMES = {"os": "Overall survival", "rfs": "Recurrence-free survival"}


@dataclass(frozen=True)
class Grouping:
    """How patients are split for one analysis.

    Attributes:
        key: name used in entry names (``os_by_<key>``).
        column: table column the groups come from.
        title: human-readable name (legend title).
        definition: how the column's values map to groups.
        labels: group label per patient (None = excluded: value missing).
        levels: group labels, reference first.
    """

    key: str
    column: str
    title: str
    definition: str
    labels: pd.Series
    levels: tuple[str, ...]


def _blank(series: pd.Series) -> pd.Series:
    """True for missing cells: NaN, empty, or a missing token (NA, ., -, ...)."""
    from dlmvi.io.tables import MISSING_TOKENS

    return series.isna() | series.astype(str).str.strip().str.lower().isin(MISSING_TOKENS)


def read_survival_table(path: str | Path, columns: Sequence[str] = (), column_map=None) -> pd.DataFrame:
    """Read clinical.csv with :func:`dlmvi.io.tables.read_clinical` (value policy, grades,
    encodings, the ``--columns`` map of names and units).

    Problems in ``patient_id``, ``mvi_grade``, the survival columns or ``columns`` raise;
    problems in other columns (a lab value, say) do not stop the survival analysis.
    """
    from dlmvi.io.tables import read_clinical

    table = read_clinical(path, column_map)
    outcome_columns = [c for pair in OUTCOMES.values() for c in pair]
    table.check(["mvi_grade", *outcome_columns, *columns])
    return table.frame


def _ids_text(ids: Sequence[str]) -> str:
    shown = ", ".join(map(str, ids[:10]))
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def _rows_text(table: pd.DataFrame, mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    parts = [f"patient {table['patient_id'].iloc[i]} (row {i + 1})" for i in idx[:10]]
    return ", ".join(parts) + (f" and {len(idx) - 10} more" if len(idx) > 10 else "")


def _level_text(value: Any) -> str:
    """Group label of a cell value: 1.0 -> '1', 'M1' -> 'M1'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


# --------------------------------------------------------------------------------------------
# Groupings


def mvi_grouping(table: pd.DataFrame) -> Grouping:
    """Pathological MVI: present = M1 or M2, absent = M0 (column ``mvi_grade``)."""
    if "mvi_grade" not in table.columns:
        raise ClinicalTableError("the table has no mvi_grade column (M0, M1 or M2 per patient)")
    grade = table["mvi_grade"].where(~_blank(table["mvi_grade"])).astype("string")
    grade = grade.str.strip().str.upper()
    bad = grade.notna().to_numpy() & ~grade.isin(["M0", "M1", "M2"]).fillna(False).to_numpy()
    if bad.any():
        raise ClinicalTableError(
            f"mvi_grade must be M0, M1 or M2 but is not for {_rows_text(table, bad)}"
        )
    labels = grade.map({"M0": "absent", "M1": "present", "M2": "present"}).astype(object)
    labels = labels.where(grade.notna(), None)
    return Grouping("mvi", "mvi_grade", "Pathological MVI",
                    "absent = M0; present = M1 or M2", labels, ("absent", "present"))


def dl_grouping(table: pd.DataFrame, column: str = "dl_mvi") -> Grouping:
    """Predicted MVI (DL-MVI): ``dl_mvi`` 0 = absent, 1 = present."""
    blank = _blank(table[column])
    values = pd.to_numeric(table[column].where(~blank), errors="coerce")
    bad = (~blank & ~values.isin([0, 1])).to_numpy()
    if bad.any():
        raise ClinicalTableError(
            f"{column} must be 0 (MVI predicted absent) or 1 (present) but is not for "
            f"{_rows_text(table, bad)}"
        )
    labels = values.map({0: "absent", 1: "present"}).astype(object).where(values.notna(), None)
    return Grouping("dl", column, "DL-MVI (predicted)",
                    "dl_mvi: absent = 0, present = 1 (dl_prob >= threshold)", labels,
                    ("absent", "present"))


def column_grouping(table: pd.DataFrame, column: str) -> Grouping:
    """Any 0/1 or categorical column; levels in sorted order, the first is the reference."""
    if column not in table.columns:
        raise ClinicalTableError(
            f"--group column {column!r} is not in the table; columns are "
            f"{', '.join(map(str, table.columns))}"
        )
    raw = table[column]
    present = ~_blank(raw)
    numeric = pd.to_numeric(raw.where(present), errors="coerce")
    if present.any() and numeric[present].notna().all():
        # Numbers (0/1, 1.0, grades 1-4): label 1.0 as "1", order numerically.
        labels = numeric.map(_level_text).astype(object).where(present, None)
        levels = tuple(_level_text(float(v)) for v in sorted(pd.unique(numeric[present])))
    else:
        labels = raw.map(_level_text).astype(object).where(present, None)
        levels = tuple(sorted(pd.unique(labels[present].astype(str))))
    if len(levels) > MAX_GROUP_LEVELS:
        raise StatisticsError(
            f"--group column {column!r} has {len(levels)} different values; survival curves "
            f"need a 0/1 or categorical column with at most {MAX_GROUP_LEVELS} levels. "
            "Dichotomise it first (for example afp > 20 ng/mL as a 0/1 column)"
        )
    reference = levels[0] if levels else "-"
    return Grouping(column, column, column, f"levels of {column} (reference {reference})",
                    labels, levels)


def attach_predictions(table: pd.DataFrame, predictions: pd.DataFrame | str | Path) -> pd.DataFrame:
    """Add the ``dl_mvi`` column of ``predictions`` (joined on ``patient_id``) to ``table``.

    ``predictions`` is read by :func:`dlmvi.io.tables.read_predictions` (``dl_mvi`` derived
    from ``dl_prob`` when absent; ``dl_prob`` outside 0-1 or a repeated patient is refused).
    """
    from dlmvi.io.tables import read_predictions

    pred = read_predictions(predictions)
    dup = pred["patient_id"].duplicated(keep=False)
    if dup.any():
        raise ClinicalTableError(
            "the predictions table lists some patients more than once: "
            f"{_ids_text(sorted(set(pred.loc[dup, 'patient_id'])))}; "
            "keep one prediction per patient"
        )
    out = table.drop(columns=["dl_mvi"], errors="ignore")
    return out.merge(pred[["patient_id", "dl_mvi"]], on="patient_id", how="left", validate="one_to_one")


# --------------------------------------------------------------------------------------------
# Pipeline


def prepare_outcomes(
    table: pd.DataFrame,
    censor_date: str | date | None = None,
    rfs_death_is_event: bool = True,
) -> tuple[pd.DataFrame, list[str], dict[str, str], dict[str, np.ndarray]]:
    """Decide where survival times come from and validate them.

    Dates are converted (:func:`~dlmvi.stats.survival.durations_from_dates`) when the table has
    ``surgery_date`` and either ``censor_date`` is given or the duration columns are absent.
    A patient whose time or event is empty is left out of that outcome's analyses only
    (complete cases per analysis, as R's ``na.action = na.omit``); a value that is present but
    wrong (negative, not a number, an event other than 0/1) is an error.

    Returns:
        ``(table, outcomes, notes, missing)``: the table with duration columns, the outcomes
        available (``"os"``, ``"rfs"``), why any is not, and per outcome a boolean mask of the
        patients whose time or event is missing.

    Raises:
        ClinicalTableError: bad times/events/dates (naming the rows), no outcome at all, or a
            censor date without dates.
    """
    notes: dict[str, str] = {}
    missing: dict[str, np.ndarray] = {}
    has_durations = any(c in table.columns for pair in OUTCOMES.values() for c in pair)
    has_dates = "surgery_date" in table.columns
    if censor_date is not None and not has_dates:
        raise ClinicalTableError(
            "a censor date needs dates: add surgery_date, last_followup_date, death_date and "
            "recurrence_date columns, or leave out --censor-date to use os_months/rfs_months"
        )
    if has_dates and (censor_date is not None or not has_durations):
        table = durations_from_dates(table, censor_date, rfs_death_is_event)
    outcomes = []
    for outcome, (time_col, event_col) in OUTCOMES.items():
        have = [c in table.columns for c in (time_col, event_col)]
        if all(have):
            blank = (_blank(table[time_col]) | _blank(table[event_col])).to_numpy()
            keep = ~blank
            check_outcome(table.loc[keep, time_col], table.loc[keep, event_col],
                          list(table["patient_id"][keep]), time_col, event_col,
                          rows=np.flatnonzero(keep) + 1)
            missing[outcome] = blank
            if keep.any():
                outcomes.append(outcome)
            else:
                notes[outcome] = f"no patient has both {time_col} and {event_col}"
        elif any(have):
            absent = time_col if not have[0] else event_col
            raise ClinicalTableError(
                f"the table has {event_col if have[1] else time_col} but no {absent}; "
                "give both (months from surgery and 0/1 event)"
            )
        else:
            notes[outcome] = f"the table has no {time_col}/{event_col} columns"
    if not outcomes:
        raise ClinicalTableError(
            "the table has no survival data: give os_months/os_event and/or "
            "rfs_months/rfs_event, or surgery_date, last_followup_date, death_date and "
            "recurrence_date"
            + (f" ({'; '.join(notes.values())})" if notes else "")
        )
    return table, outcomes, notes, missing


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "group"


@dataclass
class SurvivalResult:
    """Everything :func:`analyse_survival` computes; :meth:`write` turns it into files,
    :meth:`read` reads them back (the report uses that).

    Attributes:
        doc: the content of ``survival.json`` (see the module docstring).
        displays: {analysis: KaplanMeierDisplay} (computed; drawn by :meth:`write`).
        curves: {analysis: Kaplan-Meier table} written as ``<analysis>.csv``.
    """

    doc: dict[str, Any]
    displays: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        return bool(self.doc.get("synthetic", False))

    def analysis(self, name: str) -> dict | None:
        """One analysis's entry (``os_by_mvi``, ...), or None when it could not be done."""
        return self.doc.get(name)

    def write(self, out_dir: str | Path) -> Path:
        """Write ``survival.json``, one figure and one CSV per analysis; returns the JSON's path."""
        out = Path(out_dir)
        for name, display in self.displays.items():
            display.plot()
            save_figure(display.figure_, out / self.doc[name]["figure"])
            write_csv(out / self.doc[name]["curve_csv"], self.curves[name])
        return write_json(out / SURVIVAL_JSON, self.doc)

    @classmethod
    def read(cls, out_dir: str | Path) -> "SurvivalResult":
        """The result written by :meth:`write` (no displays).

        Raises:
            StatisticsError: ``out_dir`` holds no survival.json.
        """
        path = Path(out_dir) / SURVIVAL_JSON
        if not path.is_file():
            raise StatisticsError(f"{Path(out_dir)}: no {SURVIVAL_JSON}; run `dlmvi survival`")
        return cls(doc=json.loads(path.read_text()))



def analyse_survival(
    table: pd.DataFrame | str | Path,
    predictions: pd.DataFrame | str | Path | None = None,
    groups: Sequence[str] = (),
    censor_date: str | date | None = None,
    synthetic: bool | None = None,
    rfs_death_is_event: bool = True,
    conf_level: float = 0.95,
    adjust_for: Sequence[str] | None = None,
    cutoffs: dict[str, float] | None = None,
    column_map=None,
) -> SurvivalResult:
    """Run every survival analysis (nothing is written; see :meth:`SurvivalResult.write`).

    Each analysis uses its complete cases (as R): a patient without a value in the grouping
    column, or without the outcome's time or event, is left out of that analysis only, and
    named in its ``excluded``/``left_out`` entries and notes.

    Args:
        table: clinical table (DataFrame or CSV path), one row per patient, with
            ``patient_id``, ``mvi_grade`` and survival durations or dates.
        predictions: ``predictions.csv`` of ``dlmvi predict`` (or a DataFrame) with
            ``patient_id`` and ``dl_mvi``; without it a ``dl_mvi`` column of ``table`` is used.
        groups: more grouping columns (0/1 or categorical).
        censor_date: administrative censoring date (YYYY-MM-DD) for tables with dates.
        synthetic: label outputs as synthetic; None = detect from ``cohort.json`` beside
            the table.
        rfs_death_is_event: with dates, count death without recurrence as an RFS event.
        conf_level: confidence level of every interval.
        adjust_for: covariates of the multivariable Cox models besides DL-MVI; None =
            :data:`ADJUST_FOR` where in the table (a requested column missing is an error).
        cutoffs: {column: cut-off} dichotomising covariates (default :data:`COX_CUTOFFS`).
        column_map: the hospital's column names and units (``--columns``) for a table path.
    """
    frame, synthetic = _survival_frame(table, groups, column_map, synthetic)
    frame, outcomes, outcome_notes, missing = prepare_outcomes(frame, censor_date, rfs_death_is_event)
    frame, groupings = _groupings(frame, predictions, groups)
    notes: dict[str, str] = {}
    result = _survival_header(synthetic, censor_date, conf_level)
    displays, curves = _grouped_analyses(frame, groupings, outcomes, outcome_notes, missing, conf_level,
                                         synthetic, result, notes)
    for outcome in OUTCOMES:
        name = f"multivariable_cox_{outcome}"
        if outcome not in outcomes:
            result[name] = None
            notes[name] = outcome_notes[outcome]
            continue
        try:
            result[name] = _multivariable(frame, outcome, adjust_for, cutoffs, conf_level)
        except (StatisticsError, ClinicalTableError) as exc:
            if isinstance(exc, ClinicalTableError) and adjust_for is not None:
                raise
            result[name] = None
            notes[name] = str(exc)

    for name, reason in notes.items():
        warnings.warn(f"{name}: {reason}", StatisticsWarning, stacklevel=2)
    result["notes"] = notes
    return SurvivalResult(doc=result, displays=displays, curves=curves)


def _survival_frame(table, groups: Sequence[str], column_map, synthetic: bool | None) -> tuple[pd.DataFrame, bool]:
    """The table (read from its path, or a copy of the DataFrame) with text patient ids, and
    the synthetic label (None: detected from ``cohort.json`` beside the table).

    Raises:
        ClinicalTableError: no ``patient_id`` column, or a patient listed twice.
    """
    table_path = None if isinstance(table, pd.DataFrame) else Path(table)
    if table_path is not None:
        frame = read_survival_table(table_path, columns=tuple(groups), column_map=column_map)
    else:
        frame = table.copy()
    if synthetic is None:
        synthetic = is_synthetic(table_path)

    if "patient_id" not in frame.columns:
        raise ClinicalTableError("the table has no patient_id column")
    frame["patient_id"] = frame["patient_id"].astype(str).str.strip()
    dup = frame["patient_id"].duplicated(keep=False)
    if dup.any():
        raise ClinicalTableError(
            "patients listed more than once: "
            f"{_ids_text(sorted(set(frame.loc[dup, 'patient_id'])))}; "
            "give one row per patient"
        )
    return frame, synthetic


def _groupings(frame: pd.DataFrame, predictions,
               groups: Sequence[str]) -> tuple[pd.DataFrame, list[Grouping | tuple[str, str]]]:
    """The groupings to analyse: pathological MVI, DL-MVI (or ``(key, why not)``) and each
    column of ``groups``; the frame has the predictions attached when they are given.

    Raises:
        StatisticsError: a ``groups`` column clashes with another analysis name.
    """
    groupings: list[Grouping | tuple[str, str]] = [mvi_grouping(frame)]
    if predictions is not None:
        frame = attach_predictions(frame, predictions)
        groupings.append(dl_grouping(frame))
    elif "dl_mvi" in frame.columns:
        groupings.append(dl_grouping(frame))
    else:
        groupings.append(("dl", "no DL-MVI predictions: give --predictions predictions.csv"))
    for column in groups:
        grouping = column_grouping(frame, column)
        if grouping.key in ("mvi", "dl") or any(
            isinstance(g, Grouping) and g.key == grouping.key for g in groupings[2:]
        ):
            raise StatisticsError(
                f"--group {column!r} clashes with another analysis name; rename the column"
            )
        groupings.append(grouping)
    return frame, groupings


def _survival_header(synthetic: bool, censor_date, conf_level: float) -> dict[str, Any]:
    """The first keys of ``survival.json``: labels, units, settings and methods."""
    result: dict[str, Any] = {"synthetic": bool(synthetic)}
    if synthetic:
        result["notice"] = SYNTHETIC_NOTICE
    result.update({
        "time_unit": "months",
        "days_per_month": DAYS_PER_MONTH,
        "censor_date": None if censor_date is None else str(pd.Timestamp(censor_date).date()),
        "conf_level": conf_level,
        "methods": (
            "Kaplan-Meier with log-transformed Greenwood confidence band (R survival "
            "conf.type='log'); median and its CI as R's print.survfit; log-rank test as "
            "R's survdiff; Cox proportional hazards with Efron ties, Wald CI and Wald p "
            "(summary(coxph) Pr(>|z|)), likelihood-ratio and score tests (summary(coxph)); "
            "Harrell's concordance with its infinitesimal-jackknife SE (concordance(coxph)); "
            "proportional-hazards score test per term and global (cox.zph, transform='km'); "
            "survival at 12, 36 and 60 months (summary(survfit, times)); median follow-up by "
            "reverse Kaplan-Meier; multivariable Cox of DL-MVI adjusted for the listed "
            "covariates on complete cases."
        ),
        "analyses": [],
    })
    return result


def _grouped_analyses(frame: pd.DataFrame, groupings: list[Grouping | tuple[str, str]], outcomes: list[str],
                      outcome_notes: dict[str, str], missing: dict, conf_level: float, synthetic: bool,
                      result: dict[str, Any], notes: dict[str, str]) -> tuple[dict, dict]:
    """Every outcome by every grouping: their entries (None where impossible, with the reason
    in ``notes``) are added to ``result``; returns the Kaplan-Meier displays and curve tables."""
    from dlmvi.stats.survival_plot import KaplanMeierDisplay

    ids = frame["patient_id"].tolist()
    displays, curves = {}, {}
    for grouping in groupings:
        for outcome in OUTCOMES:
            key = grouping.key if isinstance(grouping, Grouping) else grouping[0]
            name = f"{outcome}_by_{_safe_name(key)}"
            result["analyses"].append(name)
            if outcome not in outcomes:
                result[name] = None
                notes[name] = outcome_notes[outcome]
                continue
            if not isinstance(grouping, Grouping):
                result[name] = None
                notes[name] = grouping[1]
                continue
            entry = _one_analysis(frame, ids, outcome, grouping, conf_level, name, missing[outcome])
            if entry is None:
                result[name] = None
                notes[name] = f"no patient has a value in {grouping.column}"
                continue
            comparison, entry = entry
            displays[name] = KaplanMeierDisplay.from_comparison(
                comparison,
                title=f"{_OUTCOME_NAMES[outcome]} by {grouping.title}",
                notice=SYNTHETIC_NOTICE if synthetic else None,
                legend_title=grouping.title,
            )
            curve = comparison.curves()
            if synthetic:
                curve["synthetic"] = True
            curves[name] = curve
            entry["figure"] = f"{name}.png"
            entry["curve_csv"] = f"{name}.csv"
            result[name] = entry
    return displays, curves


def run_survival(table: pd.DataFrame | str | Path, out_dir: str | Path, predictions=None,
                 groups: Sequence[str] = (), censor_date: str | date | None = None,
                 synthetic: bool | None = None, rfs_death_is_event: bool = True,
                 conf_level: float = 0.95, adjust_for: Sequence[str] | None = None,
                 cutoffs: dict[str, float] | None = None, column_map=None) -> dict[str, Any]:
    """Run every survival analysis and write its outputs to ``out_dir``.

    Arguments as :func:`analyse_survival`; ``out_dir`` is the output folder, built aside and
    moved into place at the end (an earlier output there is replaced; a failure leaves
    nothing). ``skipped.csv`` lists the patients left out of each analysis and why.

    Returns:
        The content written to ``survival.json``.
    """
    from dlmvi.io.atomic import atomic_dir
    from dlmvi.io.skipped import SKIPPED_CSV

    result = analyse_survival(table, predictions, groups, censor_date, synthetic, rfs_death_is_event, conf_level,
                              adjust_for, cutoffs, column_map=column_map)
    skipped = left_out(result.doc)
    result.doc["skipped"] = {"n": len(skipped.ids), "file": SKIPPED_CSV}
    with atomic_dir(out_dir, marker=SURVIVAL_JSON) as tmp:  # a failure leaves nothing
        result.write(tmp)
        skipped.write(tmp / SKIPPED_CSV)
    skipped.warn(StatisticsWarning, Path(out_dir) / SKIPPED_CSV)
    return result.doc


def left_out(doc: dict):
    """Every patient left out of some analysis of ``survival.json``, with the analysis and why."""
    from dlmvi.io.skipped import Skipped

    skipped = Skipped("some survival analyses (complete cases per analysis)")
    for name in doc.get("analyses", []):
        for row in (doc.get(name) or {}).get("left_out", []):
            skipped.add(row["patient_id"], row["reason"], analysis=name)
    for outcome in OUTCOMES:
        name = f"multivariable_cox_{outcome}"
        for pid in (doc.get(name) or {}).get("excluded", []):
            skipped.add(pid, "incomplete covariates, time or event (complete cases)", analysis=name)
    return skipped


def _multivariable(frame: pd.DataFrame, outcome: str, adjust_for: Sequence[str] | None,
                   cutoffs: dict[str, float] | None, conf_level: float) -> dict[str, Any]:
    """Cox model of DL-MVI adjusted for the other covariates (see ``multivariable_cox_*``)."""
    from dlmvi.stats.cox import multivariable_cox

    if "dl_mvi" not in frame.columns:
        raise StatisticsError("no DL-MVI predictions: give --predictions predictions.csv")
    cut = COX_CUTOFFS if cutoffs is None else dict(cutoffs)
    if adjust_for is None:
        columns = [c for c in ADJUST_FOR if c in frame.columns]
    else:
        columns = [str(c) for c in adjust_for]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ClinicalTableError(f"covariates {missing} of the multivariable Cox model are not "
                                     f"columns of the table; add them or change adjust_for")
    time_col, event_col = OUTCOMES[outcome]
    covariates: dict[str, pd.Series] = {}
    described: dict[str, str] = {}
    missing_counts: dict[str, int] = {}
    for col in ["dl_mvi", *columns]:
        blank = _blank(frame[col])
        values = pd.to_numeric(frame[col].where(~blank), errors="coerce")
        bad = (~blank & values.isna()).to_numpy()
        if bad.any():
            raise ClinicalTableError(f"{col} is not a number for {_rows_text(frame, bad)}")
        missing_counts[col] = int(values.isna().sum())
        if col in cut:
            term = f"{col} > {cut[col]:g}"
            covariates[term] = values.gt(cut[col]).astype(float).where(values.notna())
            described[term] = f"{col} > {cut[col]:g} (0/1)"
        else:
            covariates[col] = values
            described[col] = ("DL-MVI predicted present (0/1)" if col == "dl_mvi" else
                              f"{col} ({'0/1' if set(values.dropna().unique()) <= {0.0, 1.0} else 'per unit'})")
    res = multivariable_cox(frame, time_col, event_col, covariates, conf_level=conf_level)
    if res["excluded"]:
        warnings.warn(f"multivariable_cox_{outcome}: {len(res['excluded'])} patients without complete "
                      f"covariates left out: {_ids_text(res['excluded'])}", StatisticsWarning, stacklevel=3)
    return {"outcome": outcome, "outcome_name": _OUTCOME_NAMES[outcome], "time_column": time_col,
            "event_column": event_col, "covariates": described,
            "missing": {k: v for k, v in missing_counts.items() if v}, **res}


def _one_analysis(
    frame: pd.DataFrame,
    ids: list[str],
    outcome: str,
    grouping: Grouping,
    conf_level: float,
    name: str,
    missing: np.ndarray | None = None,
) -> tuple[SurvivalComparison, dict[str, Any]] | None:
    """Compare one outcome between the groups of one grouping, on the complete cases (a
    value in the grouping column, a time and an event); None if nobody is grouped."""
    time_col, event_col = OUTCOMES[outcome]
    grouped = grouping.labels.notna().to_numpy()
    complete = np.ones(len(frame), bool) if missing is None else ~np.asarray(missing, bool)
    keep = grouped & complete
    if not keep.any():
        return None
    no_group = [ids[i] for i in np.flatnonzero(~grouped)]
    no_outcome = [ids[i] for i in np.flatnonzero(grouped & ~complete)]
    excluded = [ids[i] for i in np.flatnonzero(~keep)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StatisticsWarning)
        comparison = compare_survival(
            frame.loc[keep, time_col],
            frame.loc[keep, event_col],
            grouping.labels[keep],
            levels=grouping.levels,
            ids=[ids[i] for i in np.flatnonzero(keep)],
            conf_level=conf_level,
            time_column=time_col,
            event_column=event_col,
            rows=np.flatnonzero(keep) + 1,
        )
    for item in caught:
        warnings.warn(f"{name}: {item.message}", StatisticsWarning, stacklevel=4)
    notes = []
    if no_group:
        notes.append(f"{len(no_group)} patients without a value in {grouping.column} left out: "
                     f"{_ids_text(no_group)}")
    if no_outcome:
        notes.append(f"{len(no_outcome)} patients without {time_col} or {event_col} left out "
                     f"(complete cases): {_ids_text(no_outcome)}")
    for note in notes:
        comparison.notes.append(note)
        warnings.warn(f"{name}: {note}", StatisticsWarning, stacklevel=4)
    entry = {
        "outcome": outcome,
        "outcome_name": _OUTCOME_NAMES[outcome],
        "time_column": time_col,
        "event_column": event_col,
        "group_column": grouping.column,
        "group_definition": grouping.definition,
        "excluded": excluded,
        "left_out": ([{"patient_id": p, "reason": f"no value in {grouping.column}"} for p in no_group]
                     + [{"patient_id": p, "reason": f"no {time_col} or {event_col}"} for p in no_outcome]),
        **comparison.to_dict(),
    }
    return comparison, entry
