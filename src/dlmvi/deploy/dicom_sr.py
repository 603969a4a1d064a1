"""The answer in DICOM: a Comprehensive 3D Structured Report (highdicom) in the patient's
study, as a new series, and dlmvi's reader of it.

Content (root container "DL-MVI report", codes of the private scheme ``99DLMVI``):

* the notice "Research use only; not a medical device" and the state (predicted, or why not:
  no tumour ROI in the study, waiting for a box drawn in ``dlmvi serve``);
* DL-MVI probability (first key slice of each sequence, as the study), its spread over the
  slice combinations (min, median, max, sd, n), the DL-MVI class and threshold;
* the nomogram risk with its 95 % CI, AFP, the decision, its threshold and basis;
* the model's name, dlmvi version, format and weights identity (``weights_sha256``), the site
  calibration used (or "none"), SYNTHETIC when the model was trained on the phantom;
* per sequence: its series (UIDREF), and on each key slice the tumour box used
  (SCOORD3D polygon in patient coordinates, frame of reference of the series) with the
  source image it lies on (IMAGE reference).

The SR keeps the study's identifiers (it belongs to the patient's record on the PACS) and
holds nothing else of the patient's data. :func:`read_sr` reads such an SR back into the
values :meth:`~dlmvi.deploy.patient.PatientPrediction.to_dict` gave.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlmvi.errors import ImageError

SCHEME = "99DLMVI"
NOTICE = "Research use only; not a medical device. Not for diagnosis or treatment decisions."
SERIES_DESCRIPTION = "DL-MVI report (research use)"
_NUM = {  # code -> (meaning, UCUM unit, unit meaning, result key path)
    "PROB": ("DL-MVI probability", "1", "no units", ("probability",)),
    "PROB1": ("DL-MVI probability, first key slices", "1", "no units", ("probability_first_slice",)),
    "DLMVI": ("DL-MVI class", "1", "no units", ("dl_mvi",)),
    "DLTHR": ("DL-MVI threshold", "1", "no units", ("dl_threshold",)),
    "SPMIN": ("Spread over slice combinations, minimum", "1", "no units", ("spread", "min")),
    "SPMED": ("Spread over slice combinations, median", "1", "no units", ("spread", "median")),
    "SPMAX": ("Spread over slice combinations, maximum", "1", "no units", ("spread", "max")),
    "SPSD": ("Spread over slice combinations, standard deviation", "1", "no units", ("spread", "sd")),
    "SPN": ("Number of slice combinations", "{combinations}", "combinations", ("spread", "n")),
    "NOMO": ("Nomogram risk of MVI", "1", "no units", ("nomogram", "risk")),
    "NOMOLO": ("Nomogram risk, 95% CI lower limit", "1", "no units", ("nomogram", "ci_low")),
    "NOMOHI": ("Nomogram risk, 95% CI upper limit", "1", "no units", ("nomogram", "ci_high")),
    "AFP": ("Alpha-fetoprotein", "ng/mL", "nanogram per milliliter", ("afp_ng_ml",)),
    "THR": ("Decision threshold", "1", "no units", ("threshold",)),
}
_TEXT = {
    "NOTICE": "Notice", "STATE": "Report state", "DECISION": "Decision", "BASIS": "Decision basis",
    "MODEL": "Model name", "VERSION": "dlmvi version", "FORMAT": "Model format", "WEIGHTS": "Model weights identity",
    "SITE": "Site calibration", "SYNTH": "Synthetic data notice", "SEQS": "Sequences used", "FORMULA": "Nomogram",
}


def _code(value: str, meaning: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning)


@dataclass
class SeriesEvidence:
    """The source series of one sequence: what the SR references.

    Attributes:
        sequence: T1, T1V, ...
        series_uid: SeriesInstanceUID.
        frame_of_reference: FrameOfReferenceUID.
        instances: (path, SOPInstanceUID, LPS position in mm) of the volume's images.
        image: path of the volume as predicted (the NIfTI the boxes are voxel indices of).
    """

    sequence: str
    series_uid: str
    frame_of_reference: str
    instances: list = field(default_factory=list)
    image: Path | None = None


def _get(d: dict, path: tuple):
    for k in path:
        if d is None:
            return None
        d = d.get(k)
    return d


def _box_polygons(ev: SeriesEvidence, box, slices) -> list[tuple[int, np.ndarray, tuple]]:
    """(slice, closed polygon (5, 3) in LPS mm, nearest source instance) per key slice.

    ``box`` is (y0, x0, y1, x1) in the LPS-reoriented voxel grid (end exclusive), as
    :class:`~dlmvi.deploy.patient.PatientPrediction` reports it."""
    import SimpleITK as sitk

    img = sitk.DICOMOrient(sitk.ReadImage(str(ev.image)), "LPS")
    y0, x0, y1, x1 = (int(v) for v in box)
    out = []
    pos = np.array([p for _, _, p in ev.instances], float) if ev.instances else np.zeros((0, 3))
    for z in slices:
        corners = [(x0, y0), (x1 - 1, y0), (x1 - 1, y1 - 1), (x0, y1 - 1), (x0, y0)]
        poly = np.array([img.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z)))
                         for x, y in corners])
        centre = poly[:4].mean(axis=0)
        nearest = ev.instances[int(np.argmin(np.linalg.norm(pos - centre, axis=1)))] if len(pos) else None
        out.append((int(z), poly, nearest))
    return out


def build_sr(result: dict, evidence: list[SeriesEvidence], model: dict, *, state: str = "predicted",
             series_number: int = 9901, entropy: str | None = None):
    """The SR of one prediction.

    Args:
        result: :meth:`PatientPrediction.to_dict` (or None-valued fields for a study without a
            prediction, with ``state`` saying why).
        evidence: the series used (their headers are read for the study's identifiers).
        model: ``name``, ``dlmvi_version``, ``format``, ``weights_sha256``.
        state: "predicted" or the reason there is no prediction.
        series_number: SeriesNumber of the new series.
        entropy: makes the SR's UIDs reproducible (None: new UIDs).

    Returns:
        a :class:`highdicom.sr.Comprehensive3DSR` (a pydicom Dataset).
    """
    import highdicom as hd
    import pydicom
    from highdicom.sr import (Comprehensive3DSR, ContainerContentItem, ImageContentItem, NumContentItem,
                              Scoord3DContentItem, TextContentItem, UIDRefContentItem)
    from pydicom.uid import generate_uid

    if not evidence or not evidence[0].instances:
        raise ImageError("no source images to reference: the SR belongs to a study's images")
    root = ContainerContentItem(name=_code("RPT", "DL-MVI report"), is_content_continuous=False)
    items = [TextContentItem(_code("NOTICE", _TEXT["NOTICE"]), NOTICE, relationship_type="CONTAINS"),
             TextContentItem(_code("STATE", _TEXT["STATE"]), state, relationship_type="CONTAINS")]
    for code, (meaning, unit, unit_meaning, path) in _NUM.items():
        v = _get(result, path)
        if v is not None:
            unit_code = hd.sr.CodedConcept(value=unit, scheme_designator="UCUM", meaning=unit_meaning)
            items.append(NumContentItem(_code(code, meaning), float(v), unit_code, relationship_type="CONTAINS"))
    texts = {"DECISION": result.get("decision"), "BASIS": result.get("decision_basis"),
             "FORMULA": _get(result, ("nomogram", "formula")),
             "MODEL": model.get("name"), "VERSION": model.get("dlmvi_version"), "FORMAT": model.get("format"),
             "WEIGHTS": model.get("weights_sha256") or "not recorded",
             "SITE": (result.get("site") or {}).get("site") or "none",
             "SYNTH": "SYNTHETIC: the model was trained on synthetic data" if result.get("synthetic") else None,
             "SEQS": ", ".join(result.get("sequences_used") or result.get("sequences") or []) or None}
    for code, v in texts.items():
        if v:
            items.append(TextContentItem(_code(code, _TEXT[code]), str(v)[:1024], relationship_type="CONTAINS"))
    headers, seen = [], set()
    for ev in evidence:
        cont = ContainerContentItem(name=_code("SEQ", f"Sequence {ev.sequence}"), relationship_type="CONTAINS")
        sub = [TextContentItem(_code("SEQNAME", "Sequence"), ev.sequence, relationship_type="CONTAINS"),
               UIDRefContentItem(_code("SERIES", "Source series"), ev.series_uid, relationship_type="CONTAINS")]
        box, slices = (result.get("boxes") or {}).get(ev.sequence), (result.get("key_slices") or {}).get(ev.sequence)
        if box is not None and slices and ev.image is not None:
            for z, poly, inst in _box_polygons(ev, box, slices):
                sub.append(Scoord3DContentItem(_code("BOX", f"Tumour box, key slice {z}"), "POLYGON", poly,
                                               ev.frame_of_reference, relationship_type="CONTAINS"))
                if inst is not None:
                    hdr = pydicom.dcmread(inst[0], stop_before_pixels=True)
                    sub.append(ImageContentItem(_code("IMG", f"Source image, key slice {z}"), hdr.SOPClassUID,
                                                hdr.SOPInstanceUID, relationship_type="CONTAINS"))
                    if hdr.SOPInstanceUID not in seen:
                        seen.add(hdr.SOPInstanceUID)
                        headers.append(hdr)
        cont.ContentSequence = sub
        items.append(cont)
    if not headers:  # no box to reference: the study's identity from one of its images
        headers.append(pydicom.dcmread(evidence[0].instances[0][0], stop_before_pixels=True))
    root.ContentSequence = items

    def uid(part):
        return generate_uid(entropy_srcs=[entropy, part]) if entropy else generate_uid()

    sr = Comprehensive3DSR(
        evidence=headers, content=root, series_instance_uid=uid("series"), series_number=series_number,
        sop_instance_uid=uid("sop"), instance_number=1, manufacturer="dlmvi (research software)",
        is_complete=True, is_final=False, is_verified=False, series_description=SERIES_DESCRIPTION)
    return sr


def build_card_capture(rgb: np.ndarray, reference, *, series_number: int = 9902, entropy: str | None = None):
    """The card's images (crops and Grad-CAM, one RGB picture) as a Secondary Capture of the study.

    Args:
        rgb: (rows, columns, 3) uint8 picture.
        reference: the header of one of the study's images (its identity: patient, study).

    Returns:
        a :class:`highdicom.sc.SCImage` (a pydicom Dataset), "Research use only" in its comments.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    ref = reference

    def uid(part):
        return generate_uid(entropy_srcs=[entropy, part]) if entropy else generate_uid()

    sc = hd.sc.SCImage.from_ref_dataset(
        ref, np.ascontiguousarray(rgb, dtype=np.uint8), "RGB", 8, "PATIENT", uid("card-series"), series_number,
        uid("card-sop"), 1, "dlmvi (research software)", patient_orientation=("L", "P"))
    sc.SeriesDescription = "DL-MVI card (research use)"
    sc.ImageComments = "DL-MVI card: tumour crops and Grad-CAM. " + NOTICE
    sc.BurnedInAnnotation = "YES"
    if "Laterality" not in sc:  # type 2C of the General Series module: empty, the liver is not paired
        sc.Laterality = ""
    return sc


def _walk(seq, out: dict, prefix: str = "") -> None:
    for item in seq or []:
        name = item.ConceptNameCodeSequence[0]
        code = str(name.CodeValue)
        vt = item.ValueType
        if vt == "CONTAINER":
            if code == "SEQ":
                sub: dict = {}
                _walk(item.get("ContentSequence"), sub)
                out.setdefault("series", {})[sub.get("SEQNAME", "?")] = sub
            else:
                _walk(item.get("ContentSequence"), out)
        elif vt == "NUM":
            out[code] = float(item.MeasuredValueSequence[0].NumericValue)
        elif vt == "TEXT":
            out[code] = str(item.TextValue)
        elif vt == "UIDREF":
            out[code] = str(item.UID)
        elif vt == "SCOORD3D":
            out.setdefault("boxes_mm", []).append(np.array(item.GraphicData, float).reshape(-1, 3))
        elif vt == "IMAGE":
            out.setdefault("images", []).append(str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))


