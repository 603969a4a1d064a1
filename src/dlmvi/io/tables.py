"""Reading the clinical table (``clinical.csv``) and the ROI boxes table (``rois.csv``).

Value policy for laboratory and numeric columns (documented in the README):

* decimal commas are accepted: ``"12,3"`` -> 12.3 (a value with both "," and "." is refused);
* censored lab values are replaced by their limit with a warning: ``"<0.5"`` -> 0.5,
  ``">1000"`` -> 1000 (the detection limit is the best point value available);
* empty cells, ``NA``, ``NaN``, ``.`` and ``-`` are missing;
* anything else that is not a number is an error naming the patient and column.

Text: UTF-8 with or without a byte-order mark, or UTF-16 with one (Excel's "Unicode text");
any other encoding is refused with the row where it stops being UTF-8 ("save as UTF-8").
Separator: comma, semicolon (European Excel) or tab, taken from the header line. Rows whose
cells are all empty (Excel's trailing rows) are ignored. Row numbers in messages are the
spreadsheet's (the header is row 1).

``mvi_grade`` may be absent or empty: such patients are *unlabelled* (prospective patients
before surgery); they are prepared and predicted, and left out, with a note, of training,
evaluation and the statistics.

A column map (TOML) lets a hospital keep its own names and units::

    [columns]            # your name = dlmvi name
    "AFP (IU/ml)" = "afp"
    ID = "patient_id"

    [units]              # dlmvi column = the unit your values are in
    afp = "IU/mL"        # converted with UNIT_FACTORS; an unknown unit is refused
"""

from __future__ import annotations

import codecs
import io
import re
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.constants import CLINICAL_COLUMNS, DL_THRESHOLD, GRADES, IN_SAMPLE
from dlmvi.errors import ClinicalTableError, CohortWarning, ConfigError, PredictionsTableError

#: Columns every clinical.csv must have (``mvi_grade`` may be absent: prospective patients).
TABLE_REQUIRED: tuple[str, ...] = ("patient_id", "cohort")

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


