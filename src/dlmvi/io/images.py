"""Reading MRI volumes and tumour masks (NIfTI files and DICOM series).

Every volume comes back as a SimpleITK image reoriented to LPS, so that array index
``[z, y, x]`` is (inferior->superior, anterior->posterior, right->left) and axis 0 is axial
whatever the acquisition's orientation. DICOM series are read with pydicom so that slice
order and spacing come from ImagePositionPatient and every frame's rescale is applied.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlmvi.errors import ImageError

#: Files in a series folder that are never DICOM slices.
IGNORED_NAMES = {"DICOMDIR", "README", "README.txt", "Thumbs.db", "desktop.ini"}

#: Largest volume accepted before allocation (voxels; 2**28, e.g. 1024 x 1024 x 256, 1 GiB as
#: float32); protects against absurd headers. Liver MRI volumes are well under 10**8 voxels.
MAX_VOXELS = 2**28

#: Deflate cannot expand data more than about 1032-fold; a .nii.gz whose header needs more
#: bytes than this times its compressed size is truncated (or lying), refused before reading.
MAX_DEFLATE_RATIO = 1100

#: Largest distance (mm) between where the qform and the sform put any corner of the volume
#: when both are set; beyond it the file is refused (see _check_nifti_header).
XFORM_ATOL_MM = 0.05

#: Largest |dot product| between two different unit voxel axes (about 0.006 degrees).
ORTHONORMAL_ATOL = 1e-4

#: Relative tolerance on slice spacing (float noise passes, a missing slice does not).
SPACING_RTOL = 0.05


@dataclass(frozen=True)
class Where:
    """Who an image belongs to, for error messages."""

    patient_id: str = "?"
    sequence: str = "?"

    def __str__(self) -> str:
        return f"patient {self.patient_id}, {self.sequence}"


def nifti_path(folder: Path, name: str) -> Path | None:
    """``folder/name.nii.gz`` or ``folder/name.nii``, whichever exists."""
    for ext in (".nii.gz", ".nii"):
        p = folder / f"{name}{ext}"
        if p.is_file():
            return p
    return None


def read_volume(path: str | os.PathLike, where: Where = Where(), reorient: bool = True):
    """Read a NIfTI file or a DICOM series folder as a float32 SimpleITK image.

    Args:
        path: ``.nii``/``.nii.gz`` file or a folder holding one DICOM series.
        where: patient and sequence, named in error messages.
        reorient: reorient to LPS (axis 0 of the array is axial).

    Raises:
        ImageError: unreadable file, absurd header, several series, a missing slice,
            NaN/inf voxels are *not* raised here (see :func:`check_finite`).
    """
    import SimpleITK as sitk

    path = Path(path)
    if path.is_dir():
        img = read_dicom_series(path, where)
    elif path.is_file():
        img = _read_nifti(path, where, reorient)
    else:
        raise ImageError(f"{where}: {path} does not exist")
    if img.GetDimension() != 3:
        raise ImageError(
            f"{where}: {path} has {img.GetDimension()} dimensions; a 3-D volume is needed "
            "(split 4-D files into one volume per sequence)"
        )
    if reorient and sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(img.GetDirection()) != "LPS":
        img = sitk.DICOMOrient(img, "LPS")
    return img


#: RAS (NIfTI world) to LPS (DICOM/ITK world).
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _read_nifti(path: Path, where: Where, reorient: bool = False):
    """A NIfTI file as a SimpleITK image, read with nibabel alone (one decompression).

    ITK's NIfTI reader silently turns NaN into 0, which would hide corrupt exports, and
    decompresses the file once more just for the header; so voxels and geometry come from
    nibabel (the transform ITK would choose, :func:`_itk_affine`; the header check has refused
    files whose qform and sform disagree). With ``reorient`` the axes are permuted and flipped
    to LPS in numpy (views, no resampling) before the image is built.
    """
    import nibabel as nib
    import SimpleITK as sitk

    _check_nifti_header(path, where)
    try:
        nib_img = nib.load(str(path))
        data = np.asarray(nib_img.get_fdata(dtype=np.float32))
    except Exception as exc:
        msg = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
        raise ImageError(
            f"{where}: cannot read {path} ({type(exc).__name__}: {msg}); the file is truncated or "
            "corrupt - re-export it"
        ) from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ImageError(
            f"{where}: {path} has shape {data.shape}; a 3-D volume is needed "
            "(split 4-D files into one volume per sequence)"
        )
    aff = _RAS_TO_LPS @ _itk_affine(nib_img.header, nib_img.affine)
    if reorient:
        ornt = nib.orientations.io_orientation(aff)  # voxel axes -> closest LPS world axes
        data = nib.orientations.apply_orientation(data, ornt)
        aff = aff @ nib.orientations.inv_ornt_aff(ornt, nib_img.shape[:3])
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise ImageError(f"{where}: {path} has a zero voxel size in its affine; re-export it")
    img = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetOrigin(tuple(float(v) for v in aff[:3, 3]))
    img.SetDirection(tuple(float(v) for v in (aff[:3, :3] / spacing).ravel()))
    return img


def _check_nifti_header(path: Path, where: Where) -> None:
    """Check a NIfTI header before anything allocates or decodes the volume.

    Refuses (ImageError):

    * absurd dimensions (more than :data:`MAX_VOXELS` voxels);
    * a data section that the file cannot hold: an uncompressed file shorter than the
      header's offset plus shape x itemsize (truncated), or a ``.nii.gz`` too small to
      decompress to that many bytes even at deflate's maximal ratio (about 1032:1). So a
      lying header cannot make the reader allocate gigabytes for a kilobyte file. The
      converse, a small ``.nii.gz`` whose data section decompresses to far *more* than the
      shape implies (a gzip bomb), is harmless: only shape x itemsize bytes are ever read;
    * qform and sform that both apply (codes > 0) but place the volume differently, by more
      than :data:`XFORM_ATOL_MM` at any corner of the volume. ITK (and so dlmvi) would
      silently take one of them (the sform when its code is 1 = scanner, else the qform), and
      a mask exported by a tool that follows the other transform would be misplaced without
      anyone noticing; refusing is the safe choice. Within the tolerance (float rounding of
      the quaternion) the file is read with ITK's choice;
    * a non-orthonormal (sheared or skewed) direction matrix in the transform used, beyond
      :data:`ORTHONORMAL_ATOL` on the dot products of its unit axes.
    """
    import nibabel as nib

    gz = path.name.endswith(".gz")
    try:
        if gz:
            with gzip.open(path, "rb") as f:
                raw = f.read(352)
        else:
            with open(path, "rb") as f:
                raw = f.read(352)
        sizeof_hdr = int.from_bytes(raw[:4], "little") if len(raw) >= 4 else 0
        if sizeof_hdr == 540 or int.from_bytes(raw[:4], "big") == 540:
            raise _Nifti2(path)
        hdr = nib.Nifti1Header.from_fileobj(_BytesIO(raw), check=False)
        shape = hdr.get_data_shape()
        itemsize = hdr.get_data_dtype().itemsize
        offset = int(hdr.get_data_offset())
        if bytes(hdr["magic"]).startswith(b"n+1"):
            offset = max(offset, 352)  # single-file NIfTI: voxels follow the 352-byte header
    except _Nifti2:
        raise ImageError(
            f"{where}: {path} is a NIfTI-2 file, which the image reader (ITK) cannot read; save it "
            "as NIfTI-1 (e.g. nibabel: nib.save(nib.Nifti1Image(img.dataobj, img.affine), path))"
        ) from None
    except Exception as exc:
        raise ImageError(
            f"{where}: {path} is not a readable NIfTI file ({type(exc).__name__}: {exc}); "
            "re-export the volume as .nii.gz"
        ) from None
    n = int(np.prod([max(int(s), 1) for s in shape], dtype=np.float64)) if shape else 0
    if n <= 0 or n > MAX_VOXELS:
        raise ImageError(
            f"{where}: {path} declares shape {shape} ({n} voxels); refused before reading "
            f"(limit {MAX_VOXELS}); the header is corrupt"
        )
    need = offset + n * itemsize
    have = path.stat().st_size
    if (not gz and have < need) or (gz and need > MAX_DEFLATE_RATIO * have):
        raise ImageError(
            f"{where}: {path} declares shape {shape} ({need} bytes of header and voxels) but the "
            f"file has only {have} bytes{' compressed' if gz else ''}; refused before reading: the "
            "file is truncated or its header is corrupt - re-export the volume"
        )
    _check_nifti_transforms(hdr, shape, path, where)


def _itk_affine(hdr, default) -> np.ndarray:
    """The RAS affine ITK would use: the sform when its code is 1 (scanner) or no qform is
    set, else the qform; nibabel's default (voxel sizes only) when neither is set."""
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    if scode > 0 and (qcode <= 0 or scode == 1):
        return np.asarray(hdr.get_sform(), dtype=np.float64)
    if qcode > 0:
        return np.asarray(hdr.get_qform(), dtype=np.float64)
    return np.asarray(default, dtype=np.float64)


