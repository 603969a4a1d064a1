"""``dlmvi validate``: every problem of a cohort folder, one line each.

Checks the clinical table (required columns, duplicate IDs, grades, numbers, follow-up),
the match between table rows and image folders, and per patient and sequence: the image
and mask can be read, lie on one grid, hold finite values, the mask is non-empty and the
boxes lie inside the image.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from dlmvi.cohort.cohort import Cohort
from dlmvi.cohort.patient import Patient
from dlmvi.errors import CohortError, DlmviWarning
from dlmvi.io.tables import ColumnMap


@dataclass(frozen=True)
class Problem:
    """One problem found in a cohort. ``level`` is "error" or "warning"."""

    level: str
    message: str
    patient_id: str = ""
    sequence: str = ""
    file: str = ""

    def __str__(self) -> str:
        who = ", ".join(x for x in (f"patient {self.patient_id}" if self.patient_id else "", self.sequence) if x)
        where = f" [{self.file}]" if self.file else ""
        return f"{self.level.upper()}: {who + ': ' if who else ''}{self.message}{where}"


def check_patient(patient: Patient, sequences) -> tuple[dict, list[Problem]]:
    """Load every requested sequence of one patient; return the loaded ones and the problems."""
    loaded, problems = {}, []
    for seq in sequences:
        src = patient.sources.get(seq)
        if src is None:
            problems.append(Problem(
                "error",
                f"sequence {seq} is missing (expected images/{patient.patient_id}/{seq}.nii.gz "
                f"or the DICOM folder images/{patient.patient_id}/{seq}/)",
                patient.patient_id, seq,
            ))
            continue
        notes: list[str] = []
        try:
            loaded[seq] = patient.load(seq, notes=notes)
        except CohortError as exc:
            problems.append(Problem("error", _strip_who(str(exc), patient.patient_id, seq), patient.patient_id, seq, str(src.image)))
        for msg in notes:
            problems.append(Problem("warning", _strip_who(msg, patient.patient_id, seq), patient.patient_id, seq, str(src.mask or src.image)))
    return loaded, problems


def _strip_who(msg: str, pid: str, seq: str) -> str:
    prefix = f"patient {pid}, {seq}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def validate_cohort(
    root: str | Path,
    sequences=("T1", "T1V", "T1D"),
    column_map: ColumnMap | None = None,
    progress: bool = False,
) -> list[Problem]:
    """Check a cohort folder and list every problem (nothing is raised for bad data).

    Args:
        root: cohort folder.
        sequences: sequences a model will use; a patient lacking one is an error.
        column_map: the hospital's column names and units.
        progress: show a progress bar.
    """
    problems: list[Problem] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DlmviWarning)
            cohort = Cohort.from_folder(root, column_map)
    except CohortError as exc:
        return [Problem("error", str(exc))]
    csv = str(cohort.table.path)
    for level, pid, col, msg in cohort.table.problems:
        problems.append(Problem(level, f"{col}: {msg}", pid, "", csv))
    unlabelled = cohort.table.unlabelled_ids
    if unlabelled:
        problems.append(Problem(
            "warning",
            f"{len(unlabelled)} patient(s) have no mvi_grade (no pathology result yet): they are prepared "
            "and predicted, but left out of training, evaluation and the statistics: "
            f"{', '.join(unlabelled[:20])}" + (" ..." if len(unlabelled) > 20 else ""),
            file=csv,
        ))
    if cohort.table_only_ids:
        ids = cohort.table_only_ids
        problems.append(Problem(
            "error",
            f"{len(ids)} patient(s) in clinical.csv have no images/ folder: {', '.join(ids[:20])}"
            + (" ..." if len(ids) > 20 else ""),
            file=csv,
        ))
    if cohort.image_only_ids:
        ids = cohort.image_only_ids
        problems.append(Problem(
            "error",
            f"{len(ids)} image folder(s) have no row in clinical.csv: {', '.join(ids[:20])}"
            + (" ..." if len(ids) > 20 else ""),
            file=str(Path(root) / "images"),
        ))
    todo = [p for p in cohort if p.patient_id not in set(cohort.table_only_ids)]
    for patient in _progress(todo, progress, "validating"):
        problems.extend(check_patient(patient, sequences)[1])
    return problems


def _progress(items, show: bool, label: str):
    if not show:
        yield from items
        return
    from rich.progress import track

    yield from track(items, description=label, transient=True)
