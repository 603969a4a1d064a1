"""Header-only index of DICOM files: one record per file, one :class:`Frame` per 2-D image.

Every DICOM reader of dlmvi goes through this index: the cohort reader (a series folder), and
``dlmvi import`` (a whole PACS/CD export). A file is read with pydicom up to its pixel data
(``stop_before_pixels``); what a later step needs to place, group and label each 2-D image is
copied into small frozen records, so tens of thousands of files can be indexed first and
decoded later, series by series.

Three storage layouts give frames:

* classic single-frame images (MR/CT Image Storage): one frame per file;
* enhanced multi-frame images (Enhanced MR/CT, Legacy Converted): one frame per item of the
  Per-Frame Functional Groups, each functional group taken from the frame's own item or else
  from the Shared Functional Groups (:mod:`dlmvi.io.dicom_multiframe`);
* Siemens MOSAIC: one frame per tile of the mosaic, placed from the CSA header
  (:mod:`dlmvi.io.dicom_mosaic`).

Identifying fields (patient name, ID, birth date...) are not kept, except the DICOM PatientID,
held in memory only as the key that groups an export's files by patient
(:attr:`DicomFile.patient_key`); no dlmvi output or message contains it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from dlmvi.io.dicom_frame import Frame, tm_seconds, to_float, to_floats, to_int, to_str

#: File names that are never DICOM images (in a series folder or an export).
IGNORED_NAMES = frozenset({"DICOMDIR", "README", "README.txt", "Thumbs.db", "desktop.ini", "LOCKFILE",
                           "VERSION", "AUTORUN.INF", "autorun.inf"})

#: Media Storage Directory Storage: the SOP class of a DICOMDIR.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

#: Enhanced/legacy multi-frame image SOP classes read from their functional groups.
MULTIFRAME_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.4.1",    # Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.3",    # Enhanced MR Color Image Storage
    "1.2.840.10008.5.1.4.1.1.4.4",    # Legacy Converted Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",    # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.2",    # Legacy Converted Enhanced CT Image Storage
})


@dataclass(slots=True)
class DicomFile:
    """Header of one DICOM image file (no identifying fields but the in-memory patient key).

    Attributes:
        path: the file.
        patient_key: the DICOM PatientID (or, when empty, the StudyInstanceUID): groups an
            export's files by patient. In memory only: never written, printed or logged.
        study_uid, series_uid, sop_uid: instance UIDs (grouping only; never written).
        series_number, description, protocol: SeriesNumber, SeriesDescription, ProtocolName.
        study_date, series_date: YYYYMMDD; series_time: HHMMSS (for ordering repeats).
        vendor, model, field_strength: Manufacturer, ManufacturerModelName,
            MagneticFieldStrength (T).
        modality, sop_class, transfer_syntax: as in the header.
        frames: the 2-D images of the file.
        note: why the file holds no usable frame (e.g. a mosaic without CSA header).
    """

    path: Path
    patient_key: str
    study_uid: str
    series_uid: str
    sop_uid: str
    series_number: int | None
    description: str
    protocol: str
    study_date: str
    series_date: str
    vendor: str
    model: str
    field_strength: float | None
    modality: str
    sop_class: str
    transfer_syntax: str
    series_time: str = ""
    frames: list[Frame] = field(default_factory=list)
    note: str = ""


class NotAnImage(Exception):
    """Internal: a DICOM file without an image (DICOMDIR, report, presentation state)."""


# ----------------------------------------------------------------------------- values


def _raw(ds, tag: int):
    """The value of ``tag`` (a numeric-string, code, date, time or UID element): the text of
    an element pydicom has not converted yet, else pydicom's value; None when absent.

    Converting elements costs pydicom more than reading the file; the index reads ~20 of
    them per file, so the ASCII ones are parsed here (multi-values stay backslash-separated).
    """
    elem = ds.get_item(tag)
    if elem is None:
        return None
    v = elem.value
    if isinstance(v, bytes):
        return v.decode("ascii", "replace").strip(" \x00")
    return v


def _text(ds, tag: int, keyword: str) -> str:
    """A text element (LO/SH): ASCII bytes decoded here, anything else by pydicom with the
    file's SpecificCharacterSet (descriptions in Chinese, Greek...)."""
    elem = ds.get_item(tag)
    if elem is None:
        return ""
    v = elem.value
    if isinstance(v, bytes) and v.isascii():
        return v.decode("ascii").strip(" \x00")
    return to_str(ds.get(keyword))


