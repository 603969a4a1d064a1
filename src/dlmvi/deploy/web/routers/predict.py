"""``POST /api/predict``: one patient in one call (archive or files, AFP; boxes as rois.csv); and
``POST /api/predict/first``, the same call answered as soon as the first answer is ready."""

from __future__ import annotations

import shutil

from fastapi import APIRouter, Depends, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from dlmvi.deploy.web.deps import authorised, get_server
from dlmvi.deploy.web.forms import check_afp, check_id, receive_upload, save
from dlmvi.deploy.web.responses import json_response
from dlmvi.deploy.web.state import Server

router = APIRouter(dependencies=[Depends(authorised)])


@router.post("/api/predict", tags=["predict"], summary="Predict one patient (result.json)")
async def predict(
    afp: float = Form(..., description="alpha-fetoprotein, ng/mL"),
    archive: UploadFile | None = File(None, description="the patient's folder as .zip, .tar or .tar.gz "
                                      "(NIfTI files or DICOM series folders, masks <SEQ>_roi.nii.gz)"),
    files: list[UploadFile] | None = File(None, description="or the sequence files: <SEQ>.nii.gz and "
                                          "<SEQ>_roi.nii.gz"),
    rois: UploadFile | None = File(None, description="rois.csv with the tumour boxes (instead of masks)"),
    patient_id: str | None = Form(None, description="id shown in the result (default: the archive's folder)"),
    threshold: float | None = Form(None, description="nomogram risk for 'MVI likely' (default: the model's)"),
    server: Server = Depends(get_server),
):
    """Returns the JSON that ``dlmvi predict-patient --out`` writes to result.json.

    The upload's files are deleted once the result is ready (unless the server runs with --keep).
    Requests beyond the server's --workers wait in a queue.
    """
    job = await _received(server, afp, patient_id, archive, files, rois)
    try:
        out = await server.run(server.predict_upload, *job, afp, threshold)
    finally:
        shutil.rmtree(job[0].folder, ignore_errors=True)
    return json_response(out["result"])


async def _received(server: Server, afp, patient_id, archive, files, rois) -> tuple:
    """The request's fields checked and its files in a new upload: ``(upload, archive, files, id,
    rois.csv)``; the upload is deleted when that fails."""
    check_afp(afp)
    pid = check_id(patient_id)
    up = server.new_upload()
    try:
        arch, placed = await receive_upload(up, archive, files, server.model.sequences)
        table = None if rois is None else await run_in_threadpool(save, rois, up.folder / "rois.csv")
    except BaseException:
        shutil.rmtree(up.folder, ignore_errors=True)
        raise
    return up, arch, placed, pid, table


@router.post("/api/predict/first", tags=["predict"],
             summary="Predict one patient, answered first (probability, nomogram risk, decision)")
async def predict_first(
    afp: float = Form(..., description="alpha-fetoprotein, ng/mL"),
    archive: UploadFile | None = File(None, description="the patient's folder as .zip, .tar or .tar.gz"),
    files: list[UploadFile] | None = File(None, description="or the sequence files"),
    rois: UploadFile | None = File(None, description="rois.csv with the tumour boxes (instead of masks)"),
    patient_id: str | None = Form(None),
    threshold: float | None = Form(None),
    server: Server = Depends(get_server),
):
    """Returns ``{first, followup}`` as soon as the first key slice of every sequence has been
    encoded: ``first`` holds the study's first-slice probability, the nomogram risk and the
    decision. The spread over the slice combinations follows: ``GET /api/followups/{followup}``
    returns the full result.json of ``POST /api/predict``."""
    job = await _received(server, afp, patient_id, archive, files, rois)
    # the job deletes the upload when it ends (after the first answer)
    first, fid = await server.run_first(server.predict_upload, *job, afp, threshold, view=lambda out: out["result"])
    return json_response({"first": first, "followup": fid, "followup_url": f"/api/followups/{fid}"})
