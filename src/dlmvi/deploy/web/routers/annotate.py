"""``dlmvi annotate``'s page and API: the worklist, one patient's volumes, carrying and confirming boxes.

The :class:`~dlmvi.deploy.annotate.Annotator` lives on the application (``app.state.annotator``)
and is injected with ``Depends``; every write goes through it (atomic, locked, merged).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dlmvi.deploy.annotate import Annotator, AnnotationError
from dlmvi.deploy.web.responses import PAGE_HEADERS, PRIVATE, json_response
from dlmvi.deploy.web.routers.page import STATIC

router = APIRouter(tags=["annotate"])


def get_annotator(request: Request) -> Annotator:
    """The :class:`~dlmvi.deploy.annotate.Annotator` of the application handling ``request``."""
    return request.app.state.annotator


class Boxes(BaseModel):
    boxes: list[list[int]] = Field(..., description="[[slice, x0, y0, x1, y1], ...]: voxel indices of the "
                                   "sequence's own file grid, inclusive")
    fingerprint: str | None = Field(None, description="the patient's fingerprint when the page opened it")
    base: list[list[int]] | None = Field(None, description="the confirmed boxes the page showed (None: none)")
    targets: list[str] | None = Field(None, description="sequences to carry to (default: every one not confirmed)")


@router.get("/", include_in_schema=False)
async def page():
    return FileResponse(STATIC / "annotate.html", headers=PAGE_HEADERS)


@router.get("/api/worklist", summary="Every patient's state per sequence and the progress")
async def worklist(reload: bool = False, annotator: Annotator = Depends(get_annotator)):
    if reload:
        await run_in_threadpool(annotator.build)
    return json_response(annotator.worklist())


@router.get("/api/patients/{patient_id}", summary="One patient: each sequence's grid, state and boxes")
async def patient(patient_id: str, annotator: Annotator = Depends(get_annotator)):
    return json_response(await run_in_threadpool(annotator.view, patient_id))


@router.get("/api/patients/{patient_id}/volumes/{sequence}", summary="A sequence's voxels (uint16, little-endian)")
async def volume(patient_id: str, sequence: str, annotator: Annotator = Depends(get_annotator)):
    """Raw ``uint16`` voxels of the file's own grid, ``(slices, y, x)`` in C order; the intensity is
    ``offset + scale * value`` (both in the patient's answer)."""
    op = await run_in_threadpool(annotator.patient, patient_id)
    data = op.volumes.get(sequence)
    if data is None:
        raise AnnotationError(f"patient {patient_id}: no volume {sequence!r} to draw on")
    return Response(data, media_type="application/octet-stream", headers=PRIVATE)


@router.post("/api/patients/{patient_id}/sequences/{sequence}/carry",
             summary="Carry the boxes drawn on one sequence to the others (saved as proposals)")
async def carry(patient_id: str, sequence: str, body: Boxes, annotator: Annotator = Depends(get_annotator)):
    return json_response(await run_in_threadpool(annotator.carry, patient_id, sequence, body.boxes,
                                                 body.fingerprint, body.targets))


@router.post("/api/patients/{patient_id}/sequences/{sequence}/confirm",
             summary="Confirm one sequence's boxes (written to rois.<reader>.csv)")
async def confirm(patient_id: str, sequence: str, body: Boxes, annotator: Annotator = Depends(get_annotator)):
    return json_response(await run_in_threadpool(annotator.confirm, patient_id, sequence, body.boxes,
                                                 body.fingerprint, body.base))
