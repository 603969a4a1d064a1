"""Reading MRI volumes and tumour masks (NIfTI files and DICOM series).

Every volume comes back as a SimpleITK image reoriented to LPS, so that array index
``[z, y, x]`` is (inferior->superior, anterior->posterior, right->left) and axis 0 is axial
whatever the acquisition's orientation.

* DICOM series (classic, enhanced multi-frame, Siemens MOSAIC) are read with pydicom through
  one index (:mod:`dlmvi.io.dicom_series`): slice order and spacing come from the image
  positions, every frame's rescale is applied, and a series holding several volumes
  (b-values, echoes, temporal positions) is split; ``volume`` chooses one
  (:mod:`dlmvi.io.dicom_volumes`).
* NIfTI-1 files (``.nii``, ``.nii.gz``, with or without header extensions) are read with
  nibabel, placed by the transform ITK chooses (:func:`itk_transform`); a 4-D file is a list
  of volumes, chosen like DICOM ones (``volume 2``; ``b 800`` with a dcm2niix ``.bval``).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlmvi.errors import ImageError

#: Largest volume accepted before allocation (voxels; 2**28, e.g. 1024 x 1024 x 256, 1 GiB as
#: float32); protects against absurd headers. Liver MRI volumes are well under 10**8 voxels.
MAX_VOXELS = 2**28

#: Deflate cannot expand data more than about 1032-fold; a .nii.gz whose header needs more
#: bytes than this times its compressed size is truncated (or lying), refused before reading.
MAX_DEFLATE_RATIO = 1100

#: Largest distance (mm) between where the qform and the sform put any corner of the volume
#: when both are set; beyond it the file is refused (see :func:`_check_nifti_transforms`).
#: 1 mm: float32 quaternions cannot represent rotations near 180 degrees more precisely than
#: ~1e-4 rad, i.e. ~0.2 mm over a 40 cm liver field of view (dcm2niix files differ by this
#: much, harmlessly); a mask placed 1 mm off moves the tumour crop by one or two pixels at
#: liver MRI resolutions (0.7-1.5 mm), far inside the 5-10 pixel margin the crop adds, and by
#: under a quarter of the 4-8 mm slice thickness, so the key slices do not change. Beyond
#: 1 mm the two transforms describe different placements, not rounding.
XFORM_ATOL_MM = 1.0

#: Largest |dot product| between two different unit voxel axes (about 0.006 degrees); ITK's
#: tolerance for an orthonormal sform.
ORTHONORMAL_ATOL = 1e-4

#: Largest relative difference between pixdim and the voxel size the chosen transform implies.
VOXEL_SIZE_RTOL = 1e-2


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


def read_volume(path: str | os.PathLike, where: Where = Where(), reorient: bool = True, *,
                volume: str | None = None, info: dict | None = None):
    """Read a NIfTI file or a DICOM series folder as a float32 SimpleITK image.

    Args:
        path: ``.nii``/``.nii.gz`` file or a folder holding one DICOM series.
        where: patient and sequence, named in error messages.
        reorient: reorient to LPS (axis 0 of the array is axial).
        volume: which volume of a multi-volume series or 4-D file (``"b 800"``,
            ``"temporal position 2"``, ``"volume 3"``; see :mod:`dlmvi.io.dicom_volumes`).
        info: when given, filled with ``volumes`` (every volume's label and details) and
            ``chosen`` (the label of the one read).

    Raises:
        ImageError: unreadable file, absurd header, several series, a missing slice, several
            volumes without a choice. NaN/inf voxels are *not* raised here (see
            :func:`check_finite`).
    """
    import SimpleITK as sitk

    path = Path(path)
    if path.is_dir():
        img = read_dicom_series(path, where, volume, info)
    elif path.is_file():
        img = _read_nifti(path, where, reorient, volume, info)
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


def _read_nifti(path: Path, where: Where, reorient: bool = False, volume: str | None = None,
                info: dict | None = None):
    """A NIfTI file as a SimpleITK image, read with nibabel alone (one decompression).

    ITK's NIfTI reader silently turns NaN into 0, which would hide corrupt exports, and
    decompresses the file once more just for the header; so voxels and geometry come from
    nibabel, placed by the transform ITK would choose (:func:`itk_transform`; the header
    check has refused files whose qform and sform disagree by more than
    :data:`XFORM_ATOL_MM`). Header extensions (dcm2niix, AFNI, DICOM...) are read by
    nibabel and do not affect the image. A 4-D file holds volumes ``volume 1..N`` (labelled
    by b-value too when dcm2niix's ``.bval`` lies beside it); ``volume`` chooses one. With
    ``reorient`` the axes are permuted and flipped to LPS in numpy (views, no resampling)
    before the image is built.
    """
    import nibabel as nib
    import SimpleITK as sitk

    hdr = _check_nifti_header(path, where)
    try:
        nib_img = nib.load(str(path))
        shape = tuple(int(s) for s in nib_img.shape)
        while len(shape) > 3 and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) == 4 and shape[3] > 1:
            k = _nifti_volume(path, shape[3], where, volume, info)
            data = np.asarray(nib_img.dataobj[..., k], dtype=np.float32)
        elif len(shape) <= 3:
            data = np.asarray(nib_img.get_fdata(dtype=np.float32)).reshape(shape)
        else:
            raise ImageError(
                f"{where}: {path} has shape {shape}; a 3-D volume (or a 4-D file of volumes) is needed")
        if data.dtype != np.float32:
            data = data.astype(np.float32)
    except ImageError:
        raise
    except Exception as exc:
        msg = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
        raise ImageError(
            f"{where}: cannot read {path} ({type(exc).__name__}: {msg}); the file is truncated or "
            "corrupt - re-export it"
        ) from None
    if data.ndim != 3:
        raise ImageError(
            f"{where}: {path} has shape {data.shape}; a 3-D volume is needed "
            "(split 4-D files into one volume per sequence)"
        )
    aff = _RAS_TO_LPS @ itk_transform(hdr)[1]
    if reorient:
        ornt = nib.orientations.io_orientation(aff)  # voxel axes -> closest LPS world axes
        data = nib.orientations.apply_orientation(data, ornt)
        aff = aff @ nib.orientations.inv_ornt_aff(ornt, shape[:3])
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise ImageError(f"{where}: {path} has a zero voxel size in its affine; re-export it")
    img = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetOrigin(tuple(float(v) for v in aff[:3, 3]))
    img.SetDirection(tuple(float(v) for v in (aff[:3, :3] / spacing).ravel()))
    return img


def _nifti_volume(path: Path, n: int, where: Where, choice: str | None, info: dict | None) -> int:
    """Index of the chosen volume of a 4-D NIfTI file (labels from a dcm2niix .bval sidecar)."""
    from dlmvi.io.dicom_volumes import Volume, choose_volume

    bvals = None
    stem = path.name[:-7] if path.name.endswith(".nii.gz") else path.name[:-4]
    side = path.with_name(stem + ".bval")
    if side.is_file():
        try:
            vals = [float(v) for v in side.read_text().split()]
            bvals = vals if len(vals) == n else None
        except ValueError:
            bvals = None
    vols = []
    for k in range(n):
        parts = {"volume": k + 1}
        label = f"volume {k + 1}"
        if bvals is not None:
            parts["b"] = bvals[k]
            label = f"volume {k + 1}, b {bvals[k]:g}"
        vols.append(Volume(label, parts, "4th dimension" + (" + .bval" if bvals else ""), "", [], slices=None))
    chosen = choose_volume(vols, choice, f"{where}: {path} (4-D NIfTI)")
    if info is not None:
        info["volumes"] = [v.describe() for v in vols]
        info["chosen"] = chosen.label
        info["key"] = chosen.key
    return chosen.parts["volume"] - 1


def _check_nifti_header(path: Path, where: Where):
    """Check a NIfTI header before anything allocates or decodes the volume; return it.

    Only the 348-byte header is parsed (header extensions, which follow it, are left to
    nibabel's reader and never make a file unreadable here). Refuses (ImageError):

    * absurd dimensions (more than :data:`MAX_VOXELS` voxels);
    * a data section that the file cannot hold: an uncompressed file shorter than the
      header's offset plus shape x itemsize (truncated), or a ``.nii.gz`` too small to
      decompress to that many bytes even at deflate's maximal ratio (about 1032:1). So a
      lying header cannot make the reader allocate gigabytes for a kilobyte file. The
      converse, a small ``.nii.gz`` whose data section decompresses to far *more* than the
      shape implies (a gzip bomb), is harmless: only shape x itemsize bytes are ever read;
    * transforms that cannot be trusted (:func:`_check_nifti_transforms`).
    """
    import nibabel as nib

    gz = path.name.endswith(".gz")
    try:
        if gz:
            with gzip.open(path, "rb") as f:
                raw = f.read(348)
        else:
            with open(path, "rb") as f:
                raw = f.read(348)
        sizeof_hdr = int.from_bytes(raw[:4], "little") if len(raw) >= 4 else 0
        if sizeof_hdr == 540 or int.from_bytes(raw[:4], "big") == 540:
            raise _Nifti2(path)
        if len(raw) < 348:
            raise ValueError(f"header has {len(raw)} of 348 bytes")
        # A zeroed extension flag: extensions are nibabel's reader's business, not the check's.
        hdr = nib.Nifti1Header.from_fileobj(_BytesIO(raw + b"\0\0\0\0"), check=False)
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
    return hdr


def _orthonormal_skew(mat: np.ndarray) -> float:
    """Largest |dot product| between two different unit columns of a 3x3 matrix (inf if degenerate)."""
    lin = np.asarray(mat, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(lin, axis=0)
    if not np.all(np.isfinite(lin)) or np.any(norms <= 0):
        return float("inf")
    unit = lin / norms
    return float(np.abs(unit.T @ unit - np.eye(3)).max())


def _very_similar(q: np.ndarray, s: np.ndarray, tol: float = 1e-4) -> bool:
    """ITK's test that a non-scanner sform is the qform at higher precision: same rotation,
    voxel sizes and offset within 1e-4."""
    qn, sn = np.linalg.norm(q[:3, :3], axis=0), np.linalg.norm(s[:3, :3], axis=0)
    if np.any(qn <= 0) or np.any(sn <= 0):
        return False
    return bool(np.allclose(q[:3, :3] / qn, s[:3, :3] / sn, atol=tol) and np.allclose(qn, sn, atol=tol)
                and np.allclose(q[:3, 3], s[:3, 3], atol=tol))


def itk_transform(hdr) -> tuple[str, np.ndarray]:
    """The transform ITK's NIfTI reader (ITK 5.4, SimpleITK 2.5) uses, as ("sform"|"qform"|"none", RAS affine).

    ITK's rule (itkNiftiImageIO.cxx, SetImageIOOrientationFromNIfTI): the sform is used when
    its code is set and it is orthonormal (after removing the voxel sizes) *and* either no
    qform is set, or its code is 1 (scanner), or it equals the qform within 1e-4 (the same
    transform at float precision); otherwise the qform when its code is set. Neither set
    (ANALYZE-style): voxel sizes only, origin 0, identity direction in LPS.
    """
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    if qcode <= 0 and scode <= 0:
        zooms = [abs(float(z)) or 1.0 for z in (list(hdr.get_zooms()) + [1.0, 1.0, 1.0])[:3]]
        return "none", _RAS_TO_LPS @ np.diag([*zooms, 1.0])  # LPS identity = RAS diag(-1, -1, 1)
    s = np.asarray(hdr.get_sform(), dtype=np.float64) if scode > 0 else None
    q = np.asarray(hdr.get_qform(), dtype=np.float64) if qcode > 0 else None
    if s is not None and _orthonormal_skew(s) <= ORTHONORMAL_ATOL:
        if q is None or scode == 1 or _very_similar(q, s):
            return "sform", s
    if q is not None:
        return "qform", q
    return "sform", s  # a sheared sform alone: refused by _check_nifti_transforms


def _check_nifti_transforms(hdr, shape, path: Path, where: Where) -> None:
    """Refuse NIfTI transforms that would place the image (or its mask) wrongly.

    * qform and sform both set (codes > 0) but placing some corner of the volume more than
      :data:`XFORM_ATOL_MM` apart: the file is read with ITK's choice only when they agree
      to within that (e.g. dcm2niix's float32 quaternion differing from its sform by 0.2 mm);
      beyond it a mask exported by a tool following the other transform would be misplaced;
    * a sheared or skewed transform used alone (ITK cannot read it either);
    * a chosen transform whose voxel sizes differ from pixdim by more than
      :data:`VOXEL_SIZE_RTOL` (the header contradicts itself).
    """
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    if qcode <= 0 and scode <= 0:
        return  # ANALYZE-style: voxel sizes only, nothing to disagree
    try:
        q = np.asarray(hdr.get_qform(), dtype=np.float64) if qcode > 0 else None
        s = np.asarray(hdr.get_sform(), dtype=np.float64) if scode > 0 else None
    except Exception as exc:  # e.g. a non-unit quaternion
        raise ImageError(f"{where}: {path} has an invalid qform/sform ({exc}); re-export the volume") from None
    used_name, used = itk_transform(hdr)
    if q is not None and s is not None:
        dims = [max(int(d), 1) for d in (list(shape) + [1, 1, 1])[:3]]
        corners = np.array([[i, j, k, 1.0] for i in (0, dims[0] - 1) for j in (0, dims[1] - 1)
                            for k in (0, dims[2] - 1)]).T
        shift = float(np.sqrt((((q @ corners)[:3] - (s @ corners)[:3]) ** 2).sum(axis=0)).max())
        if not np.isfinite(shift) or shift > XFORM_ATOL_MM:
            raise ImageError(
                f"{where}: {path}: its qform (code {qcode}) and sform (code {scode}) place the volume "
                f"differently (up to {shift:.2f} mm apart; tolerance {XFORM_ATOL_MM} mm). ITK would "
                f"silently use the {used_name}, and a mask aligned to the other would be misplaced. "
                "Check which one is right and re-export the image and its mask with one transform "
                "(e.g. set the wrong one's code to 0 with nibabel or fslorient)"
            )
    skew = _orthonormal_skew(used)
    if not np.isfinite(skew):
        raise ImageError(f"{where}: {path} has a degenerate orientation matrix (zero voxel size); re-export the volume")
    if skew > ORTHONORMAL_ATOL:
        angle = float(np.degrees(np.arcsin(min(skew, 1.0))))
        raise ImageError(
            f"{where}: {path} has a non-orthonormal direction matrix (axes skewed by up to "
            f"{angle:.3f} degrees: a sheared {used_name}); dlmvi needs "
            "orthogonal voxel axes. Resample the volume onto an orthogonal grid (and its mask "
            "with it), or re-export it from the scanner data"
        )
    pixdim = np.abs(np.asarray(hdr["pixdim"][1:4], dtype=np.float64))
    implied = np.linalg.norm(used[:3, :3], axis=0)
    if used_name == "sform" and np.all(pixdim > 0) and np.any(np.abs(implied - pixdim) > VOXEL_SIZE_RTOL * pixdim):
        raise ImageError(
            f"{where}: {path}: its sform implies voxels of {np.round(implied, 4).tolist()} mm but pixdim "
            f"says {np.round(pixdim, 4).tolist()} mm; the header contradicts itself - re-export the volume")


class _Nifti2(Exception):
    """Internal: the header is NIfTI-2 (540 bytes)."""


def _BytesIO(raw: bytes):
    import io

    return io.BytesIO(raw)


def read_dicom_series(folder: Path, where: Where = Where(), volume: str | None = None, info: dict | None = None):
    """Read one DICOM series folder (classic, enhanced multi-frame or MOSAIC) as a SimpleITK image.

    Slices are ordered by their position along the slice normal (ImagePositionPatient,
    ImageOrientationPatient, or the per-frame functional groups); spacing is taken from the
    positions, not SliceThickness; each frame's rescale is applied. A series holding several
    volumes (b-values, echoes, temporal positions) is split and ``volume`` says which one to
    read (see :mod:`dlmvi.io.dicom_volumes`). Implemented in :mod:`dlmvi.io.dicom_series`.

    Raises:
        ImageError: no DICOM files, several series, truncated or compressed files that cannot
            be decoded, inconsistent geometry, a missing slice, several volumes without a
            choice (:class:`~dlmvi.io.dicom_volumes.VolumeChoiceError`).
    """
    from dlmvi.io.dicom_series import read_series_folder

    return read_series_folder(folder, where, volume, info)


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


def nifti_bytes(img, descrip: str = "dlmvi") -> bytes:
    """A SimpleITK image as the bytes of a ``.nii.gz`` file, deterministically.

    The voxel grid is kept as it is (no reorientation: axis order as acquired, like
    dcm2niix); qform and sform (both code 1, scanner) hold the same transform, so every
    reader places it alike. Voxels are int16 when they are all integers within int16 (no
    rounding), else float32. The header carries nothing but geometry, data type, units and
    ``descrip``; the gzip stream has no file name and no time stamp.
    """
    import SimpleITK as sitk
    import nibabel as nib

    arr = sitk.GetArrayFromImage(img)  # (z, y, x)
    if arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) \
            and arr.min() >= -32768 and arr.max() <= 32767:
        arr = arr.astype(np.int16)
    else:
        arr = arr.astype(np.float32)
    spacing = np.asarray(img.GetSpacing(), dtype=np.float64)
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = direction * spacing
    aff[:3, 3] = img.GetOrigin()
    aff = _RAS_TO_LPS @ aff  # LPS -> RAS (the same flip both ways)
    out = nib.Nifti1Image(np.ascontiguousarray(arr.transpose(2, 1, 0)), aff)
    out.header.set_xyzt_units("mm", "sec")
    out.header["descrip"] = descrip[:79].encode("ascii", "replace")
    out.set_qform(aff, code=1)
    out.set_sform(aff, code=1)
    return gzip.compress(out.to_bytes(), compresslevel=1, mtime=0)  # level 1: 3x faster, ~10% larger


def write_nifti(img, path: str | os.PathLike, descrip: str = "dlmvi") -> Path:
    """Write a SimpleITK image as ``.nii.gz`` atomically (see :func:`nifti_bytes`)."""
    from dlmvi.io.atomic import write_bytes

    return write_bytes(path, nifti_bytes(img, descrip))

def image_orientation(path) -> tuple[str, str]:
    """Orientation code (e.g. ``"LPS"``, DICOM convention) and acquisition plane of an image.

    Reads only the header (NIfTI) or the headers of a DICOM series folder up to the first
    placed frame (classic, enhanced multi-frame - whose orientation is in its functional
    groups - or MOSAIC; :mod:`dlmvi.io.dicom_index`). The plane is the one perpendicular to
    the slice direction: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
    """
    import SimpleITK as sitk

    from dlmvi.io.dicom_index import index_file, is_candidate

    path = Path(path)
    if path.is_dir():
        direction = None
        for f in sorted(path.iterdir()):
            if not f.is_file() or not is_candidate(f):
                continue
            try:
                rec = index_file(f)
            except Exception:
                continue
            fr = next((fr for fr in (rec.frames if rec is not None else ()) if fr.orientation), None)
            if fr is not None:
                r, c = np.array(fr.orientation[:3], float), np.array(fr.orientation[3:], float)
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
