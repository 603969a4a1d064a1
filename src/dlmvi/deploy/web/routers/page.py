"""The radiologist's page (plain HTML and JavaScript from the package; nothing from the internet)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from dlmvi.deploy.web.responses import PAGE_HEADERS

STATIC = Path(__file__).resolve().parents[2] / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page():
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)