def decode_table(path: str | Path, error=ClinicalTableError) -> str:
    """The text of a CSV table: UTF-8 (with or without BOM) or UTF-16 with a BOM.

    Raises:
        ``error``: unreadable file, or another encoding (naming the row where the text stops
            being UTF-8, and the fix).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the table ({exc.strerror or exc})") from None
    fix = ("save the table as UTF-8 (Excel: Save As > 'CSV UTF-8 (Comma delimited)'; "
           "LibreOffice: Character set 'Unicode (UTF-8)')")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            row = data[: exc.start].decode("utf-16", errors="replace").count("\n") + 1
            raise error(f"{path}: row {row} is not valid UTF-16 text; {fix}") from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if b"\x00" in data:
        row = data[: data.index(b"\x00")].count(b"\n") + 1
        raise error(f"{path}: row {row} holds NUL bytes (UTF-16 without a byte-order mark, or not a "
                    f"text table); {fix}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        row = data[: exc.start].count(b"\n") + 1
        raise error(f"{path}: row {row} is not UTF-8 text (byte 0x{data[exc.start]:02x}; Latin-1 or "
                    f"Windows-1252?); {fix}") from None


def _separator(text: str) -> str:
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {sep: header.count(sep) for sep in (";", "\t", ",")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def read_text_table(path: str | Path, error=ClinicalTableError) -> tuple[pd.DataFrame, list[int]]:
    """Read a CSV table as text cells (nothing converted), the way every dlmvi table is read.

    Returns:
        ``(frame, rows)``: the cells as stripped strings (missing = ``""``), without the rows
        whose cells are all empty, and the spreadsheet row number of each kept row.
    """
    path = Path(path)
    text = decode_table(path, error)
    if not text.strip():
        raise error(f"{path}: the table is empty; it needs a header row and one row per patient")
    try:
        raw = pd.read_csv(io.StringIO(text), sep=_separator(text), dtype=str, keep_default_na=False,
                          skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise error(f"{path}: cannot parse the table ({str(exc).strip()}); check the separator and "
                    "the quotes in that row") from None
    raw = raw.fillna("")
    raw.columns = [str(c).strip() for c in raw.columns]
    for col in raw.columns:
        raw[col] = raw[col].astype(str).str.strip()
    unnamed = [c for c in raw.columns if (not c or c.startswith("Unnamed: ")) and not raw[c].astype(bool).any()]
    raw = raw.drop(columns=unnamed)  # Excel's empty trailing columns
    rows = np.arange(len(raw)) + 2
    blank = ~raw.astype(bool).any(axis=1).to_numpy() if raw.shape[1] else np.ones(len(raw), bool)
    raw = raw.loc[~blank].reset_index(drop=True)
    return raw, [int(r) for r in rows[~blank]]


@dataclass
class ClinicalTable:
    """The parsed clinical table plus the problems found while parsing.

    Attributes:
        frame: one row per patient, ``patient_id`` as index-able string column; numeric
            columns as float (NaN = missing); ``mvi_grade`` normalised to M0/M1/M2, ``""``
            for an unlabelled patient.
        path: source file.
        problems: (level, patient_id, column, message) tuples; level is "error" or "warning";
            messages name the spreadsheet row.
        rows: spreadsheet row number of each row of ``frame``.
    """

    frame: pd.DataFrame
    path: Path
    problems: list[tuple[str, str, str, str]]
    rows: list[int] = field(default_factory=list)

    @property
    def errors(self):
        return [p for p in self.problems if p[0] == "error"]

    @property
    def unlabelled_ids(self) -> list[str]:
        """Patients without an MVI grade (prospective patients; not those with an invalid one)."""
        invalid = {pid for level, pid, col, _ in self.problems if level == "error" and col == "mvi_grade"}
        return [p for p, g in zip(self.frame["patient_id"], self.frame["mvi_grade"]) if p and not g and p not in invalid]

    def check(self, columns=None) -> "ClinicalTable":
        """Raise the errors found while parsing (those of ``columns`` only, when given).

        Raises:
            ClinicalTableError: one message naming file, patient, column and row of every
                error (the first 10, and how many more).
        """
        wanted = None if columns is None else {"patient_id", *columns}
        errors = [f"patient {pid}, {col}: {msg}" for level, pid, col, msg in self.problems
                  if level == "error" and (wanted is None or col in wanted)]
        if errors:
            more = f"; and {len(errors) - 10} more (run `dlmvi validate` for the list)" if len(errors) > 10 else ""
            raise ClinicalTableError(f"{self.path}: " + "; ".join(errors[:10]) + more)
        return self


def read_clinical(path: str | Path, column_map: ColumnMap | None = None, strict: bool = False,
                  numeric=()) -> ClinicalTable:
    """Read ``clinical.csv`` applying the value policy and the column map.

    This is the one reader of the clinical table: ``validate``, ``prepare``, ``predict``,
    ``clinical``, ``survival`` and ``study`` all read it here.

    Args:
        path: the CSV file (comma-, semicolon- or tab-separated; UTF-8 or UTF-16 with BOM).
        column_map: hospital column names/units; none by default.
        strict: raise the first error instead of collecting problems.
        numeric: further columns (besides the standard ones) to read as numbers by the value
            policy, e.g. the variables an analysis is configured with.

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
    raw, rows = read_text_table(path)
    raw = raw.rename(columns=column_map.columns)
    _check_clinical_columns(path, raw)
    problems: list[tuple[str, str, str, str]] = []

    def problem(level, pid, col, msg):
        if strict and level == "error":
            raise ClinicalTableError(f"{path}: patient {pid}, column {col}: {msg}")
        problems.append((level, pid, col, msg))

    df = raw.copy()
    if "mvi_grade" not in df.columns:
        df["mvi_grade"] = ""  # prospective cohort: no outcome yet
    if column_map.id_width:
        df["patient_id"] = [p.zfill(column_map.id_width) if p.isdigit() else p for p in df["patient_id"]]
    _check_patient_ids(df, rows, problem)
    df["mvi_grade"] = _read_grades(df, rows, problem)

    numeric = set(numeric)
    for col in df.columns:
        if col not in CLINICAL_COLUMNS and col not in numeric:
            continue
        df[col] = _read_numbers(df, col, rows, column_map.units.get(col), problem)
    for level, pid, col, msg in problems:
        if level == "warning":
            warnings.warn(f"{path}: patient {pid}, {col}: {msg}", CohortWarning, stacklevel=2)
    return ClinicalTable(frame=df, path=path, problems=problems, rows=rows)


