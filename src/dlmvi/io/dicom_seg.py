"""The tumour ROI of a study as viewers store it: a DICOM Segmentation (SEG: 3D Slicer via
dcmqi, OHIF/Cornerstone) or an RT Structure Set (RTSTRUCT: Slicer's RT export, contouring
tools), turned into a mask on the grid of a sequence's image.

Both are read in patient coordinates (LPS, mm), so a ROI drawn on one series lands on any
series of the same frame of reference: each SEG pixel (each RTSTRUCT contour, filled on its
slice) is placed at the nearest voxel of the target image. On the series it was drawn on,
that is the mask as drawn; on another sequence of the same frame of reference, its
projection (the tumour box ``prepare`` takes from it is what matters). A ROI of another frame
of reference is refused.

The segment or ROI used is the one whose label names the tumour (``tumou?r``, ``lesion``,
``hcc``, ``mass``; case-insensitive), else the only one; several candidates are an error
naming them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlmvi.errors import ImageError

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
TUMOUR_LABEL = re.compile(r"(?i)tumou?r|lesion|hcc|mass|carcinoma")


@dataclass
class StudyRoi:
    """One tumour ROI read from a SEG or RTSTRUCT file.

    Attributes:
        path: the file.
        kind: "SEG" or "RTSTRUCT".
        label: the segment's or ROI's name.
        frame_of_reference: FrameOfReferenceUID of its coordinates.
        series_uids: the series it references (drawn on).
        points: (n, 3) LPS positions in mm of the ROI's pixels (SEG) or of its filled contours'
            voxels on the target grid (RTSTRUCT: see ``contours``).
        contours: RTSTRUCT: list of (m, 3) closed planar polygons in mm; SEG: empty.
    """

    path: Path
    kind: str
    label: str
    frame_of_reference: str
    series_uids: tuple[str, ...]
    points: np.ndarray
    contours: list

    def mask_on(self, image) -> np.ndarray:
        """The ROI as a uint8 (z, y, x) mask on ``image``'s grid (a SimpleITK image)."""
        size = np.array(image.GetSize())  # x, y, z
        mask = np.zeros(size[::-1], dtype=np.uint8)
        if self.kind == "SEG":
            idx = _to_index(image, self.points)
            ok = np.all((idx >= 0) & (idx < size), axis=1)
            idx = idx[ok]
            mask[idx[:, 2], idx[:, 1], idx[:, 0]] = 1
        else:
            from matplotlib.path import Path as Polygon

            yy, xx = np.mgrid[: size[1], : size[0]]
            grid = np.column_stack([xx.ravel(), yy.ravel()])
            for c in self.contours:
                cont = _to_continuous_index(image, c)
                z = int(round(float(np.median(cont[:, 2]))))
                if not 0 <= z < size[2]:
                    continue
                inside = Polygon(cont[:, :2]).contains_points(grid, radius=0.5)
                mask[z][inside.reshape(size[1], size[0])] = 1
                edge = np.rint(cont[:, :2]).astype(int)  # the outline itself belongs to the ROI
                ok = (edge[:, 0] >= 0) & (edge[:, 0] < size[0]) & (edge[:, 1] >= 0) & (edge[:, 1] < size[1])
                mask[z, edge[ok, 1], edge[ok, 0]] = 1
        return mask


def _to_continuous_index(image, points_mm: np.ndarray) -> np.ndarray:
    """LPS mm -> continuous (x, y, z) voxel index of a SimpleITK image."""
    origin = np.array(image.GetOrigin())
    spacing = np.array(image.GetSpacing())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return (np.linalg.inv(direction) @ (np.asarray(points_mm, float) - origin).T).T / spacing


def _to_index(image, points_mm: np.ndarray) -> np.ndarray:
    return np.rint(_to_continuous_index(image, points_mm)).astype(np.int64)


def _pick(labels: list[str], path: Path, what: str) -> int:
    if len(labels) == 1:
        return 0
    hits = [i for i, lab in enumerate(labels) if TUMOUR_LABEL.search(lab)]
    if len(hits) == 1:
        return hits[0]
    raise ImageError(f"{path.name}: {len(labels)} {what}s ({', '.join(repr(x) for x in labels)}) and "
                     f"{'none' if not hits else 'several'} named as the tumour; keep one, or name it 'tumour'")


