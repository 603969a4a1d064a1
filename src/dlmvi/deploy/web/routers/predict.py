"""``POST /api/predict``: one patient in one call (archive or files, AFP; boxes as rois.csv)."""

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
    check_afp(afp)
    pid = check_id(patient_id)
    up = server.new_upload()
    try:
        arch, placed = await receive_upload(up, archive, files, server.model.sequences)
        table = None if rois is None else await run_in_threadpool(save, rois, up.folder / "rois.csv")
        out = await server.run(server.predict_upload, up, arch, placed, pid, table, afp, threshold)
    finally:
        shutil.rmtree(up.folder, ignore_errors=True)
    return json_response(out["result"])
