"""One patient: clinical values plus the image sources of each sequence.

:meth:`Patient.load` reads a sequence and its tumour mask (or rasterises the radiologist's
boxes), checks that the mask lies on the image's voxel grid, and returns both reoriented
to LPS so that array axis 0 is axial.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.errors import CohortWarning, ImageError
from dlmvi.io.images import Where, check_finite, read_volume, same_grid


@dataclass(frozen=True)
class SequenceSource:
    """Where one sequence of one patient comes from.

    Attributes:
        sequence: T1, T1A, T1V, T1D, T2 or DWI.
        image: a NIfTI file or a DICOM series folder.
        mask: a NIfTI tumour mask on the image grid, or None when boxes are given.
        boxes: rows of rois.csv for this patient and sequence (slice, x0, y0, x1, y1), or None.
        volume: which volume of a multi-volume series or 4-D file (``"b 800"``,
            ``"temporal position 2"``); None: the only one (DWI: the highest b-value).
        choice_file: the volumes.toml that set ``volume`` (its changes invalidate caches).
    """

    sequence: str
    image: Path
    mask: Path | None = None
    boxes: tuple[tuple[int, int, int, int, int], ...] | None = None
    volume: str | None = None
    choice_file: Path | None = None

    def files(self) -> list[Path]:
        """Every file this source reads (for fingerprints)."""
        out = sorted(self.image.iterdir()) if self.image.is_dir() else [self.image]
        if self.mask is not None:
            out.append(self.mask)
        if self.choice_file is not None:
            out.append(self.choice_file)
        return [p for p in out if p.is_file()]


@dataclass
class LoadedSequence:
    """A sequence read and checked, reoriented to LPS.

    Attributes:
        image: float32 array (z, y, x).
        mask: bool array (z, y, x), True inside the tumour (or the boxes).
        spacing: voxel size in mm as (x, y, z).
        fixed_slices: the axial slices the radiologist boxed (rois.csv), else None.
    """

    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]
    fixed_slices: list[int] | None = None


@dataclass
class Patient:
    """All that dlmvi knows about one patient (TorchIO's Subject, for this study)."""

    patient_id: str
    cohort: str
    mvi_grade: str
    clinical: dict = field(default_factory=dict)
    sources: dict[str, SequenceSource] = field(default_factory=dict)

    @property
    def mvi(self) -> int:
        """1 when MVI is present (M1 or M2), else 0."""
        return int(self.mvi_grade in ("M1", "M2"))

    def load(self, sequence: str, notes: list[str] | None = None) -> LoadedSequence:
        """Read one sequence and its mask; raise ImageError naming the patient and file.

        Suspicious but usable input (e.g. mask labels other than 0/1) is reported as a
        CohortWarning, or appended to ``notes`` when given (thread-safe, for parallel prepare).
        """
        import SimpleITK as sitk

        where = Where(self.patient_id, sequence)
        src = self.sources.get(sequence)
        if src is None:
            raise ImageError(
                f"{where}: no image (expected images/{self.patient_id}/{sequence}.nii.gz or a "
                f"DICOM folder images/{self.patient_id}/{sequence}/)"
            )
        # Masks are compared in one orientation (LPS): a mask exported by another tool may
        # store the same physical grid with flipped or permuted axes. Boxes are drawn on the
        # image file's own grid, so they are rasterised before reorienting.
        img = read_chosen(src, where, notes)
        if src.mask is not None:
            mask_img = read_volume(src.mask, where, reorient=True)
            why = same_grid(mask_img, img)
            if why:
                raise ImageError(
                    f"{where}: mask {src.mask} is not on the image grid of {src.image}: {why}; "
                    "re-export the mask on the image grid"
                )
            mask_img.CopyInformation(img)  # drop sub-tolerance float noise
            fixed = None
        elif src.boxes is not None:
            mask_img = _rasterise_boxes(src, img, where)
            fixed = True
        else:
            raise ImageError(
                f"{where}: no tumour mask ({self.patient_id}/{sequence}_roi.nii.gz) and no "
                "boxes in rois.csv; draw the tumour ROI"
            )
        if fixed:
            img = sitk.DICOMOrient(img, "LPS")
            mask_img = sitk.DICOMOrient(mask_img, "LPS")
        arr = sitk.GetArrayFromImage(img)
        check_finite(arr, where, src.image)
        m = sitk.GetArrayFromImage(mask_img)
        if not np.isfinite(m).all():
            raise ImageError(f"{where}: mask {src.mask} contains NaN or infinite values")
        odd = (m != 0) & (m != 1)
        extra = [float(v) for v in np.unique(m[odd])] if odd.any() else []
        if extra:
            msg = (f"{where}: mask {src.mask} has labels {extra[:5]} besides 0/1; every non-zero "
                   "voxel is taken as tumour")
            if notes is None:
                warnings.warn(msg, CohortWarning, stacklevel=2)
            else:
                notes.append(msg)
        mask = m != 0
        if not mask.any():
            raise ImageError(
                f"{where}: mask {src.mask or 'from rois.csv'} is empty (no tumour voxel); "
                "draw the tumour or remove the patient"
            )
        fixed_slices = sorted(np.flatnonzero(mask.any(axis=(1, 2))).tolist()) if fixed else None
        return LoadedSequence(arr.astype(np.float32, copy=False), mask, tuple(img.GetSpacing()), fixed_slices)


def _rasterise_boxes(src: SequenceSource, img, where: Where):
    """Boxes of rois.csv (file-grid voxel indices, inclusive) as a mask image on that grid."""
    import SimpleITK as sitk

    nx, ny, nz = img.GetSize()
    m = np.zeros((nz, ny, nx), np.uint8)
    for s, x0, y0, x1, y1 in src.boxes:
        if x0 > x1 or y0 > y1:
            raise ImageError(f"{where}: box ({x0},{y0})-({x1},{y1}) on slice {s} has x0>x1 or y0>y1 (rois.csv)")
        if not (0 <= s < nz and 0 <= x0 and x1 < nx and 0 <= y0 and y1 < ny):
            raise ImageError(
                f"{where}: box slice {s}, ({x0},{y0})-({x1},{y1}) lies outside the image "
                f"{src.image} of {nx}x{ny}x{nz} voxels (rois.csv; indices are 0-based)"
            )
        m[s, y0 : y1 + 1, x0 : x1 + 1] = 1
    out = sitk.GetImageFromArray(m)
    out.CopyInformation(img)
    return out


def boxes_from_table(rois: pd.DataFrame, patient_id: str, sequence: str):
    rows = rois[(rois["patient_id"] == patient_id) & (rois["sequence"] == sequence)]
    if rows.empty:
        return None
    return tuple(tuple(int(v) for v in r) for r in rows[["slice", "x0", "y0", "x1", "y1"]].to_numpy())


def read_chosen(src: SequenceSource, where: Where, notes: list[str] | None):
    """The sequence's image, the chosen volume when its series (or 4-D file) holds several.

    DWI defaults to the highest b-value; any other multi-volume series needs a choice in
    volumes.toml, and the error lists the volumes and the line to add. A choice that was made
    (explicitly or by default) is reported, naming every volume.
    """
    from dlmvi.io.dicom_volumes import HIGHEST_B, VolumeChoiceError

    choice = src.volume or (HIGHEST_B if src.sequence == "DWI" else None)
    info: dict = {}
    try:
        img = read_volume(src.image, where, reorient=src.mask is not None, volume=choice, info=info)
    except VolumeChoiceError as exc:
        example = next((v.label for v in exc.volumes if "temporal position" in v.label), exc.volumes[-1].label)
        cohort_toml = src.image.parent.parent.parent / "volumes.toml"
        listing = str(exc).removesuffix("; say which one to read")
        raise ImageError(
            f"{listing}. Say which volume is {src.sequence}: add the line {src.sequence} = \"{example}\" "
            f"(or another label above) to {cohort_toml}, or to {src.image.parent / 'volumes.toml'} "
            "for this patient only"
        ) from None
    if len(info.get("volumes", ())) > 1:
        why = ("the highest b-value, the default for DWI" if src.volume is None
               else f"as {src.choice_file or 'volumes.toml'} says")
        msg = (f"{where}: {src.image} holds {len(info['volumes'])} volumes ({'; '.join(info['volumes'])}); "
               f"reading {info['chosen']} ({why})")
        if notes is None:
            warnings.warn(msg, CohortWarning, stacklevel=3)
        else:
            notes.append(msg)
    return img