def read_sr(ds) -> dict:
    """The values of a dlmvi SR (a pydicom Dataset or a path), keyed like ``result.json``.

    Returns:
        dict with ``state``, ``notice``, the numbers present (``probability``, ``spread``,
        ``nomogram``...), ``decision``, ``model`` (name, version, weights) and ``series``
        {sequence: {"series_uid", "boxes_mm", "images"}}.

    Raises:
        ImageError: not a dlmvi SR.
    """
    import pydicom

    if isinstance(ds, (str, Path)):
        ds = pydicom.dcmread(ds)
    root = ds.get("ConceptNameCodeSequence")
    if not root or str(root[0].CodeValue) != "RPT" or str(root[0].CodingSchemeDesignator) != SCHEME:
        raise ImageError("not a DL-MVI report (its root concept is not 99DLMVI RPT)")
    flat: dict = {}
    _walk(ds.ContentSequence, flat)
    out: dict = {"state": flat.get("STATE"), "notice": flat.get("NOTICE"), "decision": flat.get("DECISION"),
                 "decision_basis": flat.get("BASIS"),
                 "model": {"name": flat.get("MODEL"), "dlmvi_version": flat.get("VERSION"),
                           "format": flat.get("FORMAT"), "weights_sha256": flat.get("WEIGHTS")},
                 "site": flat.get("SITE"), "synthetic": "SYNTH" in flat,
                 "sequences_used": (flat.get("SEQS") or "").split(", ") if flat.get("SEQS") else []}
    for code, (_, _, _, path) in _NUM.items():
        if code in flat:
            d = out
            for k in path[:-1]:
                d = d.setdefault(k, {})
            d[path[-1]] = flat[code]
    out["series"] = {seq: {"series_uid": s.get("SERIES"), "boxes_mm": s.get("boxes_mm", []),
                           "images": s.get("images", [])} for seq, s in flat.get("series", {}).items()}
    return out


__all__ = ["build_sr", "build_card_capture", "read_sr", "SeriesEvidence", "NOTICE", "SCHEME", "SERIES_DESCRIPTION"]
