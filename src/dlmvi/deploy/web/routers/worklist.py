"""The PACS worklist on the page: list studies, open one (then draw / predict as an upload),
send the SR of its prediction to the PACS."""

from __future__ import annotations

import shutil

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dlmvi.deploy.web import worklist
from dlmvi.deploy.web.deps import authorised, get_server
from dlmvi.deploy.web.responses import json_response
from dlmvi.deploy.web.routers.uploads import upload_answer
from dlmvi.deploy.web.state import Server

router = APIRouter(tags=["worklist"], dependencies=[Depends(authorised)])


class OpenRequest(BaseModel):
    study_uid: str = Field(..., description="StudyInstanceUID from GET /api/worklist")


@router.get("/api/worklist", summary="Studies of the configured PACS")
async def studies(date: str | None = None, server: Server = Depends(get_server)):
    """``date``: YYYYMMDD or a range YYYYMMDD-YYYYMMDD (DICOM matching)."""
    return json_response({"pacs": worklist.pacs_of(server).name,
                          "studies": await server.run(worklist.list_studies, server, date)})


@router.post("/api/worklist/open", summary="Retrieve a study for the page (like POST /api/uploads)")
async def open_study(body: OpenRequest, server: Server = Depends(get_server)):
    """Returns what ``POST /api/uploads`` returns; ``needs_boxes`` lists the sequences without a
    mask from the study's SEG/RTSTRUCT. Predict with ``POST /api/uploads/{upload_id}/predict``:
    its answer then carries ``report_id`` for ``POST /api/reports/{report_id}/store``."""
    up = server.new_upload()
    try:
        await server.run(worklist.open_study, server, up, body.study_uid)
        await server.run(server.load_viewer, up)
    except BaseException:
        shutil.rmtree(up.folder, ignore_errors=True)
        raise
    server.register(up)
    return json_response(upload_answer(server, up, roi=up.study.roi))


@router.post("/api/reports/{report_id}/store", summary="Send a prediction's DICOM SR to the PACS")
async def store(report_id: str, server: Server = Depends(get_server)):
    return json_response(await server.run(worklist.send_report, server, report_id))