def _check_clinical_columns(path: Path, raw: pd.DataFrame) -> None:
    """Raise for a required column missing or a column named twice (after the column map)."""
    missing = [c for c in TABLE_REQUIRED if c not in raw.columns]
    if missing:
        raise ClinicalTableError(
            f"{path}: missing required column(s) {', '.join(missing)}; the table needs "
            f"{', '.join(TABLE_REQUIRED)} and, for patients with a known outcome, mvi_grade "
            f"(it has {', '.join(map(str, raw.columns))}; map your own names with a column map, --columns)"
        )
    dup_cols = sorted({c for c in raw.columns if list(raw.columns).count(c) > 1})
    if dup_cols:
        raise ClinicalTableError(f"{path}: column(s) {', '.join(dup_cols)} appear twice (after the column map); "
                                 "keep one of each")


def _check_patient_ids(df: pd.DataFrame, rows: list[int], problem) -> None:
    """Report empty and repeated patient ids to ``problem(level, patient, column, message)``."""
    for i, pid in enumerate(df["patient_id"]):
        if not pid:
            problem("error", f"row {rows[i]}", "patient_id", f"empty patient_id (row {rows[i]})")
    dup = df["patient_id"][df["patient_id"].duplicated(keep=False) & (df["patient_id"] != "")]
    for pid in sorted(set(dup)):
        where = [str(rows[i]) for i in np.flatnonzero(df["patient_id"] == pid)]
        problem("error", pid, "patient_id", f"duplicate patient_id (rows {', '.join(where)}); keep one row per patient")


def _read_grades(df: pd.DataFrame, rows: list[int], problem) -> list[str]:
    """``mvi_grade`` normalised to M0/M1/M2 (``""`` when unlabelled or invalid; invalid grades
    reported to ``problem``)."""
    grades = []
    for i, (pid, g) in enumerate(zip(df["patient_id"], df["mvi_grade"])):
        s = str(g).strip().upper()
        s = {"0": "M0", "1": "M1", "2": "M2"}.get(s, s)
        if s.lower() in MISSING_TOKENS:
            s = ""  # unlabelled (prospective) patient
        elif s not in GRADES:
            problem("error", pid, "mvi_grade", f"invalid mvi_grade {g!r} (row {rows[i]}); use M0, M1 or M2 "
                    "(or 0, 1, 2), or leave it empty for a patient without a pathology result")
            s = ""
        grades.append(s)
    return grades


def _read_numbers(df: pd.DataFrame, col: str, rows: list[int], unit: str | None, problem) -> np.ndarray:
    """One column by the value policy, in dlmvi's units (NaN where empty or unreadable);
    unreadable cells, values not 0/1 in a binary column and negative values are reported to
    ``problem``."""
    values = np.full(len(df), np.nan)
    for i, (pid, cell) in enumerate(zip(df["patient_id"], df[col])):
        try:
            v, note = parse_number(cell)
        except ValueError as exc:
            problem("error", pid, col, f"{exc} (row {rows[i]}); write a plain number (e.g. 12.3) or leave it empty")
            continue
        if note:
            problem("warning", pid, col, f"{note} (row {rows[i]})")
        values[i] = v
    if unit:
        values = values * UNIT_FACTORS[(col, unit.lower())]
    if col in BINARY:
        bad = ~np.isnan(values) & ~np.isin(values, (0.0, 1.0))
        for i in np.flatnonzero(bad):
            problem("error", df["patient_id"].iat[i], col, f"value {values[i]:g} is not 0 or 1 (row {rows[i]})")
    if col.endswith("_months"):
        for i in np.flatnonzero(values < 0):
            problem("error", df["patient_id"].iat[i], col, f"negative follow-up {values[i]:g} months (row {rows[i]})")
    elif col in CLINICAL_COLUMNS and CLINICAL_COLUMNS[col] not in ("0/1",) and col not in BINARY:
        for i in np.flatnonzero(values < 0):
            problem("error", df["patient_id"].iat[i], col, f"negative value {values[i]:g} (row {rows[i]})")
    return values


#: Numeric columns of a predictions table (``dlmvi predict``'s output, or your own).
PREDICTION_NUMBERS = ("label", "dl_prob", "dl_mvi", "p_M0", "p_M1", "p_M2", "fold",
                      "nomogram_risk", "nomogram_ci_low", "nomogram_ci_high")


