"""One study of a PACS (retrieved, or received by the DICOM node) -> a prediction -> an SR.

The study's files are mapped to the model's sequences by the SAME code and rules as
``dlmvi import`` (:func:`dlmvi.io.dicom_import.plan_import` with the PACS's map file; a
multi-volume series, an ambiguous or a missing series are reported the same way), written
into a temporary patient folder, given the tumour ROI (``--rois`` boxes, or a SEG/RTSTRUCT of
the study: :mod:`dlmvi.io.dicom_seg`) and predicted by
:func:`dlmvi.deploy.patient.predict_patient`, the function behind ``predict-patient``.

The patient is named by a pseudonym derived from the StudyInstanceUID (``S<hash>-1``); no
identifier of the study reaches the local outputs (the SR itself, stored into the patient's
own study, keeps them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from dlmvi.errors import CohortError, PacsError

#: Modalities that are not images for the import (ROI objects, reports, presentation states).
NOT_IMAGES = ("SEG", "RTSTRUCT", "SR", "PR", "KO", "OT")
NO_ROI_STATE = ("no tumour ROI in the study (no SEG or RTSTRUCT); not predicted - draw the box in dlmvi serve "
                "(worklist) or send a SEG")


def study_pseudonym(study_uid: str) -> str:
    """A stable pseudonym of a study for local outputs and logs (not reversible)."""
    return "S" + hashlib.sha256(study_uid.encode()).hexdigest()[:8]


@dataclass
class StudyCase:
    """A study's files mapped to the model's sequences, ready to predict.

    Attributes:
        patient_id: the pseudonym used in outputs.
        patient_dir: ``<SEQ>.nii.gz`` (and ``<SEQ>_roi.nii.gz`` from the study's ROI).
        evidence: {sequence: :class:`~dlmvi.deploy.dicom_sr.SeriesEvidence`}.
        roi: "SEG", "RTSTRUCT", "boxes" or "" (none found).
        notes: what the mapping decided (volume choices, unmapped series).
        reference: the header of one of its images (the study's identity, kept in memory for
            objects made after the files are gone: the card's secondary capture).
    """

    study_uid: str
    patient_id: str
    patient_dir: Path
    evidence: dict
    roi: str = ""
    notes: list[str] = field(default_factory=list)
    reference: object | None = None


def _image_index(files: Path):
    from dlmvi.io.dicom_index import index_tree

    res = index_tree(files)
    res.files = [f for f in res.files if f.modality not in NOT_IMAGES]
    return res


def map_study(files: Path, work: Path, imap, sequences, study_uid: str = "") -> StudyCase:
    """Map a study's files (a folder, any layout) onto ``sequences`` and write the patient folder.

    Args:
        files: the study's DICOM files.
        work: an empty scratch folder outside ``files`` (the cohort and the pseudonym table go there).
        imap: an :class:`~dlmvi.io.dicom_import.ImportMap` (its [patients] settings are ignored).
        sequences: the model's sequences.
        study_uid: named in messages (else read from the files).

    Raises:
        PacsError: no images, several patients, or a sequence of the model that the map does not
            find (missing, ambiguous, unreadable), naming the series and the map entry to fix.
    """
    from dlmvi.io.dicom_import import plan_import, run_import

    files, work = Path(files), Path(work)
    index = _image_index(files)
    if not index.files:
        raise PacsError(f"study {study_uid or files}: no images among its {index.skipped} file(s)")
    study_uid = study_uid or index.files[0].study_uid
    pid = study_pseudonym(study_uid)
    rules = tuple(r for r in imap.rules if r.sequence in sequences)
    case_map = dataclasses.replace(imap, id_mode="sequential", table=work / "key" / "key.csv", prefix=pid + "-",
                                   width=1, rules=rules)
    where = f"study {pid}"
    missing = [s for s in sequences if s not in {r.sequence for r in rules}]
    if missing:
        raise PacsError(f"{where}: the map {imap.path} has no rule for {', '.join(missing)} (the model uses "
                        f"{', '.join(sequences)}); add [sequences.{missing[0]}] series = \"REGEX\"")
    plan = plan_import(files, work / "cohort", case_map, index=index)
    if len(plan.patient_ids) > 1:
        raise PacsError(f"{where}: the files hold {len(plan.patient_ids)} patients; a study has one")
    problems = plan.problems()
    if problems:
        unmapped = [s.name() for ss in plan.unmapped().values() for s in ss]
        raise PacsError(f"{where}: " + "; ".join(f"{o.sequence}: {o.problem}" for o in problems)
                        + (f" (series no rule maps: {'; '.join(unmapped)})" if unmapped else "")
                        + f"; fix the map {imap.path}")
    run_import(plan, work / "cohort", case_map)
    failed = [o for o in plan.outputs if o.state == "failed"]
    if failed:
        raise PacsError(f"{where}: " + "; ".join(f"{o.sequence}: {o.problem}" for o in failed))
    out = plan.outputs[0]
    case = StudyCase(study_uid, out.patient_id, out.path(work / "cohort").parent, {})
    case.notes = [f"{o.sequence}: {o.series.name()}, {o.note}" for o in plan.outputs if o.note]
    case.notes += [f"unmapped: {s.name()}" for ss in plan.unmapped().values() for s in ss]
    case.evidence = {o.sequence: _evidence(o, work / "cohort") for o in plan.outputs}
    import pydicom

    case.reference = pydicom.dcmread(plan.outputs[0].series.files[0].path, stop_before_pixels=True)
    return case


def _evidence(output, cohort: Path):
    import numpy as np
    import pydicom

    from dlmvi.deploy.dicom_sr import SeriesEvidence

    by_path = {f.path: f for f in output.series.files}
    inst = []
    for fr in output.volume.frames:
        rec = by_path.get(fr.file)
        if rec is not None and fr.position is not None:
            inst.append((fr.file, rec.sop_uid, tuple(np.asarray(fr.position, float))))
    head = pydicom.dcmread(output.series.files[0].path, stop_before_pixels=True,
                           specific_tags=["FrameOfReferenceUID", "SeriesInstanceUID"])
    return SeriesEvidence(output.sequence, str(head.get("SeriesInstanceUID", "")),
                          str(head.get("FrameOfReferenceUID", "")), inst, output.path(cohort))


def attach_rois(case: StudyCase, files: Path) -> str:
    """Write ``<SEQ>_roi.nii.gz`` for every sequence from the study's SEG or RTSTRUCT.

    The newest ROI object (by its file's content date and time, then name) is used; a ROI in
    another frame of reference than a sequence is refused for that sequence.

    Returns:
        "SEG", "RTSTRUCT" or "" (the study has none).

    Raises:
        CohortError: an unusable ROI object (names the file).
    """
    import SimpleITK as sitk

    from dlmvi.io.dicom_seg import read_roi_file

    candidates = sorted(p for mod in ("SEG", "RTSTRUCT") for p in (Path(files) / mod).glob("*.dcm")) \
        if (Path(files) / "SEG").is_dir() or (Path(files) / "RTSTRUCT").is_dir() else []
    if not candidates:  # a received study keeps its own layout: look at every file
        candidates = sorted(p for p in Path(files).rglob("*") if p.is_file() and not p.name.startswith("."))
        rois = [r for r in (_try_roi(p, read_roi_file) for p in candidates) if r is not None]
    else:
        rois = [read_roi_file(p) for p in candidates]
        rois = [r for r in rois if r is not None]
    if not rois:
        return ""
    roi = _newest(rois)
    for seq, ev in case.evidence.items():
        if roi.frame_of_reference and ev.frame_of_reference and roi.frame_of_reference != ev.frame_of_reference:
            raise CohortError(f"patient {case.patient_id}, {seq}: the {roi.kind} {roi.path.name} lies in another "
                              f"frame of reference than series {seq}; draw the ROI on this study's images")
        img = sitk.ReadImage(str(ev.image))
        mask = roi.mask_on(img)
        if not mask.any():
            raise CohortError(f"patient {case.patient_id}, {seq}: the {roi.kind} {roi.path.name} "
                              f"({roi.label!r}) does not overlap the {seq} images")
        out = sitk.GetImageFromArray(mask)
        out.CopyInformation(img)
        sitk.WriteImage(out, str(ev.image).replace(".nii.gz", "_roi.nii.gz"), useCompression=True)
    case.roi = roi.kind
    return roi.kind


def _try_roi(path, reader):
    try:
        return reader(path)
    except Exception as exc:  # noqa: BLE001 - a damaged non-ROI file is not our concern here
        if "SEG" in str(exc) or "RTSTRUCT" in str(exc):
            raise
        return None


def _newest(rois):
    import pydicom

    def key(r):
        h = pydicom.dcmread(r.path, stop_before_pixels=True, specific_tags=["ContentDate", "ContentTime"])
        return (str(h.get("ContentDate", "")), str(h.get("ContentTime", "")), r.path.name)

    return max(rois, key=key)


def model_identity(em) -> dict:
    """The model as the SR names it."""
    return {"name": em.config.get("name") or em.path.name, "dlmvi_version": em.config.get("dlmvi_version"),
            "format": em.config.get("format"), "weights_sha256": em.config.get("weights_sha256")}


def rois_for_case(rois_csv, case: StudyCase):
    """A rois.csv's rows for this study, relabelled to the case's pseudonym.

    The table's ``patient_id`` is the study's pseudonym (as ``dlmvi pacs find`` lists it) or
    ``*`` (any study)."""
    from dlmvi.io.tables import read_rois

    rois = read_rois(rois_csv)
    base = re.sub(r"-1$", "", case.patient_id)
    rows = rois[rois["patient_id"].isin([case.patient_id, base, "*"])].copy()
    if rows.empty:
        raise CohortError(f"patient {base}: no row for this study in {rois_csv}; its patient_id is {base}")
    rows["patient_id"] = case.patient_id
    return {seq: [tuple(int(v) for v in r) for r in g[["slice", "x0", "y0", "x1", "y1"]].itertuples(index=False)]
            for seq, g in rows.groupby("sequence")}


def predict_study(em, files: Path, work: Path, imap, *, afp=None, rois=None, boxes=None, site=None,
                  explain=False, study_uid: str = "", entropy: str | None = None, clinical=None, threshold=None):
    """Map, attach the ROI, predict and build the SR of one study.

    Args:
        em: the loaded model.
        files, work, imap, study_uid: as :func:`map_study`.
        afp: ng/mL, or None (no nomogram).
        rois: a rois.csv (boxes on the image files' grids) instead of the study's SEG/RTSTRUCT.
        boxes: {sequence: [(slice, x0, y0, x1, y1), ...]} (drawn in ``dlmvi serve``).
        site, explain, clinical, threshold: as :func:`~dlmvi.deploy.patient.predict_patient`.

    Returns:
        (case, :class:`~dlmvi.deploy.patient.PatientPrediction` or None, SR dataset). Without
        a ROI the prediction is None and the SR says that it waits for one.
    """
    from dlmvi.deploy.dicom_sr import build_sr
    from dlmvi.deploy.patient import predict_patient

    case = map_study(files, work, imap, em.sequences, study_uid)
    if rois is not None:
        boxes = rois_for_case(rois, case)
    if boxes is not None:
        case.roi = "boxes"
    elif not attach_rois(case, files):
        sr = build_sr({"sequences": list(em.sequences)}, list(case.evidence.values()), model_identity(em),
                      state=NO_ROI_STATE, entropy=entropy)
        return case, None, sr
    res = predict_patient(em.path, case.patient_dir, afp, patient_id=case.patient_id, boxes=boxes, model=em,
                          site=site, explain=explain, clinical=clinical, threshold=threshold)
    sr = build_sr(res.to_dict(), [case.evidence[s] for s in em.sequences if s in case.evidence],
                  model_identity(em), entropy=entropy)
    return case, res, sr


__all__ = ["StudyCase", "map_study", "attach_rois", "predict_study", "study_pseudonym", "model_identity",
           "rois_for_case", "NO_ROI_STATE", "NOT_IMAGES"]
