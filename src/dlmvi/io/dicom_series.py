"""From indexed frames to a 3-D image: the one DICOM volume reader of dlmvi.

:func:`read_series_folder` reads a cohort's series folder; ``dlmvi import`` calls
:func:`assemble` on the volumes it maps. Both index headers with
:mod:`dlmvi.io.dicom_index`, split a series into volumes with :mod:`dlmvi.io.dicom_volumes`
and build the image here, so a series reads the same whichever way it came in.

A volume's frames are ordered by their position along the slice normal (the cross product
of the row and column cosines); the slice spacing is the median distance between
neighbours, and a gap that differs from it by more than :data:`SPACING_RTOL` (a missing
slice) is refused, as are slices that do not lie on one line along the normal (a sheared
stack, beyond :data:`SHEAR_TOL_MM`), frames of different sizes or pixel spacings. Each
frame's own RescaleSlope/RescaleIntercept is applied.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from dlmvi.errors import ImageError
from dlmvi.io.dicom_frame import Frame
from dlmvi.io.dicom_index import DicomFile, index_file, is_candidate
from dlmvi.io.dicom_volumes import Volume, choose_volume, normal_of, split_volumes

#: Relative tolerance on slice spacing (float noise passes, a missing slice does not).
SPACING_RTOL = 0.05

#: Largest in-plane offset (mm) of a slice from the line through the first slice along the
#: normal; beyond it the stack is sheared (gantry tilt) and cannot be a voxel grid.
SHEAR_TOL_MM = 0.1

#: Largest relative difference of PixelSpacing between frames of one volume.
PIXEL_SPACING_RTOL = 1e-3


def index_folder(folder: Path, where) -> list[DicomFile]:
    """Index the DICOM image files directly in ``folder`` (not its sub-folders).

    Raises:
        ImageError: a damaged DICOM file (named).
    """
    out = []
    for f in sorted(Path(folder).iterdir()):
        if not f.is_file() or not is_candidate(f):
            continue
        try:
            rec = index_file(f)
        except Exception as exc:
            raise ImageError(
                f"{where}: {f} is a damaged DICOM file ({type(exc).__name__}: {str(exc)[:160]}); "
                "re-export the series"
            ) from None
        if rec is not None:
            out.append(rec)
    return out


def series_frames(files: list[DicomFile], where, source) -> list[Frame]:
    """Frames of files that must form one series (refuses several series, duplicates,
    and files whose frames cannot be placed)."""
    if not files:
        raise ImageError(f"{where}: {source} holds no DICOM image files")
    series = {}
    for rec in files:
        series.setdefault(rec.series_uid, rec.series_number if rec.series_number is not None else "?")
    if len(series) > 1:
        # Named by SeriesNumber: UIDs are identifiers that must not reach logs.
        numbers = ", ".join(sorted(str(n) for n in series.values()))
        raise ImageError(
            f"{where}: {source} holds {len(series)} DICOM series (numbers {numbers}); keep one "
            "series per sequence folder (the mapping of series to sequence is ambiguous)"
        )
    sops = [rec.sop_uid or rec.path.name for rec in files]
    if len(set(sops)) != len(sops):
        raise ImageError(f"{where}: {source} holds duplicate SOPInstanceUIDs; remove the copies")
    bad = next((rec for rec in files if rec.note), None)
    if bad is not None:
        raise ImageError(f"{where}: {bad.path} {bad.note}")
    return [fr for rec in files for fr in rec.frames]


def read_series_folder(folder: str | Path, where, choice: str | None = None, info: dict | None = None):
    """Read one volume of the series in ``folder`` as a float32 SimpleITK image.

    Args:
        folder: a folder holding one DICOM series (other files are ignored).
        where: patient and sequence, for messages.
        choice: which volume, when the series holds several (see
            :func:`dlmvi.io.dicom_volumes.parse_choice`).
        info: filled with ``volumes`` (labels with details) and ``chosen`` (label).

    Raises:
        ImageError: see :func:`series_frames`, :func:`assemble`; a
            :class:`~dlmvi.io.dicom_volumes.VolumeChoiceError` when the series holds several
            volumes and ``choice`` does not name one.
    """
    folder = Path(folder)
    frames = series_frames(index_folder(folder, where), where, folder)
    volumes = volumes_of(frames, where, folder)
    vol = choose_volume(volumes, choice, f"{where}: {folder}")
    if info is not None:
        info["volumes"] = [v.describe() for v in volumes]
        info["chosen"] = vol.label
        info["key"] = vol.key
    return assemble(vol.frames, where, folder)


def volumes_of(frames: list[Frame], where, source) -> list[Volume]:
    """:func:`~dlmvi.io.dicom_volumes.split_volumes` with the patient/sequence and source named."""
    try:
        return split_volumes(frames)
    except ImageError as exc:
        raise ImageError(f"{where}: {source}: {exc}") from None


class _PixelCache:
    """Decoded pixel arrays of the last few files (a multi-frame file is decoded once)."""

    def __init__(self, size: int = 2):
        self.size = size
        self.items: OrderedDict = OrderedDict()

    def get(self, path: Path, where):
        if path in self.items:
            self.items.move_to_end(path)
            return self.items[path]
        import pydicom

        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:
            raise ImageError(
                f"{where}: {path} is a damaged DICOM file ({type(exc).__name__}: {str(exc)[:160]}); "
                "re-export the series"
            ) from None
        try:
            arr = _native_pixels(ds)
            if arr is None:
                arr = ds.pixel_array
        except Exception as exc:
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "?")
            raise ImageError(
                f"{where}: cannot decode pixels of {path} (transfer syntax {ts}: "
                f"{type(exc).__name__}: {str(exc)[:160]}); install a codec (pylibjpeg, gdcm) "
                "or re-export the series uncompressed"
            ) from None
        n = int(ds.get("NumberOfFrames", 1) or 1)
        self.items[path] = (arr, n)
        if len(self.items) > self.size:
            self.items.popitem(last=False)
        return arr, n


#: Uncompressed little-endian transfer syntaxes (Implicit, Explicit VR Little Endian).
_NATIVE_LE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def _native_pixels(ds) -> np.ndarray | None:
    """Pixels of uncompressed little-endian grey-level data straight from the PixelData bytes
    (3-4x faster than pydicom's general decoder), or None to let pydicom decode them.

    Only the plain case: one sample per pixel, 8/16/32 bits allocated, and either every
    allocated bit stored or unsigned values that fit the stored bits (so no masking or sign
    extension is needed); anything else goes through ``ds.pixel_array``.
    """
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", ""))
    if ts not in _NATIVE_LE or int(ds.get("SamplesPerPixel", 1) or 1) != 1 or "PixelData" not in ds:
        return None
    bits = int(ds.get("BitsAllocated", 0) or 0)
    stored = int(ds.get("BitsStored", bits) or bits)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if bits not in (8, 16, 32) or (signed and stored != bits):
        return None
    rows, cols = int(ds.Rows), int(ds.Columns)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    raw = ds.PixelData
    need = rows * cols * n * dtype.itemsize
    if len(raw) < need:
        return None  # short data: pydicom names the problem
    arr = np.frombuffer(raw, dtype=dtype, count=rows * cols * n)
    if not signed and stored < bits and arr.size and int(arr.max()) >= (1 << stored):
        return None  # high bits in use (overlays): pydicom's rules apply
    return arr.reshape((n, rows, cols) if n > 1 else (rows, cols))


def _pixels(frame: Frame, cache: _PixelCache, where) -> np.ndarray:
    arr, n = cache.get(frame.file, where)
    if frame.kind == "classic":
        out = arr
    elif frame.kind == "mosaic":
        from dlmvi.io.dicom_mosaic import tile

        out = tile(arr, frame.index, frame.rows, frame.cols)
    else:
        from dlmvi.io.dicom_multiframe import frame_pixels

        out = frame_pixels(arr, frame.index, n)
    if out.ndim != 2 or out.shape != (frame.rows, frame.cols):
        raise ImageError(
            f"{where}: {frame.name}: decoded pixels have shape {out.shape}, the header says "
            f"{frame.rows} x {frame.cols} (colour or damaged image)")
    return out


def assemble(frames: list[Frame], where, source):
    """Stack the frames of one volume into a float32 SimpleITK image (LPS geometry).

    Raises:
        ImageError: frames of different sizes or pixel spacings, two frames at one position,
            uneven spacing (a missing slice), a sheared stack, undecodable pixels.
    """
    import SimpleITK as sitk

    if not frames:
        raise ImageError(f"{where}: {source} holds no image")
    first = frames[0]
    if first.pixel_spacing is None:
        raise ImageError(f"{where}: {first.file} lacks PixelSpacing (geometry); cannot place the slices")
    shapes = {(f.rows, f.cols) for f in frames}
    if len(shapes) > 1:
        raise ImageError(f"{where}: slices of {source} differ in size {sorted(shapes)}")
    ps = np.asarray(first.pixel_spacing)
    for f in frames:
        if f.pixel_spacing is None or not np.allclose(f.pixel_spacing, ps, rtol=PIXEL_SPACING_RTOL):
            raise ImageError(f"{where}: {f.name} has pixel spacing {f.pixel_spacing}, {first.name} has "
                             f"{tuple(ps)}; the slices of {source} do not form one grid")
    ori = np.asarray(first.orientation, dtype=np.float64)
    row, col = ori[:3], ori[3:]
    normal = normal_of(ori)
    pos = np.array([f.position for f in frames], dtype=np.float64)
    dist = pos @ normal
    order = np.argsort(dist, kind="stable")
    dist = dist[order]
    gaps = np.diff(dist)
    if len(gaps) and np.any(gaps <= 1e-6):
        i = int(np.flatnonzero(gaps <= 1e-6)[0])
        raise ImageError(f"{where}: {source} has two slices at the same position "
                         f"({frames[order[i]].name}, {frames[order[i + 1]].name}); remove duplicates")
    if len(gaps) > 1:
        med = float(np.median(gaps))
        bad = np.flatnonzero(np.abs(gaps - med) > SPACING_RTOL * med)
        if bad.size:
            i = int(bad[0])
            f_a = frames[order[i]].name
            f_b = frames[order[i + 1]].name
            raise ImageError(
                f"{where}: {source}: uneven slice spacing ({gaps[i]:.2f} mm between {f_a} and "
                f"{f_b}, {med:.2f} mm elsewhere); a slice is probably missing - re-export the "
                "complete series"
            )
        dz = med
    elif len(gaps) == 1:
        dz = float(gaps[0])
    else:
        dz = float(first.thickness or 1.0)
    if len(frames) > 1:
        p0 = pos[order[0]]
        along = p0 + np.outer(dist - dist[0], normal)
        shear = float(np.abs(pos[order] - along).max())
        if shear > SHEAR_TOL_MM:
            raise ImageError(
                f"{where}: {source}: the slices are not stacked along their normal (offset up to "
                f"{shear:.2f} mm in-plane: a sheared stack, e.g. gantry tilt); dlmvi needs a "
                "rectangular grid - resample the series (e.g. dcm2niix) first")
    cache = _PixelCache()
    vol = np.empty((len(frames), first.rows, first.cols), dtype=np.float32)
    for z, k in enumerate(order):
        f = frames[k]
        px = _pixels(f, cache, where)
        np.multiply(px, np.float32(f.slope), out=vol[z], casting="unsafe")
        if f.intercept:
            vol[z] += np.float32(f.intercept)
    img = sitk.GetImageFromArray(vol)
    # DICOM PixelSpacing is (row spacing, column spacing) = (dy, dx).
    img.SetSpacing((float(ps[1]), float(ps[0]), dz))
    img.SetOrigin(tuple(float(v) for v in pos[order[0]]))
    img.SetDirection(tuple(np.column_stack([row, col, normal]).ravel()))
    return img
