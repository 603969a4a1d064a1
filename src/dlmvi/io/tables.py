"""Reading the clinical table (``clinical.csv``) and the ROI boxes table (``rois.csv``).

Value policy for laboratory and numeric columns (documented in the README):

* decimal commas are accepted: ``"12,3"`` -> 12.3 (a value with both "," and "." is refused);
* censored lab values are replaced by their limit with a warning: ``"<0.5"`` -> 0.5,
  ``">1000"`` -> 1000 (the detection limit is the best point value available);
* empty cells, ``NA``, ``NaN``, ``.`` and ``-`` are missing;
* anything else that is not a number is an error naming the patient and column.

A column map (TOML) lets a hospital keep its own names and units::

    [columns]            # your name = dlmvi name
    "AFP (IU/ml)" = "afp"
    ID = "patient_id"

    [units]              # dlmvi column = the unit your values are in
    afp = "IU/mL"        # converted with UNIT_FACTORS; an unknown unit is refused
"""

from __future__ import annotations

import re
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.constants import CLINICAL_COLUMNS, GRADES, REQUIRED_COLUMNS
from dlmvi.errors import ClinicalTableError, CohortWarning, ConfigError

#: (column, unit) -> factor to dlmvi's unit. Unit strings are compared case-insensitively.
UNIT_FACTORS: dict[tuple[str, str], float] = {
    ("afp", "ng/ml"): 1.0,
    ("afp", "iu/ml"): 1.21,  # 1 IU/mL of AFP = 1.21 ng/mL (WHO 72/225)
    ("afp", "ug/l"): 1.0,
    ("alt", "u/l"): 1.0,
    ("alt", "ukat/l"): 60.0,  # 1 ukat/L = 60 U/L
    ("ast", "u/l"): 1.0,
    ("ast", "ukat/l"): 60.0,
    ("ggt", "u/l"): 1.0,
    ("ggt", "ukat/l"): 60.0,
    ("tb", "umol/l"): 1.0,
    ("tb", "mg/dl"): 17.104,
    ("cb", "umol/l"): 1.0,
    ("cb", "mg/dl"): 17.104,
    ("alb", "g/l"): 1.0,
    ("alb", "g/dl"): 10.0,
    ("plt", "10^9/l"): 1.0,
    ("plt", "10^3/ul"): 1.0,
    ("pt", "s"): 1.0,
    ("tumor_size_cm", "cm"): 1.0,
    ("tumor_size_cm", "mm"): 0.1,
}

BINARY = ("sex", "ascites", "hepatitis", "cirrhosis", "capsule", "edmondson", "rfs_event", "os_event")
MISSING_TOKENS = {"", "na", "n/a", "nan", "none", "null", ".", "-", "?"}
_NUM = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class ColumnMap:
    """A hospital's column names and units mapped onto dlmvi's (see module docstring)."""

    columns: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    id_width: int | None = None  # zero-pad numeric patient IDs to this width ("7" -> "007")

    @classmethod
    def from_toml(cls, path: str | Path) -> "ColumnMap":
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the column map ({exc})") from None
        cm = cls(
            columns=dict(data.get("columns", {})),
            units={k: str(v) for k, v in data.get("units", {}).items()},
            id_width=data.get("id_width"),
        )
        for col, unit in cm.units.items():
            if (col, unit.lower()) not in UNIT_FACTORS:
                known = sorted(u for c, u in UNIT_FACTORS if c == col)
                raise ConfigError(
                    f"{path}: unit {unit!r} for column {col!r} is not known to dlmvi "
                    f"(known: {', '.join(known) or 'none'}); convert the values yourself "
                    "or use a known unit"
                )
        return cm


def parse_number(raw: str) -> tuple[float, str | None]:
    """Parse one cell by the value policy. Returns (value, note) or raises ValueError."""
    s = str(raw).strip()
    if s.lower() in MISSING_TOKENS:
        return np.nan, None
    note = None
    if s[:1] in "<>" or s[:2] in ("<=", ">="):
        s = s.lstrip("<>=").strip()
        note = f"censored value {raw!r} replaced by its limit"
    if "," in s:
        if "." in s or s.count(",") > 1:
            raise ValueError(f"ambiguous number {raw!r}")
        s = s.replace(",", ".")
    if not _NUM.match(s):
        raise ValueError(f"not a number: {raw!r}")
    return float(s), note


@dataclass
class ClinicalTable:
    """The parsed clinical table plus the problems found while parsing.

    Attributes:
        frame: one row per patient, ``patient_id`` as index-able string column; numeric
            columns as float (NaN = missing); ``mvi_grade`` normalised to M0/M1/M2.
        path: source file.
        problems: (level, patient_id, column, message) tuples; level is "error" or "warning".
    """

    frame: pd.DataFrame
    path: Path
    problems: list[tuple[str, str, str, str]]

    @property
    def errors(self):
        return [p for p in self.problems if p[0] == "error"]