def _check_nifti_transforms(hdr, shape, path: Path, where: Where) -> None:
    """qform/sform agreement and orthonormality (see :func:`_check_nifti_header`)."""
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    if qcode <= 0 and scode <= 0:
        return  # ANALYZE-style: voxel sizes only, nothing to disagree
    try:
        q = hdr.get_qform() if qcode > 0 else None
        s = hdr.get_sform() if scode > 0 else None
    except Exception as exc:  # e.g. a non-unit quaternion
        raise ImageError(f"{where}: {path} has an invalid qform/sform ({exc}); re-export the volume") from None
    if q is not None and s is not None:
        dims = [max(int(d), 1) for d in (list(shape) + [1, 1, 1])[:3]]
        corners = np.array([[i, j, k, 1.0] for i in (0, dims[0] - 1) for j in (0, dims[1] - 1)
                            for k in (0, dims[2] - 1)]).T
        shift = float(np.abs((q @ corners)[:3] - (s @ corners)[:3]).max())
        if not np.isfinite(shift) or shift > XFORM_ATOL_MM:
            used = "sform" if scode == 1 else "qform"
            raise ImageError(
                f"{where}: {path}: its qform (code {qcode}) and sform (code {scode}) place the volume "
                f"differently (up to {shift:.2f} mm apart; tolerance {XFORM_ATOL_MM} mm). ITK would "
                f"silently use the {used}, and a mask aligned to the other would be misplaced. "
                "Check which one is right and re-export the image and its mask with one transform "
                "(e.g. set the wrong one's code to 0 with nibabel or fslorient)"
            )
    used = s if (s is not None and (q is None or scode == 1)) else q
    lin = np.asarray(used, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(lin, axis=0)
    if not np.all(np.isfinite(lin)) or np.any(norms <= 0):
        raise ImageError(f"{where}: {path} has a degenerate orientation matrix (zero voxel size); re-export the volume")
    unit = lin / norms
    skew = float(np.abs(unit.T @ unit - np.eye(3)).max())
    if skew > ORTHONORMAL_ATOL:
        angle = float(np.degrees(np.arcsin(min(skew, 1.0))))
        raise ImageError(
            f"{where}: {path} has a non-orthonormal direction matrix (axes skewed by up to "
            f"{angle:.3f} degrees: a sheared {'sform' if used is s else 'qform'}); dlmvi needs "
            "orthogonal voxel axes. Resample the volume onto an orthogonal grid (and its mask "
            "with it), or re-export it from the scanner data"
        )


class _Nifti2(Exception):
    """Internal: the header is NIfTI-2 (540 bytes)."""


def _BytesIO(raw: bytes):
    import io

    return io.BytesIO(raw)


def read_dicom_series(folder: Path, where: Where = Where()):
    """Read one DICOM series folder with pydicom into a SimpleITK image.

    Slices are ordered by their position along the slice normal (ImagePositionPatient,
    ImageOrientationPatient); spacing is taken from the positions, not SliceThickness;
    RescaleSlope/RescaleIntercept are applied per file.

    Raises:
        ImageError: no DICOM files, several series, truncated or compressed files that cannot
            be decoded, inconsistent geometry or a missing slice.
    """
    import pydicom
    import SimpleITK as sitk
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    datasets = []
    for f in sorted(folder.iterdir()):
        if not f.is_file() or f.name.startswith(".") or f.name in IGNORED_NAMES:
            continue
        try:
            ds = pydicom.dcmread(f, force=False)
        except InvalidDicomError:
            continue  # not DICOM (notes, thumbnails): ignored
        except Exception as exc:
            raise ImageError(
                f"{where}: {f} is a damaged DICOM file ({type(exc).__name__}: {exc}); "
                "re-export the series"
            ) from None
        if "PixelData" not in ds:
            continue  # e.g. a DICOMDIR or a presentation state
        datasets.append((f, ds))
    if not datasets:
        raise ImageError(f"{where}: {folder} holds no DICOM image files")

    series = {str(ds.get("SeriesInstanceUID", "")): ds.get("SeriesNumber", "?") for _, ds in datasets}
    if len(series) > 1:
        # Named by SeriesNumber: UIDs are identifiers that must not reach logs.
        numbers = ", ".join(sorted(str(n) for n in series.values()))
        raise ImageError(
            f"{where}: {folder} holds {len(series)} DICOM series (numbers {numbers}); keep one "
            "series per sequence folder (the mapping of series to sequence is ambiguous)"
        )
    sops = [str(ds.get("SOPInstanceUID", f.name)) for f, ds in datasets]
    if len(set(sops)) != len(sops):
        raise ImageError(f"{where}: {folder} holds duplicate SOPInstanceUIDs; remove the copies")

    first = datasets[0][1]
    try:
        iop = np.array([float(v) for v in first.ImageOrientationPatient], dtype=np.float64)
        spacing_xy = [float(v) for v in first.PixelSpacing]
    except AttributeError as exc:
        raise ImageError(
            f"{where}: {datasets[0][0]} lacks {exc.args[0].split()[-1]} (geometry); "
            "cannot place the slices"
        ) from None
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    positions = []
    for f, ds in datasets:
        if "ImagePositionPatient" not in ds:
            raise ImageError(f"{where}: {f} lacks ImagePositionPatient; cannot order the slices")
        if not np.allclose([float(v) for v in ds.ImageOrientationPatient], iop, atol=1e-3):
            raise ImageError(f"{where}: {f} is oriented differently from the rest of {folder}")
        positions.append(np.array([float(v) for v in ds.ImagePositionPatient]))
    dist = np.array([p @ normal for p in positions])
    order = np.argsort(dist, kind="stable")
    dist = dist[order]
    gaps = np.diff(dist)
    if len(gaps) and np.any(gaps <= 1e-6):
        raise ImageError(f"{where}: {folder} has two slices at the same position; remove duplicates")
    if len(gaps) > 1:
        med = float(np.median(gaps))
        bad = np.flatnonzero(np.abs(gaps - med) > SPACING_RTOL * med)
        if bad.size:
            i = int(bad[0])
            f_a = datasets[order[i]][0].name
            f_b = datasets[order[i + 1]][0].name
            raise ImageError(
                f"{where}: {folder}: uneven slice spacing ({gaps[i]:.2f} mm between {f_a} and "
                f"{f_b}, {med:.2f} mm elsewhere); a slice is probably missing - re-export the "
                "complete series"
            )
        dz = med
    else:
        dz = float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1.0)))

    slices = []
    for k in order:
        f, ds = datasets[k]
        try:
            arr = ds.pixel_array
        except Exception as exc:
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "?")
            raise ImageError(
                f"{where}: cannot decode pixels of {f} (transfer syntax {ts}: "
                f"{type(exc).__name__}: {str(exc)[:160]}); install a codec (pylibjpeg, gdcm) "
                "or re-export the series uncompressed"
            ) from None
        if arr.ndim != 2:
            raise ImageError(
                f"{where}: {f} is a multi-frame (enhanced) DICOM, which dlmvi does not read; "
                "convert the series to NIfTI (e.g. dcm2niix) or to classic single-frame DICOM"
            )
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        slices.append(arr.astype(np.float32) * slope + intercept)
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise ImageError(f"{where}: slices of {folder} differ in size {sorted(shapes)}")
    vol = np.stack(slices)  # (z, rows, cols)
    img = sitk.GetImageFromArray(vol)
    # DICOM PixelSpacing is (row spacing, column spacing) = (dy, dx).
    img.SetSpacing((spacing_xy[1], spacing_xy[0], dz))
    img.SetOrigin(tuple(float(v) for v in positions[order[0]]))
    img.SetDirection(tuple(np.column_stack([row, col, normal]).ravel()))
    return img


