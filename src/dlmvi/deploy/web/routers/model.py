"""The server's liveness and the loaded model's card in brief."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from dlmvi.deploy.web.deps import authorised, get_server
from dlmvi.deploy.web.responses import json_response
from dlmvi.deploy.web.state import Server

router = APIRouter()


@router.get("/api/health", tags=["server"], summary="Liveness (no token needed)")
async def health(server: Server = Depends(get_server)):
    return {"status": "ok", "queued": server.queued, "workers": server.config.workers}


@router.get("/api/model", tags=["model"], summary="Model card summary", dependencies=[Depends(authorised)])
async def model_card(server: Server = Depends(get_server)):
    """Sequences, training data, thresholds, nomogram and the synthetic flag of the loaded model."""
    out = model_summary(server.model, server.config.site, server.config.max_upload_bytes)
    out["pacs"] = server.config.pacs.name if server.config.pacs is not None else None
    return json_response(out)


def model_summary(em, site: str | None = None, max_upload_bytes: int | None = None) -> dict:
    """What ``GET /api/model`` returns: the model card in brief.

    Args:
        em: the :class:`~dlmvi.deploy.model.ExportedModel`.
        site: shown as the server's site.
        max_upload_bytes: the server's upload limit (bytes), for the page.
    """
    from dlmvi.constants import SYNTHETIC_NOTICE

    nom = em.nomogram
    out = {
        "site": site,
        "sequences": list(em.sequences),
        "class_names": em.class_names,
        "n_slices": int(em.prepare.n_slices),
        "input_size_px": int(em.network.input_size),
        "inference": em.config.get("inference"),
        "backend": em.backend_info,
        "thresholds": {"dl_threshold": em.dl_threshold, "risk_threshold": em.risk_threshold},
        "nomogram": None if nom is None else {k: nom[k] for k in ("formula", "intercept", "coefficients",
                                                                  "cutoffs", "n", "validation") if k in nom},
        "training_data": em.training_data,
        "synthetic": em.synthetic,
        "dlmvi_version": em.config.get("dlmvi_version"),
        "format": em.config.get("format"),
        "max_upload_bytes": max_upload_bytes,
        "notice": "Research use only; not a medical device. Not for diagnosis or treatment decisions.",
    }
    if em.synthetic:
        out["synthetic_notice"] = SYNTHETIC_NOTICE
    return out

