"""``dlmvi validate``: every problem of a cohort folder, one line each.

Checks the clinical table (required columns, duplicate IDs, grades, numbers, follow-up),
the match between table rows and image folders, and per patient and sequence: the image
and mask can be read, lie on one grid, hold finite values, the mask is non-empty and the
boxes lie inside the image; then what would make ``prepare`` go wrong later:

* an image with fewer than 3 axial slices (the key slices are 3 consecutive ones);
* an image whose voxels are all zero or all equal;
* a mask that looks inverted: it covers more than half of the volume *and* all 8 corners of
  the volume (tumour = 0, background = 1 - the crop would be the whole image);
* rois.csv boxes on fewer than 3 slices or on slices that are not consecutive.

A series holding several volumes is listed (a warning) with the volume that is read.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
        box_error = _check_boxes(src)
        if box_error:
            problems.append(Problem("error", box_error, patient.patient_id, seq, "rois.csv"))
        try:
            ls = patient.load(seq, notes=notes)
        except CohortError as exc:
            problems.append(Problem("error", _strip_who(str(exc), patient.patient_id, seq), patient.patient_id, seq, str(src.image)))
        else:
            content = _check_content(ls, src)
            for file, msg in content:
                problems.append(Problem("error", msg, patient.patient_id, seq, file))
            if not content and not box_error:
                loaded[seq] = ls
        for msg in notes:
            text = _strip_who(msg, patient.patient_id, seq)
            # notes on the image (several volumes) start with its path; the others are on the mask
            file = str(src.image) if text.startswith(str(src.image)) else str(src.mask or src.image)
            problems.append(Problem("warning", text, patient.patient_id, seq, file))
    return loaded, problems


#: Axial slices ``prepare`` takes per sequence (the study's 3 consecutive key slices).
MIN_SLICES = 3

#: A mask covering more than this fraction of the volume, corners included, looks inverted.
INVERTED_FRACTION = 0.5


def _check_boxes(src) -> str | None:
    """Why the rois.csv boxes of one sequence cannot give the 3 consecutive key slices."""
    if src.boxes is None or src.mask is not None:
        return None
    slices = sorted({int(b[0]) for b in src.boxes})
    if len(slices) < MIN_SLICES:
        return (f"rois.csv boxes lie on {len(slices)} slice(s) ({', '.join(map(str, slices))}); prepare "
                f"needs boxes on {MIN_SLICES} consecutive slices (the key slices) - add the missing rows")
    gaps = [b for a, b in zip(slices, slices[1:]) if b != a + 1]
    if gaps:
        return (f"rois.csv boxes lie on slices {', '.join(map(str, slices))}, which are not consecutive "
                f"(gap before slice {gaps[0]}); box {MIN_SLICES} consecutive key slices")
    return None


def _check_content(ls, src) -> list[tuple[str, str]]:
    """(file, message) of each reason why a loaded image or mask is unusable."""
    out = []
    image = str(src.image)
    nz = ls.image.shape[0]
    if nz < MIN_SLICES:
        out.append((image, f"the volume has {nz} axial slice{'s' if nz != 1 else ''} (shape {ls.image.shape}); "
                           f"prepare needs at least {MIN_SLICES} (3 consecutive key slices) - export the whole "
                           "series, not a single slice"))
    lo, hi = float(np.min(ls.image)), float(np.max(ls.image))
    if lo == hi:
        what = "all zero" if hi == 0 else f"all equal to {hi:g}"
        out.append((image, f"the image is {what} (no contrast); the export is blank or failed - re-export it"))
    frac = float(ls.mask.mean()) if ls.mask.size else 0.0
    if src.mask is not None and frac > INVERTED_FRACTION:
        m = ls.mask
        corners = [m[i, j, k] for i in (0, -1) for j in (0, -1) for k in (0, -1)]
        if all(corners):
            out.append((str(src.mask), f"the mask covers {100 * frac:.0f}% of the volume including every corner: it "
                                       "looks inverted (background = 1, tumour = 0), so the crop would be the "
                                       "whole image - invert it (tumour = 1)"))
    return out


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
