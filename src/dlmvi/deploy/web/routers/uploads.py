"""The page's two-step path: upload a patient, read the volumes to draw on, predict with the
drawn boxes (or cancel)."""

from __future__ import annotations

import shutil

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from dlmvi.deploy.web.boxes import check_boxes
from dlmvi.deploy.web.deps import authorised, get_server
from dlmvi.deploy.web.errors import UploadRefused
from dlmvi.deploy.web.forms import check_afp, check_id, receive_upload
from dlmvi.deploy.web.responses import PRIVATE, json_response
from dlmvi.deploy.web.state import Server

router = APIRouter(tags=["page"], dependencies=[Depends(authorised)])


class BoxesRequest(BaseModel):
    afp: float = Field(..., description="alpha-fetoprotein, ng/mL")
    boxes: dict[str, list[list[int]]] = Field(default_factory=dict, description=(
        "{sequence: [[slice, x0, y0, x1, y1], ...]}: voxel indices in the image file's grid, inclusive"))
    threshold: float | None = None


@router.post("/api/uploads", summary="Upload a patient for the page (step 1)")
async def upload(
    archive: UploadFile | None = File(None, description="the patient's folder as .zip, .tar or .tar.gz"),
    files: list[UploadFile] | None = File(None, description="or the sequence files (NIfTI)"),
    patient_id: str | None = Form(None),
    server: Server = Depends(get_server),
):
    """Unpacks the patient and says which sequences need a box (no mask); the viewer reads
    those sequences with ``GET /api/uploads/{upload_id}/volumes/{sequence}``."""
    pid = check_id(patient_id)
    up = server.new_upload()
    try:
        arch, placed = await receive_upload(up, archive, files, server.model.sequences)
        await server.run(server.unpack, up, arch, placed, pid)
        await server.run(server.load_viewer, up)
    except BaseException:
        shutil.rmtree(up.folder, ignore_errors=True)
        raise
    server.register(up)
    return json_response(upload_answer(server, up))


@router.get("/api/uploads/{upload_id}/volumes/{sequence}",
            summary="A sequence's voxels for the viewer (uint16, little-endian)")
async def volume(upload_id: str, sequence: str, server: Server = Depends(get_server)):
    """Raw ``uint16`` voxels in the file's own grid, ``(slices, y, x)`` in C order; the intensity
    is ``offset + scale * value`` (both given by ``POST /api/uploads``)."""
    up = server.get(upload_id)
    data = up.volumes.get(sequence)
    if data is None:
        raise UploadRefused(404, f"no volume {sequence!r} in this upload (only sequences without a mask "
                            "are shown for drawing)")
    return Response(data, media_type="application/octet-stream", headers=PRIVATE)


@router.post("/api/uploads/{upload_id}/predict",
             summary="Predict an uploaded patient, with the boxes drawn on the page (step 2)")
async def predict_upload(upload_id: str, body: BoxesRequest, server: Server = Depends(get_server)):
    """Returns ``{result, card_html, rois_csv}``; the upload is deleted afterwards."""
    check_afp(body.afp)
    up = server.get(upload_id)
    boxes = check_boxes(body.boxes, server.model, up)
    up = server.pop(upload_id)
    try:
        out = await server.run(server.predict, up, body.afp, boxes or None, body.threshold, True)
    finally:
        shutil.rmtree(up.folder, ignore_errors=True)
    return json_response(out)


@router.post("/api/uploads/{upload_id}/predict/first",
             summary="Predict an uploaded patient, answered first (step 2, the page's path)")
async def predict_upload_first(upload_id: str, body: BoxesRequest, server: Server = Depends(get_server)):
    """Returns ``{first, followup}`` as soon as the probability, the nomogram risk and the decision
    are ready; ``GET /api/followups/{followup}`` then returns ``{result, card_html, rois_csv}`` (the
    spread, the Grad-CAM and the card). The upload is deleted when the job ends."""
    check_afp(body.afp)
    up = server.get(upload_id)
    boxes = check_boxes(body.boxes, server.model, up)
    up = server.pop(upload_id)
    first, fid = await server.run_first(server.predict, up, body.afp, boxes or None, body.threshold, True)
    return json_response({"first": first, "followup": fid, "followup_url": f"/api/followups/{fid}"})


@router.delete("/api/uploads/{upload_id}", status_code=204, summary="Cancel an upload (its files are deleted)")
async def cancel(upload_id: str, server: Server = Depends(get_server)):
    server.discard(server.get(upload_id))
    return Response(status_code=204)


def upload_answer(server, up, **extra) -> dict:
    """What ``POST /api/uploads`` (and the worklist's ``open``) answers about a registered upload:
    its id, the sequences found (without their source paths), those that need boxes, its lifetime."""
    seqs = {s: {k: v for k, v in info.items() if k != "source"} for s, info in up.sequences.items()}
    return {"upload_id": up.id, "patient_id": up.patient_id, "n_slices": int(server.model.prepare.n_slices),
            "sequences": seqs, "needs_boxes": [s for s, i in up.sequences.items() if not i["mask"]],
            "expires_s": server.config.upload_ttl_s, **extra}
