"""Carrying a tumour box from one sequence to the others through patient coordinates.

The sequences of one MRI session share a frame of reference (DICOM FrameOfReferenceUID): a
point of the patient has the same LPS coordinates (mm) in each, whatever each series' grid,
spacing and orientation. A box drawn on key slices of one sequence is a physical region - the
prism of its rectangles over the boxed slices, voxel edges included - and lands in another
sequence where that region lies:

* the eight corners of every boxed slice's rectangle (half a voxel beyond the voxel centres,
  half a slice above and below) go from the source's voxel indices to LPS millimetres and on
  to the target's continuous voxel indices (the ITK convention: an image's direction cosines,
  spacing and origin; index (0, 0, 0) is the centre of the first voxel);
* the carried rectangle is the smallest box of whole target voxels that holds every corner,
  clipped to the target image;
* the carried key slices are the ``n`` consecutive target slices nearest to the region's centre.

Breathing moves the liver between breath-holds, so a carried box is a proposal the reader
moves or resizes before confirming it. Boxes are indices of each image file's own voxel grid
(rois.csv's convention: ``slice`` is ITK index 2, ``x`` index 0, ``y`` index 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlmvi.errors import CohortError

#: A box row as rois.csv holds it: (slice, x0, y0, x1, y1), inclusive voxel indices.
BoxRow = tuple[int, int, int, int, int]


class CarryError(CohortError):
    """A box cannot be carried to a sequence (another frame of reference, outside its volume)."""


@dataclass(frozen=True)
class Grid:
    """The voxel grid of one image file in patient coordinates (ITK/LPS convention).

    Attributes:
        size: voxels along index 0, 1, 2 (x, y, slice).
        spacing: mm between voxel centres along each index.
        origin: LPS position (mm) of voxel (0, 0, 0)'s centre.
        direction: 3x3 direction cosines, row-major (column j: the LPS direction of index j).
        frame: the DICOM FrameOfReferenceUID, or None when the file does not say (NIfTI).
    """

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    frame: str | None = None

    @classmethod
    def from_image(cls, img, frame: str | None = None) -> "Grid":
        """The grid of a SimpleITK image."""
        return cls(tuple(int(v) for v in img.GetSize()), tuple(float(v) for v in img.GetSpacing()),
                   tuple(float(v) for v in img.GetOrigin()), tuple(float(v) for v in img.GetDirection()), frame)

    @property
    def matrix(self) -> np.ndarray:
        """Index to LPS: ``point = origin + matrix @ index`` (direction times spacing)."""
        return np.asarray(self.direction, float).reshape(3, 3) * np.asarray(self.spacing, float)[None, :]

    def to_physical(self, index) -> np.ndarray:
        """Continuous indices (N, 3) as LPS points (mm)."""
        return np.asarray(index, float) @ self.matrix.T + np.asarray(self.origin, float)

    def to_index(self, points) -> np.ndarray:
        """LPS points (N, 3) as continuous indices of this grid."""
        return (np.asarray(points, float) - np.asarray(self.origin, float)) @ np.linalg.inv(self.matrix).T

    def overlaps(self, other: "Grid") -> bool:
        """True when the two volumes share some space (their bounding boxes in this grid intersect)."""
        idx = self.to_index(other.to_physical(_volume_corners(other)))
        lo, hi = idx.min(axis=0), idx.max(axis=0)
        return bool(np.all(hi >= -0.5) and np.all(lo <= np.asarray(self.size) - 0.5))


def _volume_corners(grid: Grid) -> np.ndarray:
    n = np.asarray(grid.size, float)
    return np.array([[x, y, z] for x in (-0.5, n[0] - 0.5) for y in (-0.5, n[1] - 0.5) for z in (-0.5, n[2] - 0.5)])


def box_corners(rows) -> np.ndarray:
    """The corners (continuous source indices, (8 * rows, 3)) of the region the boxes mark."""
    out = []
    for s, x0, y0, x1, y1 in rows:
        for x in (x0 - 0.5, x1 + 0.5):
            for y in (y0 - 0.5, y1 + 0.5):
                for z in (s - 0.5, s + 0.5):
                    out.append((x, y, z))
    return np.asarray(out, float)


def same_frame(source: Grid, target: Grid) -> str | None:
    """Why boxes cannot go from ``source`` to ``target`` (None: they can).

    Both files naming their frame of reference must name the same one; a file that names none
    (NIfTI) is taken to be in the patient's frame, as long as the two volumes overlap.
    """
    if source.frame and target.frame and source.frame != target.frame:
        return "the two series have different frames of reference (DICOM FrameOfReferenceUID)"
    if not target.overlaps(source):
        return "the two volumes do not overlap in patient coordinates (another frame of reference)"
    return None


def carry_boxes(rows, source: Grid, target: Grid, n_slices: int = 3) -> tuple[BoxRow, ...]:
    """Carry boxes drawn on ``source`` to the ``n_slices`` nearest slices of ``target``.

    Args:
        rows: the boxes ``(slice, x0, y0, x1, y1)`` on the source's key slices (inclusive indices).
        source, target: the two :class:`Grid` (one frame of reference).
        n_slices: key slices of the target to box.

    Returns:
        ``n_slices`` rows on consecutive target slices, each the same rectangle.

    Raises:
        CarryError: another frame of reference, or the region lies outside the target volume.
    """
    rows = [tuple(int(v) for v in r) for r in rows]
    if not rows:
        raise CarryError("no box to carry")
    why = same_frame(source, target)
    if why:
        raise CarryError(why)
    idx = target.to_index(source.to_physical(box_corners(rows)))
    nx, ny, nz = target.size
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    # whole voxels holding every corner: voxel i spans [i - 0.5, i + 0.5)
    x0, y0 = int(np.floor(lo[0] + 0.5)), int(np.floor(lo[1] + 0.5))
    x1, y1 = int(np.ceil(hi[0] - 0.5)), int(np.ceil(hi[1] - 0.5))
    centre = float(idx[:, 2].mean())
    if x1 < 0 or y1 < 0 or x0 > nx - 1 or y0 > ny - 1 or not (-0.5 <= centre <= nz - 0.5):
        raise CarryError("the box lies outside this sequence's volume in patient coordinates")
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, nx - 1), min(y1, ny - 1)
    n = min(n_slices, nz)
    first = int(np.clip(np.floor(centre - (n - 1) / 2 + 0.5), 0, nz - n))
    return tuple((z, x0, y0, x1, y1) for z in range(first, first + n))


def frame_of_reference(image: Path) -> str | None:
    """The FrameOfReferenceUID of a DICOM series folder (its first DICOM file); None for NIfTI
    or a series that does not name one. Read in memory only, never written."""
    from dlmvi.io.dicom_index import is_candidate, read_header

    image = Path(image)
    if not image.is_dir():
        return None
    for path in sorted(image.iterdir()):
        if not (path.is_file() and is_candidate(path)):
            continue
        try:
            ds = read_header(path)
        except Exception:  # noqa: BLE001 - a damaged file: the reader names it when the series is read
            continue
        if ds is not None:
            uid = getattr(ds, "FrameOfReferenceUID", None)
            return str(uid) if uid else None
    return None


def carry_to_all(rows, source: str, grids: dict[str, Grid], n_slices: int = 3) -> tuple[dict, dict]:
    """Carry boxes drawn on sequence ``source`` to every other sequence of ``grids``.

    Returns:
        ``(carried, refused)``: {sequence: rows} and {sequence: why not}.
    """
    carried, refused = {}, {}
    for seq, grid in grids.items():
        if seq == source:
            continue
        try:
            carried[seq] = carry_boxes(rows, grids[source], grid, n_slices)
        except CarryError as exc:
            refused[seq] = str(exc)
    return carried, refused


__all__ = ["Grid", "CarryError", "BoxRow", "box_corners", "same_frame", "carry_boxes", "carry_to_all",
           "frame_of_reference"]