def prediction_threshold(csv_path) -> float:
    """The DL-MVI threshold a predictions file's ``dl_mvi`` was made at: the ``threshold`` its
    JSON description (``NAME.json`` beside ``NAME.csv``, written by ``dlmvi predict``) records,
    else the study's :data:`~dlmvi.constants.DL_THRESHOLD` (0.5), with a warning saying so."""
    import json

    side = Path(csv_path).with_name(Path(csv_path).stem + ".json")
    try:
        value = json.loads(side.read_text()).get("threshold") if side.is_file() else None
    except (json.JSONDecodeError, AttributeError, OSError):
        value = None
    if isinstance(value, (int, float)) and 0 < value < 1:
        return float(value)
    warnings.warn(f"{csv_path}: no threshold recorded beside it ({side.name}); its dl_mvi column is read as the "
                  f"decision at the study's threshold {DL_THRESHOLD}", CohortWarning, stacklevel=2)
    return DL_THRESHOLD


def read_predictions(source, threshold: float = DL_THRESHOLD) -> pd.DataFrame:
    """Read a predictions table (``patient_id`` plus ``dl_prob`` and/or ``dl_mvi``): the one
    reader of ``predictions.csv`` used by ``evaluate``, ``clinical``, ``survival`` and ``study``.

    Args:
        source: the CSV (read as clinical.csv is: UTF-8/UTF-16, ``,``/``;``, decimal commas)
            or a DataFrame.
        threshold: ``dl_mvi`` = ``dl_prob >= threshold`` when the table has no ``dl_mvi``.

    Returns:
        The table with ``patient_id``/``cohort``/``mvi_grade`` as text and the
        :data:`PREDICTION_NUMBERS` columns as numbers; ``dl_mvi`` always present.

    Raises:
        PredictionsTableError: naming the file, column, row and patient: no ``patient_id``,
            neither ``dl_prob`` nor ``dl_mvi``, ``dl_prob`` outside 0-1 (percentages?),
            ``dl_mvi`` not 0/1, a repeated patient.
    """
    name, df, rows = _predictions_source(source)
    df.columns = [str(c).strip() for c in df.columns]
    if "patient_id" not in df.columns:
        raise PredictionsTableError(f"{name}: no patient_id column (it has {', '.join(map(str, df.columns))}); "
                                    "use the predictions.csv written by `dlmvi predict`")
    if "dl_prob" not in df.columns and "dl_mvi" not in df.columns:
        raise PredictionsTableError(f"{name}: needs a dl_prob (probability of MVI, 0-1) or dl_mvi (0/1) column; "
                                    f"it has {', '.join(map(str, df.columns))}")
    df["patient_id"] = df["patient_id"].astype(str).str.strip()
    for col in ("cohort", "mvi_grade"):
        if col in df.columns:
            df[col] = df[col].fillna("").astype(str).str.strip()
    if "mvi_grade" in df.columns:
        df["mvi_grade"] = df["mvi_grade"].where(~df["mvi_grade"].str.lower().isin(MISSING_TOKENS), "")

    def who(mask) -> str:
        idx = np.flatnonzero(mask)
        shown = ", ".join(f"row {rows[i]} (patient {df['patient_id'].iat[i]})" for i in idx[:5])
        return shown + (f" and {len(idx) - 5} more" if len(idx) > 5 else "")

    for col in PREDICTION_NUMBERS:
        if col in df.columns:
            df[col] = _prediction_numbers(df[col], col, name, who)
    _check_prediction_values(df, name, who)
    if "dl_mvi" not in df.columns:
        df["dl_mvi"] = (df["dl_prob"].to_numpy() >= threshold).astype(float)
    keys = ["patient_id"] + (["cohort"] if "cohort" in df.columns else [])
    dup = df.duplicated(subset=keys, keep=False).to_numpy()
    if dup.any():
        raise PredictionsTableError(f"{name}: patients listed more than once: {who(dup)}; give one prediction "
                                    "per patient (e.g. the out-of-fold predictions)")
    if "source" in df.columns:  # a model's predictions of its own training patients are no evidence
        df = _drop_in_sample(df, name, who)
    return df


def _predictions_source(source) -> tuple[str, pd.DataFrame, list[int]]:
    """``(name for messages, the table as read, spreadsheet row of each row)``."""
    if isinstance(source, pd.DataFrame):
        name = "the predictions table"
        df = source.copy()
        rows = list(range(2, len(df) + 2))
        df = df.reset_index(drop=True)
    else:
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise PredictionsTableError(
                f"{path}: no such predictions table; write one with `dlmvi predict RUN DATA --out {path}`")
        df, rows = read_text_table(path, PredictionsTableError)
    return name, df, rows