def _us(ds, tag: int) -> int | None:
    """An unsigned short (Rows, Columns) without pydicom's conversion when it is raw."""
    elem = ds.get_item(tag)
    if elem is None:
        return None
    v = elem.value
    if isinstance(v, bytes) and len(v) == 2:
        return int.from_bytes(v, "little" if getattr(elem, "is_little_endian", True) else "big")
    return to_int(v)


def _private(ds, group: int, creator: str, element: int):
    """Value of a private tag by creator name (robust to the block the scanner chose)."""
    try:
        block = ds.private_block(group, creator)
        elem = block[element] if element in block else None
    except (KeyError, ValueError, AttributeError):
        return None
    return None if elem is None else elem.value


def _b_value(ds, vendor: str) -> float | None:
    """Diffusion b-value of a classic file: DiffusionBValue, else the vendor's private tag."""
    b = to_float(ds.get("DiffusionBValue")) if 0x00189087 in ds else None
    if b is None:
        vendor = vendor.upper()
        if "SIEMENS" in vendor:
            b = to_float(_private(ds, 0x0019, "SIEMENS MR HEADER", 0x0C))  # B_value
        elif "PHILIPS" in vendor:
            b = to_float(_private(ds, 0x2001, "Philips Imaging DD 001", 0x03))  # Diffusion B-Factor
        elif "GE" in vendor.split() or vendor.startswith("GE "):
            b = to_float(_private(ds, 0x0043, "GEMS_PARM_01", 0x39))  # slop_int_6..9: b-value first
            if b is not None and b >= 1e9:  # some GE versions add 10^9 to flag the b-value
                b -= 1e9
    if b is not None and not (0 <= b <= 100000):
        return None
    return b


# ----------------------------------------------------------------------------- files