def read_clinical(path: str | Path, column_map: ColumnMap | None = None, strict: bool = False) -> ClinicalTable:
    """Read ``clinical.csv`` applying the value policy and the column map.

    Args:
        path: the CSV file (comma- or semicolon-separated, UTF-8).
        column_map: hospital column names/units; none by default.
        strict: raise the first error instead of collecting problems.

    Returns:
        ClinicalTable; rows with errors are kept (their bad cells NaN) and listed in
        ``problems`` so that ``dlmvi validate`` can report everything at once.

    Raises:
        ClinicalTableError: unreadable file or missing required columns (always), any other
            problem when ``strict``.
    """
    path = Path(path)
    column_map = column_map or ColumnMap()
    if not path.is_file():
        raise ClinicalTableError(f"{path} does not exist; every cohort needs a clinical.csv")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, sep=None, engine="python", encoding="utf-8-sig")
    except Exception as exc:
        raise ClinicalTableError(f"{path}: cannot parse the table ({exc})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    raw = raw.rename(columns=column_map.columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise ClinicalTableError(
            f"{path}: missing required column(s) {', '.join(missing)}; the table needs "
            f"{', '.join(REQUIRED_COLUMNS)} (map your own names with a column map, --columns)"
        )
    problems: list[tuple[str, str, str, str]] = []

    def problem(level, pid, col, msg):
        if strict and level == "error":
            raise ClinicalTableError(f"{path}: patient {pid}, column {col}: {msg}")
        problems.append((level, pid, col, msg))

    df = raw.copy()
    df["patient_id"] = df["patient_id"].str.strip()
    if column_map.id_width:
        df["patient_id"] = [p.zfill(column_map.id_width) if p.isdigit() else p for p in df["patient_id"]]
    df["cohort"] = df["cohort"].str.strip()
    for i, pid in enumerate(df["patient_id"]):
        if not pid:
            problem("error", f"row {i + 2}", "patient_id", "empty patient_id")
    dup = df["patient_id"][df["patient_id"].duplicated(keep=False) & (df["patient_id"] != "")]
    for pid in sorted(set(dup)):
        rows = [str(i + 2) for i in np.flatnonzero(df["patient_id"] == pid)]
        problem("error", pid, "patient_id", f"duplicate patient_id (rows {', '.join(rows)}); keep one row per patient")

    grades = []
    for pid, g in zip(df["patient_id"], df["mvi_grade"]):
        s = str(g).strip().upper()
        s = {"0": "M0", "1": "M1", "2": "M2"}.get(s, s)
        if s not in GRADES:
            problem("error", pid, "mvi_grade", f"invalid mvi_grade {g!r}; use M0, M1 or M2")
            s = ""
        grades.append(s)
    df["mvi_grade"] = grades

    for col in df.columns:
        if col not in CLINICAL_COLUMNS:
            continue
        values = np.full(len(df), np.nan)
        for i, (pid, cell) in enumerate(zip(df["patient_id"], df[col])):
            try:
                v, note = parse_number(cell)
            except ValueError as exc:
                problem("error", pid, col, f"{exc}; write a plain number (e.g. 12.3) or leave it empty")
                continue
            if note:
                problem("warning", pid, col, note)
            values[i] = v
        unit = column_map.units.get(col)
        if unit:
            values = values * UNIT_FACTORS[(col, unit.lower())]
        df[col] = values
        if col in BINARY:
            bad = ~np.isnan(values) & ~np.isin(values, (0.0, 1.0))
            for i in np.flatnonzero(bad):
                problem("error", df["patient_id"].iat[i], col, f"value {values[i]:g} is not 0 or 1")
        if col.endswith("_months"):
            for i in np.flatnonzero(values < 0):
                problem("error", df["patient_id"].iat[i], col, f"negative follow-up {values[i]:g} months")
        elif col in CLINICAL_COLUMNS and CLINICAL_COLUMNS[col] not in ("0/1",) and col not in BINARY:
            for i in np.flatnonzero(values < 0):
                problem("error", df["patient_id"].iat[i], col, f"negative value {values[i]:g}")
    for level, pid, col, msg in problems:
        if level == "warning":
            warnings.warn(f"{path}: patient {pid}, {col}: {msg}", CohortWarning, stacklevel=2)
    return ClinicalTable(frame=df, path=path, problems=problems)


ROI_COLUMNS = ("patient_id", "sequence", "slice", "x0", "y0", "x1", "y1")


def read_rois(path: str | Path) -> pd.DataFrame:
    """Read ``rois.csv``: radiologist-drawn boxes on key slices.

    Columns ``patient_id, sequence, slice, x0, y0, x1, y1``: voxel indices (0-based) in the
    image file's own grid, as a viewer shows them; ``x1``/``y1`` inclusive. One row per
    boxed slice (the study boxed 3 consecutive key slices).
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"patient_id": str, "sequence": str})
    except Exception as exc:
        raise ClinicalTableError(f"{path}: cannot parse the ROI table ({exc})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in ROI_COLUMNS if c not in df.columns]
    if missing:
        raise ClinicalTableError(f"{path}: missing column(s) {', '.join(missing)}; need {', '.join(ROI_COLUMNS)}")
    for c in ROI_COLUMNS[2:]:
        bad = pd.to_numeric(df[c], errors="coerce").isna()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ClinicalTableError(
                f"{path}: row {i + 2} (patient {df['patient_id'].iat[i]}): {c} is not an integer"
            )
        df[c] = pd.to_numeric(df[c]).astype(int)
    df["patient_id"] = df["patient_id"].str.strip()
    df["sequence"] = df["sequence"].str.strip()
    return df