def _prediction_numbers(cells: pd.Series, col: str, name: str, who) -> np.ndarray:
    """One numeric column of a predictions table (decimal commas read).

    Raises:
        PredictionsTableError: a cell is not a number (``who(mask)`` names the rows).
    """
    if pd.api.types.is_numeric_dtype(cells):
        return pd.to_numeric(cells, errors="coerce").astype(float).to_numpy()
    values = np.full(len(cells), np.nan)
    bad = np.zeros(len(cells), bool)
    for i, cell in enumerate(cells):
        try:
            values[i] = parse_number(cell)[0]
        except ValueError:
            bad[i] = True
    if bad.any():
        raise PredictionsTableError(f"{name}: column {col} is not a number in {who(bad)}; "
                                    "write plain numbers")
    return values


def _check_prediction_values(df: pd.DataFrame, name: str, who) -> None:
    """Raise for ``dl_prob`` empty or outside 0-1, ``dl_mvi`` not 0/1 or ``label`` not 0/1/empty."""
    if "dl_prob" in df.columns:
        p = df["dl_prob"].to_numpy(dtype=float)
        if np.isnan(p).any():
            raise PredictionsTableError(f"{name}: column dl_prob is empty in {who(np.isnan(p))}; give every "
                                        "patient a probability or remove the row")
        out = (p < 0) | (p > 1)
        if out.any():
            pct = " (these look like percentages: divide by 100)" if np.nanmax(p) <= 100 else ""
            raise PredictionsTableError(
                f"{name}: column dl_prob must be a probability between 0 and 1 but ranges "
                f"{np.nanmin(p):g} to {np.nanmax(p):g}{pct}; first values outside: {who(out)}")
    if "dl_mvi" in df.columns:
        m = df["dl_mvi"].to_numpy(dtype=float)
        bad = ~np.isin(m, (0.0, 1.0))
        if bad.any():
            raise PredictionsTableError(f"{name}: column dl_mvi must be 0 (MVI predicted absent) or 1 "
                                        f"(present) but is not in {who(bad)}")
    if "label" in df.columns:
        lab = df["label"].to_numpy(dtype=float)
        bad = ~np.isnan(lab) & ~np.isin(lab, (0.0, 1.0))
        if bad.any():
            raise PredictionsTableError(f"{name}: column label must be 0/1 (MVI absent/present) or empty, "
                                        f"but is not in {who(bad)}")


def _drop_in_sample(df: pd.DataFrame, name: str, who) -> pd.DataFrame:
    """The predictions without the in-sample ones (``source`` ending in
    :data:`~dlmvi.constants.IN_SAMPLE`), with a warning.

    Raises:
        PredictionsTableError: every prediction is in-sample.
    """
    in_sample = df["source"].fillna("").astype(str).str.endswith(IN_SAMPLE).to_numpy()
    if in_sample.all():
        raise PredictionsTableError(
            f"{name}: every prediction is in-sample (the model scoring its own training patients); no figure can "
            "come from them. Evaluate the out-of-fold predictions (the study's predictions.csv, a training run's "
            "cv_predictions.csv) or patients the model was not trained on")
    if in_sample.any():
        warnings.warn(f"{name}: {int(in_sample.sum())} in-sample prediction(s) (the model scoring its own training "
                      f"patients: {who(in_sample)}) left out; their figures would be optimistic",
                      CohortWarning, stacklevel=3)
        df = df.loc[~in_sample].reset_index(drop=True)
    return df


ROI_COLUMNS = ("patient_id", "sequence", "slice", "x0", "y0", "x1", "y1")


def read_rois(path: str | Path) -> pd.DataFrame:
    """Read ``rois.csv``: radiologist-drawn boxes on key slices.

    Columns ``patient_id, sequence, slice, x0, y0, x1, y1``: voxel indices (0-based) in the
    image file's own grid, as a viewer shows them; ``x1``/``y1`` inclusive. One row per
    boxed slice (the study boxed 3 consecutive key slices).
    """
    path = Path(path)
    df, rows = read_text_table(path)
    missing = [c for c in ROI_COLUMNS if c not in df.columns]
    if missing:
        raise ClinicalTableError(f"{path}: missing column(s) {', '.join(missing)}; need {', '.join(ROI_COLUMNS)}")
    for c in ROI_COLUMNS[2:]:
        bad = pd.to_numeric(df[c], errors="coerce").isna()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ClinicalTableError(
                f"{path}: row {rows[i]} (patient {df['patient_id'].iat[i]}): {c} is not an integer"
            )
        df[c] = pd.to_numeric(df[c]).astype(int)
    df["patient_id"] = df["patient_id"].str.strip()
    df["sequence"] = df["sequence"].str.strip()
    return df
