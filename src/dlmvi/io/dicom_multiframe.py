"""Enhanced (multi-frame) DICOM: one :class:`~dlmvi.io.dicom_frame.Frame` per frame.

Enhanced MR (Siemens XA, Philips R5+, and Legacy Converted Enhanced objects) stores a whole
series, or a volume of it, in one file. What classic files carry at the top level lives in
functional group macros, per frame (Per-Frame Functional Groups Sequence, one item per frame)
or shared by all frames (Shared Functional Groups Sequence); the per-frame item wins
(DICOM PS3.3 C.7.6.16). Used here, as dcm2niix does:

* Plane Position (ImagePositionPatient) and Plane Orientation (ImageOrientationPatient);
* Pixel Measures (PixelSpacing, SliceThickness, SpacingBetweenSlices);
* Pixel Value Transformation (RescaleSlope, RescaleIntercept) - per frame, the values a
  viewer displays (dcm2niix's default ``-p n``), not Philips' private floating-point scale;
* MR Diffusion (DiffusionBValue), MR Echo (EffectiveEchoTime), MR Image Frame Type
  (FrameType), Frame Content (TemporalPositionIndex, FrameAcquisitionDateTime): the keys
  that split a multi-volume file into volumes (:mod:`dlmvi.io.dicom_volumes`).
"""

from __future__ import annotations

from pathlib import Path

from dlmvi.io.dicom_frame import Frame, dt_seconds, to_float, to_floats, to_int, to_str


def _macro(frame_item, shared, keyword: str):
    """The first item of functional group ``keyword``: the frame's own, else the shared one."""
    for holder in (frame_item, shared):
        if holder is None:
            continue
        seq = holder.get(keyword)
        if seq is not None and len(seq):
            return seq[0]
    return None


def enhanced_frames(path: Path, ds) -> list[Frame]:
    """Frames of an enhanced multi-frame file, in the file's frame order."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq is not None and len(shared_seq) else None
    n = to_int(ds.get("NumberOfFrames")) or len(per_frame) or 1
    rows, cols = int(ds.Rows), int(ds.Columns)
    top_type = tuple(to_str(v).upper() for v in (ds.get("ImageType") or ()))
    top_slope = to_float(ds.get("RescaleSlope"))
    top_inter = to_float(ds.get("RescaleIntercept"))
    frames = []
    for k in range(n):
        item = per_frame[k] if k < len(per_frame) else None
        pos = _macro(item, shared, "PlanePositionSequence")
        ori = _macro(item, shared, "PlaneOrientationSequence")
        pix = _macro(item, shared, "PixelMeasuresSequence")
        pvt = _macro(item, shared, "PixelValueTransformationSequence")
        dif = _macro(item, shared, "MRDiffusionSequence")
        echo = _macro(item, shared, "MREchoSequence")
        ftype = _macro(item, shared, "MRImageFrameTypeSequence") or _macro(item, shared, "CTImageFrameTypeSequence")
        content = _macro(item, shared, "FrameContentSequence")
        cardiac = _macro(item, shared, "CardiacSynchronizationSequence")
        slope = to_float(pvt.get("RescaleSlope")) if pvt is not None else None
        inter = to_float(pvt.get("RescaleIntercept")) if pvt is not None else None
        spacing = to_float(pix.get("SpacingBetweenSlices")) if pix is not None else None
        thick = to_float(pix.get("SliceThickness")) if pix is not None else None
        b = to_float(dif.get("DiffusionBValue")) if dif is not None else None
        frames.append(Frame(
            file=path,
            index=k,
            kind="enhanced",
            position=to_floats(pos.get("ImagePositionPatient"), 3) if pos is not None else None,
            orientation=to_floats(ori.get("ImageOrientationPatient"), 6) if ori is not None else None,
            pixel_spacing=to_floats(pix.get("PixelSpacing"), 2) if pix is not None else None,
            rows=rows,
            cols=cols,
            slope=slope if slope is not None else (top_slope if top_slope is not None else 1.0),
            intercept=inter if inter is not None else (top_inter if top_inter is not None else 0.0),
            thickness=spacing or thick or to_float(ds.get("SpacingBetweenSlices")) or to_float(ds.get("SliceThickness")),
            b_value=b,
            echo_number=None,
            echo_time=to_float(echo.get("EffectiveEchoTime")) if echo is not None else None,
            image_type=(tuple(to_str(v).upper() for v in (ftype.get("FrameType") or ())) if ftype is not None
                        else top_type),
            temporal_position=to_int(content.get("TemporalPositionIndex")) if content is not None else None,
            trigger_time=to_float(cardiac.get("NominalCardiacTriggerDelayTime")) if cardiac is not None else None,
            acquisition_time=dt_seconds(content.get("FrameAcquisitionDateTime")) if content is not None else None,
            instance=to_int(ds.get("InstanceNumber")),
        ))
    return frames


def frame_pixels(pixel_array, index: int, n_frames: int):
    """Frame ``index`` of a decoded multi-frame pixel array ((frames, rows, cols), or
    (rows, cols) when the file holds one frame)."""
    if n_frames == 1 and pixel_array.ndim == 2:
        return pixel_array
    return pixel_array[index]
