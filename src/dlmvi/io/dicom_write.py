"""Write volumes as DICOM MR series (one file per axial slice), deterministically.

Used by the synthetic phantom and by tests; the files carry no real identifying data
(PatientName "SYNTHETIC^PHANTOM"). UIDs are derived from an ``entropy`` string (for the
phantom: its seed) with :func:`pydicom.uid.generate_uid`, and the dates are given by the
caller, so the same inputs give byte-identical files.

Besides one volume per series (:func:`write_dicom_series`), a series may hold several
volumes the way scanners export them (:func:`write_multivolume_series`: a dynamic series of
temporal positions, a DWI series of b-values), and a folder of series can be turned into what
a PACS or CD export looks like: one flat folder of randomly named files
(:func:`write_flat_export`) or a DICOM File-set with a DICOMDIR (:func:`write_dicomdir_export`).

Geometry follows SimpleITK's conventions: the array is (z, y, x); ``spacing`` and
``origin`` are (x, y, z) in mm, ``origin`` is the LPS position of the centre of voxel
(0, 0, 0), and ``direction`` is the 3x3 direction-cosine matrix (columns are the x, y and z
axes in LPS; identity = axial slices, column -> patient left, row -> posterior, slice ->
superior).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from dlmvi.errors import ImageError

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def _uid(entropy: str, *parts: object) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[entropy, *[str(p) for p in parts]]))


def _fmt(v: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    for digits in range(12, 0, -1):
        s = f"{float(v):.{digits}g}"
        if len(s) <= 16:
            return s
    raise ValueError(f"cannot write {v} as a DICOM decimal string")


def choose_rescale(volume: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """Stored pixels, RescaleSlope, RescaleIntercept and signedness for a volume.

    Integer volumes within int16 are stored as int16 with slope 1, intercept 0. Anything
    else (floats, larger integers) is mapped linearly onto uint16 [0, 65535]:
    ``value = stored * slope + intercept`` (the rounding error is at most slope / 2).
    """
    v = np.asarray(volume)
    if not np.all(np.isfinite(v)):
        raise ImageError("cannot write a DICOM series from a volume with NaN or inf voxels")
    if np.issubdtype(v.dtype, np.integer) and v.size and v.min() >= -32768 and v.max() <= 32767:
        return v.astype(np.int16), 1.0, 0.0, True
    # Slope and intercept are rounded to what the header can hold before storing.
    lo = float(_fmt(float(v.min())))
    hi = float(v.max())
    slope = float(_fmt((hi - lo) / 65535.0 * (1 + 1e-9))) if hi > lo else 1.0
    stored = np.clip(np.rint((v - lo) / slope), 0, 65535).astype(np.uint16)
    return stored, slope, lo, False


def write_dicom_series(
    volume_zyx: np.ndarray,
    spacing: Sequence[float],
    origin: Sequence[float],
    folder: str | os.PathLike,
    sequence_name: str,
    series_uid: str | None = None,
    **kwargs,
) -> list[Path]:
    """Write ``volume_zyx`` as one MR Image Storage file per axial slice.

    The series appears atomically: files are written into a temporary folder next to
    ``folder``, which then replaces ``folder``.

    Args:
        volume_zyx: array (slices, rows, columns).
        spacing: voxel size (x, y, z) in mm: column spacing, row spacing, slice spacing.
        origin: LPS position (x, y, z) in mm of the centre of the first voxel.
        folder: series folder to create (replaced if it exists).
        sequence_name: SeriesDescription / ProtocolName (e.g. "T1V").
        series_uid: SeriesInstanceUID; derived from ``entropy``, patient and sequence if None.
        **kwargs: see :func:`write_multivolume_series` (patient_id, study_uid,
            frame_of_reference_uid, direction, series_number, study_date, entropy, rescale).

    Returns:
        The written files, in slice order (``IM0001.dcm``, ...).
    """
    return write_multivolume_series([volume_zyx], spacing, origin, folder, sequence_name, [{}],
                                    series_uid, **kwargs)


def write_multivolume_series(
    volumes_zyx: Sequence[np.ndarray],
    spacing: Sequence[float],
    origin: Sequence[float],
    folder: str | os.PathLike,
    sequence_name: str,
    volume_tags: Sequence[dict],
    series_uid: str | None = None,
    *,
    patient_id: str = "SYNTHETIC",
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    direction: Sequence[Sequence[float]] | None = None,
    series_number: int = 1,
    study_date: str = "20000101",
    entropy: str = "dlmvi",
    rescale: tuple[float, float] | None = None,
    extra_tags: dict | None = None,
) -> list[Path]:
    """Write several volumes on one grid as ONE series (one file per slice and volume).

    This is how scanners store a dynamic series (temporal positions), a DWI series (b-values)
    or a multi-echo series: the same slice positions repeat once per volume, and each file
    carries what tells the volumes apart (``volume_tags``). Files are numbered volume after
    volume (``IM0001.dcm`` ...; InstanceNumber likewise); one rescale serves every volume.

    Args:
        volumes_zyx: arrays (slices, rows, columns), all of one shape.
        spacing, origin, folder, sequence_name, series_uid: as :func:`write_dicom_series`.
        volume_tags: per volume, DICOM keywords and values written into each of its files,
            e.g. ``{"TemporalPositionIdentifier": 2, "AcquisitionTime": "101530"}`` or
            ``{"DiffusionBValue": 800.0}``.
        patient_id: PatientID (a synthetic ID; no real identifying data is written).
        study_uid: StudyInstanceUID; derived from ``entropy`` and patient if None.
        frame_of_reference_uid: derived from ``entropy`` and patient if None, so all
            series of one patient share one frame of reference.
        direction: 3x3 direction cosines (columns: x, y, z axes in LPS); identity if None.
        series_number: SeriesNumber.
        study_date: StudyDate / SeriesDate / ContentDate (YYYYMMDD); fixed, so output is
            reproducible.
        entropy: string all derived UIDs are hashed from (e.g. the phantom's seed).
        rescale: (slope, intercept) to store ``round((value - intercept) / slope)`` as
            uint16 instead of the automatic choice (see :func:`choose_rescale`).
        extra_tags: DICOM keywords and values written into every file (e.g. Manufacturer,
            MagneticFieldStrength, PatientName for tests of de-identification).

    Returns:
        The written files.
    """
    if not len(volumes_zyx) or len(volume_tags) != len(volumes_zyx):
        raise ImageError(f"{sequence_name}: give one dict of volume_tags per volume")
    vol = _stacked_volumes(volumes_zyx, spacing, origin, sequence_name)
    stored, slope, intercept, signed = _stored_pixels(vol, rescale, sequence_name)
    D = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    sx, sy, sz = (float(s) for s in spacing)
    o = np.asarray(origin, dtype=float)
    series_uid = series_uid or _uid(entropy, patient_id, sequence_name, "series")
    study_uid = study_uid or _uid(entropy, patient_id, "study")
    for_uid = frame_of_reference_uid or _uid(entropy, patient_id, "frame")

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        # The header is built once; only the per-slice elements change in the loop.
        ds = _series_header(
            sequence_name, patient_id, study_date, sz, study_uid, series_uid, for_uid, series_number,
            [*D[:, 0], *D[:, 1]], vol.shape, (sx, sy), signed, slope, intercept, extra_tags)
        files = _write_slices(ds, stored, volume_tags, entropy, series_uid, o, D, sz, tmp, folder)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return files


def _stacked_volumes(volumes_zyx, spacing, origin, sequence_name: str) -> np.ndarray:
    """The volumes stacked (volumes, z, y, x), after checking their shapes, grid and values."""
    shapes = {np.shape(v) for v in volumes_zyx}
    vol = np.stack([np.asarray(v) for v in volumes_zyx]) if len(shapes) == 1 else None
    if vol is None or vol.ndim != 4 or min(vol.shape) < 1:
        raise ImageError(f"{sequence_name}: expected 3-D volumes (z, y, x) of one shape, got {sorted(shapes)}")
    if len(spacing) != 3 or len(origin) != 3 or min(float(s) for s in spacing) <= 0:
        raise ImageError(f"{sequence_name}: spacing and origin need 3 values, spacing > 0")
    if not np.all(np.isfinite(vol)):
        raise ImageError(f"{sequence_name}: the volume has NaN or inf voxels; DICOM cannot "
                         "store them")
    return vol


def _stored_pixels(vol: np.ndarray, rescale, sequence_name: str) -> tuple[np.ndarray, float, float, bool]:
    """Stored pixels, slope, intercept and signedness: automatic, or the caller's ``rescale``."""
    if rescale is None:
        return choose_rescale(vol)
    slope, intercept = float(rescale[0]), float(rescale[1])
    if slope <= 0:
        raise ImageError(f"{sequence_name}: rescale slope must be > 0, got {slope}")
    stored_f = np.rint((vol - intercept) / slope)
    if stored_f.min() < 0 or stored_f.max() > 65535:
        raise ImageError(f"{sequence_name}: values do not fit uint16 with rescale {rescale}")
    return stored_f.astype(np.uint16), slope, intercept, False


def _series_header(sequence_name, patient_id, study_date, sz, study_uid, series_uid, for_uid, series_number,
                   orientation, shape, pixel_xy, signed, slope, intercept, extra_tags):
    """The dataset (with its file meta) that every file of the series shares."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    sx, sy = pixel_xy
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.Modality = "MR"
    ds.Manufacturer = "dlmvi synthetic phantom"
    ds.InstitutionName = "SYNTHETIC"
    ds.StudyDescription = "SYNTHETIC liver MRI (dlmvi phantom)"
    ds.SeriesDescription = sequence_name
    ds.ProtocolName = sequence_name
    ds.PatientName = "SYNTHETIC^PHANTOM"
    ds.PatientID = str(patient_id)
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "LIVER"
    ds.ScanningSequence = "RM"
    ds.SequenceVariant = "NONE"
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = _fmt(sz)
    ds.SpacingBetweenSlices = _fmt(sz)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = int(series_number)
    ds.ImageOrientationPatient = [_fmt(c) for c in orientation]
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageComments = "SYNTHETIC dlmvi phantom - not patient data"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(shape[2]), int(shape[3])
    ds.PixelSpacing = [_fmt(sy), _fmt(sx)]  # row spacing, column spacing
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleIntercept = _fmt(intercept)
    ds.RescaleSlope = _fmt(slope)
    ds.RescaleType = "US"
    for key, value in (extra_tags or {}).items():
        setattr(ds, key, value)
    return ds


def _write_slices(ds, stored: np.ndarray, volume_tags, entropy: str, series_uid: str, o: np.ndarray,
                  D: np.ndarray, sz: float, tmp: Path, folder: Path) -> list[Path]:
    """One file per slice and volume into ``tmp``; returns their paths in ``folder``."""
    import pydicom

    meta = ds.file_meta
    files = []
    little = stored.astype(stored.dtype.newbyteorder("<"), copy=False)
    n_z = stored.shape[1]
    for v, tags in enumerate(volume_tags):
        for key, value in tags.items():
            setattr(ds, key, value)
        for k in range(n_z):
            i = v * n_z + k
            # single-volume series keep the UIDs they always had
            sop_uid = _uid(entropy, series_uid, k) if len(volume_tags) == 1 else _uid(entropy, series_uid, v, k)
            meta.MediaStorageSOPInstanceUID = sop_uid
            ds.SOPInstanceUID = sop_uid
            ds.InstanceNumber = i + 1
            pos = o + D[:, 2] * sz * k
            ds.ImagePositionPatient = [_fmt(p) for p in pos]
            ds.SliceLocation = _fmt(float(pos @ D[:, 2]))
            ds.PixelData = np.ascontiguousarray(little[v, k]).tobytes()
            buf = io.BytesIO()
            pydicom.dcmwrite(buf, ds, enforce_file_format=True)
            path = tmp / f"IM{i + 1:04d}.dcm"
            path.write_bytes(buf.getvalue())
            files.append(folder / path.name)
    return files


def write_flat_export(series_folders: Sequence[str | os.PathLike], out: str | os.PathLike, seed: int = 0) -> list[Path]:
    """Copy every file of ``series_folders`` into ONE folder under random names.

    What a PACS export often looks like: thousands of files named by hashes, patients,
    studies and series mixed. Names are 16 random hex digits (seeded), no extension.

    Returns:
        The written files.
    """
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for folder in series_folders:
        for f in sorted(Path(folder).iterdir()):
            if not f.is_file():
                continue
            while True:
                name = "".join(f"{b:02x}" for b in rng.integers(0, 256, 8))
                if not (out / name).exists():
                    break
            shutil.copyfile(f, out / name)
            written.append(out / name)
    return written


def write_dicomdir_export(series_folders: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write the files of ``series_folders`` as a DICOM File-set (a CD's layout).

    pydicom's :class:`~pydicom.fileset.FileSet` copies each file into its own folder tree
    (``PT000000/ST000000/SE000000/IM000000``) and writes the DICOMDIR that indexes them.

    Returns:
        The DICOMDIR file.
    """
    from pydicom.fileset import FileSet

    fs = FileSet()
    fs.ID = "DLMVI_SYNTH"
    for folder in series_folders:
        for f in sorted(Path(folder).iterdir()):
            if f.is_file():
                fs.add(f)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fs.write(out)
    return out / "DICOMDIR"