def read_header(path: Path):
    """pydicom dataset of ``path`` without pixel data; None when it is not DICOM.

    Raises:
        Exception: a DICOM file too damaged to parse (the caller names it).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        return None


def index_dataset(path: Path, ds) -> DicomFile:
    """The :class:`DicomFile` of a header read with :func:`read_header`.

    Raises:
        NotAnImage: a DICOMDIR, a structured report, a presentation state.
    """
    meta = getattr(ds, "file_meta", None)
    sop_class = to_str(_raw(ds, 0x00080016)) or to_str(getattr(meta, "MediaStorageSOPClassUID", ""))
    if sop_class == DICOMDIR_SOP_CLASS or 0x00041220 in ds:  # DirectoryRecordSequence
        raise NotAnImage("DICOMDIR")
    if 0x00280010 not in ds or 0x00280011 not in ds:  # Rows, Columns
        raise NotAnImage("no image")
    image_type = _image_type(_raw(ds, 0x00080008))
    study_uid = to_str(_raw(ds, 0x0020000D))
    rec = DicomFile(
        path=path,
        patient_key=to_str(_raw(ds, 0x00100020)) or f"study:{study_uid}",
        study_uid=study_uid,
        series_uid=to_str(_raw(ds, 0x0020000E)),
        sop_uid=to_str(_raw(ds, 0x00080018)),
        series_number=to_int(_raw(ds, 0x00200011)),
        description=_text(ds, 0x0008103E, "SeriesDescription"),
        protocol=_text(ds, 0x00181030, "ProtocolName"),
        study_date=to_str(_raw(ds, 0x00080020)),
        series_date=to_str(_raw(ds, 0x00080021)) or to_str(_raw(ds, 0x00080020)),
        vendor=_text(ds, 0x00080070, "Manufacturer"),
        model=_text(ds, 0x00081090, "ManufacturerModelName"),
        field_strength=to_float(_raw(ds, 0x00180087)),
        modality=to_str(_raw(ds, 0x00080060)),
        sop_class=sop_class,
        transfer_syntax=to_str(getattr(meta, "TransferSyntaxUID", "")),
        series_time=to_str(_raw(ds, 0x00080031)) or to_str(_raw(ds, 0x00080032)),
    )
    n_frames = to_int(_raw(ds, 0x00280008)) or 1
    if sop_class in MULTIFRAME_SOP_CLASSES or 0x52009230 in ds:  # PerFrameFunctionalGroupsSequence
        from dlmvi.io.dicom_multiframe import enhanced_frames

        rec.frames = enhanced_frames(path, ds)
    elif "MOSAIC" in image_type:
        from dlmvi.io.dicom_mosaic import mosaic_frames

        rec.frames, rec.note = mosaic_frames(path, ds, _classic_frame(path, ds, image_type, rec.vendor))
    elif n_frames > 1:
        rec.note = (f"holds {n_frames} frames but no per-frame functional groups (a multi-frame "
                    f"{_sop_name(sop_class)} file, neither Enhanced MR nor MOSAIC), so its slices cannot be "
                    "placed; convert the series to NIfTI (dcm2niix) or export it as classic single-frame DICOM")
    else:
        rec.frames = [_classic_frame(path, ds, image_type, rec.vendor)]
    return rec


def _sop_name(uid: str) -> str:
    from pydicom.uid import UID

    try:
        name = UID(uid).name
    except Exception:
        name = ""
    return name or (f"SOP class {uid}" if uid else "DICOM")


def _image_type(value) -> tuple[str, ...]:
    if value is None:
        return ()
    vals = value.split("\\") if isinstance(value, str) else list(value)
    return tuple(to_str(v).upper() for v in vals)


def _classic_frame(path: Path, ds, image_type: tuple[str, ...], vendor: str = "") -> Frame:
    return Frame(
        file=path,
        index=None,
        kind="classic",
        position=to_floats(_raw(ds, 0x00200032), 3),
        orientation=to_floats(_raw(ds, 0x00200037), 6),
        pixel_spacing=to_floats(_raw(ds, 0x00280030), 2),
        rows=_us(ds, 0x00280010),
        cols=_us(ds, 0x00280011),
        slope=to_float(_raw(ds, 0x00281053)) or 1.0,
        intercept=to_float(_raw(ds, 0x00281052)) or 0.0,
        thickness=to_float(_raw(ds, 0x00180088)) or to_float(_raw(ds, 0x00180050)),
        b_value=_b_value(ds, vendor),
        echo_number=to_int(_raw(ds, 0x00180086)),
        echo_time=to_float(_raw(ds, 0x00180081)),
        image_type=image_type,
        temporal_position=to_int(_raw(ds, 0x00200100)),
        trigger_time=to_float(_raw(ds, 0x00181060)),
        acquisition_time=tm_seconds(_raw(ds, 0x00080032)),
        instance=to_int(_raw(ds, 0x00200013)),
    )


def index_file(path: str | os.PathLike) -> DicomFile | None:
    """Index one file: None when it is not a DICOM image (notes, DICOMDIR, reports).

    Raises:
        Exception: a damaged DICOM file (the caller names it).
    """
    path = Path(path)
    ds = read_header(path)
    if ds is None:
        return None
    try:
        return index_dataset(path, ds)
    except NotAnImage:
        return None


def is_candidate(path: Path) -> bool:
    """Whether a file found by walking a folder may be a DICOM image (cheap name test)."""
    name = path.name
    return not (name.startswith(".") or name in IGNORED_NAMES or name.upper() == "DICOMDIR")


def walk_files(root: Path) -> list[Path]:
    """Every candidate file under ``root``, sorted (symbolic links to folders not followed)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            p = Path(dirpath) / f
            if is_candidate(p) and p.is_file():
                out.append(p)
    return out