def check_finite(arr: np.ndarray, where: Where, path: Path) -> None:
    """Raise ImageError if the volume holds NaN or infinite voxels."""
    if not np.isfinite(arr).all():
        n = int((~np.isfinite(arr)).sum())
        raise ImageError(
            f"{where}: {path} contains {n} NaN or infinite voxels; fix the export "
            "(or replace them, e.g. with 0) and rerun"
        )


def same_grid(img, ref, atol_mm: float = 1e-3 * 10, atol_dir: float = 1e-4) -> str | None:
    """Why ``img`` is not on ``ref``'s voxel grid, or None when it is.

    Tolerances: origin within ``atol_mm`` mm (default 0.01 mm), spacing within 1e-4
    relative, direction cosines within ``atol_dir``.
    """
    if img.GetSize() != ref.GetSize():
        return f"size {img.GetSize()} differs from the image's {ref.GetSize()}"
    if not np.allclose(img.GetSpacing(), ref.GetSpacing(), rtol=1e-4, atol=0):
        return f"spacing {np.round(img.GetSpacing(), 4).tolist()} differs from the image's {np.round(ref.GetSpacing(), 4).tolist()}"
    if not np.allclose(img.GetDirection(), ref.GetDirection(), atol=atol_dir):
        return "orientation (direction cosines) differs from the image's"
    if not np.allclose(img.GetOrigin(), ref.GetOrigin(), atol=atol_mm):
        off = np.asarray(img.GetOrigin()) - np.asarray(ref.GetOrigin())
        return f"origin is shifted by {np.round(off, 3).tolist()} mm from the image's"
    return None


def image_orientation(path) -> tuple[str, str]:
    """Orientation code (e.g. ``"LPS"``, DICOM convention) and acquisition plane of an image.

    Reads only the header (NIfTI) or one file (DICOM series folder). The plane is the one
    perpendicular to the slice direction: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
    """
    import SimpleITK as sitk

    path = Path(path)
    if path.is_dir():
        import pydicom

        direction = None
        for f in sorted(path.iterdir()):
            if not f.is_file() or f.name.startswith("."):
                continue
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["ImageOrientationPatient"])
            except Exception:
                continue
            iop = ds.get("ImageOrientationPatient")
            if iop is not None:
                r, c = np.array(iop[:3], float), np.array(iop[3:], float)
                direction = np.column_stack([r, c, np.cross(r, c)])
                break
        if direction is None:
            raise ValueError(f"{path}: no DICOM file with ImageOrientationPatient")
    else:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        dim = reader.GetDimension()
        direction = np.array(reader.GetDirection()).reshape(dim, dim)[:3, :3]
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines([float(v) for v in direction.ravel()])
    normal = np.abs(direction[:, 2])
    plane = ("sagittal", "coronal", "axial")[int(np.argmax(normal))]
    return str(code), plane
