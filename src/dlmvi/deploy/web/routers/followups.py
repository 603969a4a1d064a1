"""``GET /api/followups/{id}``: the rest of a prediction whose first answer was sent."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from dlmvi.deploy.web.deps import authorised, get_server
from dlmvi.deploy.web.responses import json_response
from dlmvi.deploy.web.state import Server

router = APIRouter(tags=["predict"], dependencies=[Depends(authorised)])


@router.get("/api/followups/{followup_id}", summary="The full result after a first answer")
async def followup(followup_id: str, wait: float = Query(30.0, ge=0, le=120, description="seconds to wait for it"),
                   server: Server = Depends(get_server)):
    """The full result of ``POST /api/predict/first`` (result.json) or of
    ``POST /api/uploads/{id}/predict/first`` (``{result, card_html, rois_csv}``), once computed:
    200 with it (handed out once), or 202 ``{"status": "pending"}`` after ``wait`` seconds."""
    out = await server.followup(followup_id, wait)
    if out is None:
        return json_response({"status": "pending", "followup": followup_id}, status=202)
    return json_response(out)
