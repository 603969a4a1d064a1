"""The fields of ``dlmvi serve``'s forms: uploaded files placed into an upload's folder, AFP and
the patient id checked, each refusal one message for the user."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from dlmvi.deploy.web.config import PATIENT_ID, SEQUENCE_FILE
from dlmvi.deploy.web.errors import UploadRefused
from dlmvi.deploy.web.state import Upload


def save(src: UploadFile, dest: Path) -> Path:
    """Copy an uploaded file to ``dest`` (which must not exist)."""
    src.file.seek(0)
    with open(dest, "xb") as out:
        shutil.copyfileobj(src.file, out, 1024 * 1024)
    return dest


async def receive_upload(up: Upload, archive: UploadFile | None, files: list[UploadFile] | None,
                         sequences) -> tuple[Path | None, list[tuple[str, Path]]]:
    """Write the request's archive or files into the upload's folder; returns (archive, files).

    Args:
        sequences: the model's sequences (the names accepted as single files).
    """
    if archive is not None and files:
        raise UploadRefused(400, "send either one archive or the sequence files, not both")
    if archive is None and not files:
        raise UploadRefused(400, "no patient: send the patient's folder as a .zip/.tar.gz archive (field "
                            "'archive') or the sequence files (field 'files')")
    if archive is not None:
        return await run_in_threadpool(save, archive, up.folder / "upload"), []
    placed: list[tuple[str, Path]] = []
    allowed = set(sequences)
    for f in files:
        name = Path(f.filename or "").name
        m = SEQUENCE_FILE.match(name)
        if m is None or m.group("name") not in allowed or name != (f.filename or ""):
            raise UploadRefused(400, f"file {name!r}: name the sequence files "
                                f"{', '.join(s + '.nii.gz' for s in sequences)} and their masks "
                                f"{', '.join(s + '_roi.nii.gz' for s in sequences)} (NIfTI), or send an "
                                "archive of the patient's folder (DICOM series)")
        if any(n == name for n, _ in placed):
            raise UploadRefused(400, f"file {name!r} was sent twice")
        placed.append((name, await run_in_threadpool(save, f, up.folder / f"file{len(placed)}")))
    return None, placed


def check_afp(afp: float | None) -> float | None:
    """AFP in ng/mL: a non-negative number (or None)."""
    if afp is not None and not (np.isfinite(afp) and afp >= 0):
        raise UploadRefused(422, f"AFP {afp!r} must be a non-negative number in ng/mL")
    return afp


def check_id(patient_id: str | None) -> str | None:
    """A patient id fit for a file name and rois.csv (None: the default id)."""
    if patient_id in (None, ""):
        return None
    patient_id = patient_id.strip()
    if not PATIENT_ID.match(patient_id):
        raise UploadRefused(422, "patient id: use 1-64 letters, digits, '.', '_' or '-' (no names or record "
                            "numbers: the id appears on the card and in rois.csv)")
    return patient_id