@dataclass
class IndexResult:
    """The indexed files of a folder tree.

    Attributes:
        files: DICOM image files.
        skipped: files that are not DICOM images (count).
        damaged: (path, reason) of files that could not be parsed.
        dicomdir: the DICOMDIR found at the root, or None.
        dicomdir_missing: files the DICOMDIR references that do not exist.
    """

    files: list[DicomFile] = field(default_factory=list)
    skipped: int = 0
    damaged: list[tuple[Path, str]] = field(default_factory=list)
    dicomdir: Path | None = None
    dicomdir_missing: list[Path] = field(default_factory=list)


def _index_one(path: Path):
    try:
        return index_file(path), None
    except Exception as exc:  # damaged file: reported, never fatal for a whole export
        return None, f"{type(exc).__name__}: {str(exc)[:160]}"


def _index_chunk(paths: list[str]):
    return [_index_one(Path(p)) for p in paths]


def index_paths(paths: Iterable[Path], progress: Callable[[int], None] | None = None,
                workers: int = 1, chunk: int = 256) -> IndexResult:
    """Index ``paths`` (header only), optionally in ``workers`` processes.

    Args:
        paths: files to index.
        progress: called with the number of files done after each chunk.
        workers: processes (1: in this process). Results keep the order of ``paths``.
        chunk: files per task.
    """
    paths = list(paths)
    res = IndexResult()
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    if workers > 1 and len(chunks) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_index_chunk, [[str(p) for p in c] for c in chunks])
            for c, out in zip(chunks, results):
                _collect(res, c, out)
                if progress:
                    progress(len(c))
    else:
        for c in chunks:
            _collect(res, c, [_index_one(p) for p in c])
            if progress:
                progress(len(c))
    return res


def _collect(res: IndexResult, paths, out) -> None:
    for p, (rec, err) in zip(paths, out):
        if err is not None:
            res.damaged.append((Path(p), err))
        elif rec is None:
            res.skipped += 1
        else:
            res.files.append(rec)


def dicomdir_references(path: Path) -> list[Path]:
    """Files a DICOMDIR references (ReferencedFileID of its records), resolved from its folder."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    root = path.parent
    out = []
    for rec in ds.get("DirectoryRecordSequence") or ():
        ref = rec.get("ReferencedFileID")
        if ref is None:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        out.append(_resolve_case(root, [str(p) for p in parts]))
    return out


def _resolve_case(root: Path, parts: list[str]) -> Path:
    """root/parts..., matching each part case-insensitively when the exact name is absent
    (CD file systems upper-case names; a copy to another disk may lower-case them)."""
    p = root
    for part in parts:
        q = p / part
        if not q.exists() and p.is_dir():
            low = part.lower()
            match = next((c for c in p.iterdir() if c.name.lower() == low), None)
            q = match if match is not None else q
        p = q
    return p


def index_tree(root: str | os.PathLike, progress: Callable[[int, int], None] | None = None,
               workers: int = 1) -> IndexResult:
    """Index every file under ``root`` (a PACS/CD export), header only.

    A DICOMDIR at the root is read only to check that every file it references exists (a
    missing one means an incomplete copy of the CD, reported); the files themselves are found
    by walking the tree, because DICOMDIRs are often stale or partial and every file carries
    its own header. So a DICOMDIR is honoured where it helps and never trusted blindly.

    Args:
        root: the export's folder.
        progress: called as ``progress(done, total)``.
        workers: processes used to read headers.
    """
    root = Path(root)
    files = walk_files(root)
    total = len(files)
    done = [0]

    def tick(n):
        done[0] += n
        if progress:
            progress(done[0], total)

    res = index_paths(files, tick, workers=workers)
    for name in ("DICOMDIR", "dicomdir"):
        d = root / name
        if d.is_file():
            res.dicomdir = d
            try:
                refs = dicomdir_references(d)
            except Exception as exc:
                res.damaged.append((d, f"unreadable DICOMDIR ({type(exc).__name__})"))
                break
            res.dicomdir_missing = [p for p in refs if not p.is_file()]
            break
    return res