def read_seg(path: str | Path) -> StudyRoi:
    """The tumour segment of a DICOM SEG file (binary or fractional; fractional > 0.5)."""
    import pydicom

    path = Path(path)
    ds = pydicom.dcmread(path)
    where = f"{path.name} (SEG)"
    segs = list(ds.get("SegmentSequence") or [])
    if not segs:
        raise ImageError(f"{where}: no SegmentSequence; not a usable segmentation")
    labels = [str(s.get("SegmentLabel", f"segment {s.SegmentNumber}")) for s in segs]
    number = int(segs[_pick(labels, path, "segment")].SegmentNumber)
    frames = ds.pixel_array.reshape(int(ds.get("NumberOfFrames", 1)), int(ds.Rows), int(ds.Columns))
    if str(ds.get("SegmentationType", "BINARY")) == "FRACTIONAL":
        frames = frames > (int(ds.get("MaximumFractionalValue", 255)) / 2)
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    pts = []
    for i, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
        seg_id = fg.get("SegmentIdentificationSequence") or (shared.get("SegmentIdentificationSequence")
                                                             if shared is not None else None)
        if seg_id and int(seg_id[0].ReferencedSegmentNumber) != number:
            continue
        pos = np.array(fg.PlanePositionSequence[0].ImagePositionPatient, float)
        ori_seq = fg.get("PlaneOrientationSequence") or shared.PlaneOrientationSequence
        pm = fg.get("PixelMeasuresSequence") or shared.PixelMeasuresSequence
        ori = np.array(ori_seq[0].ImageOrientationPatient, float)
        dr, dc = (float(v) for v in pm[0].PixelSpacing)  # row spacing, column spacing
        rows, cols = np.nonzero(frames[i])
        if rows.size:
            pts.append(pos + np.outer(cols * dc, ori[:3]) + np.outer(rows * dr, ori[3:]))
    if not pts:
        raise ImageError(f"{where}: segment {labels[number - 1] if number <= len(labels) else number!r} is empty")
    refs = tuple(str(r.SeriesInstanceUID) for r in ds.get("ReferencedSeriesSequence") or [])
    return StudyRoi(path, "SEG", labels[[int(s.SegmentNumber) for s in segs].index(number)],
                    str(ds.get("FrameOfReferenceUID", "")), refs, np.concatenate(pts), [])


def read_rtstruct(path: str | Path) -> StudyRoi:
    """The tumour ROI of an RT Structure Set (closed planar contours)."""
    import pydicom

    path = Path(path)
    ds = pydicom.dcmread(path)
    where = f"{path.name} (RTSTRUCT)"
    rois = list(ds.get("StructureSetROISequence") or [])
    if not rois:
        raise ImageError(f"{where}: no StructureSetROISequence; not a usable structure set")
    labels = [str(r.get("ROIName", f"ROI {r.ROINumber}")) for r in rois]
    roi = rois[_pick(labels, path, "ROI")]
    number = int(roi.ROINumber)
    contours = []
    for rc in ds.get("ROIContourSequence") or []:
        if int(rc.ReferencedROINumber) != number:
            continue
        for c in rc.get("ContourSequence") or []:
            data = np.array(c.ContourData, float).reshape(-1, 3)
            if len(data) >= 3:
                contours.append(data)
    if not contours:
        raise ImageError(f"{where}: ROI {str(roi.get('ROIName', number))!r} has no closed contour")
    series = []
    for fr in ds.get("ReferencedFrameOfReferenceSequence") or []:
        for st in fr.get("RTReferencedStudySequence") or []:
            for se in st.get("RTReferencedSeriesSequence") or []:
                series.append(str(se.SeriesInstanceUID))
    for_uid = str(roi.get("ReferencedFrameOfReferenceUID", "")) or str(ds.get("FrameOfReferenceUID", ""))
    return StudyRoi(path, "RTSTRUCT", labels[rois.index(roi)], for_uid, tuple(series),
                    np.concatenate(contours), contours)


def read_roi_file(path: str | Path) -> StudyRoi | None:
    """A SEG or RTSTRUCT file's tumour ROI; None for another kind of file."""
    import pydicom

    try:
        head = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except Exception:  # not DICOM: not a ROI file
        return None
    sop = str(head.get("SOPClassUID", ""))
    if sop == SEG_SOP_CLASS or head.get("Modality") == "SEG":
        return read_seg(path)
    if sop == RTSTRUCT_SOP_CLASS or head.get("Modality") == "RTSTRUCT":
        return read_rtstruct(path)
    return None


__all__ = ["StudyRoi", "read_seg", "read_rtstruct", "read_roi_file", "SEG_SOP_CLASS", "RTSTRUCT_SOP_CLASS"]
