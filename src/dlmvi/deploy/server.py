"""The local web application behind ``dlmvi serve``: one page for the radiologist, a JSON API.

The model is loaded once, by the caller, and shared by every request. A page (``/``, plain
HTML and JavaScript under ``deploy/static``, nothing fetched from the internet) uploads a
patient, shows the card, and - when the upload has no tumour mask - lets the user draw the
tumour box on three consecutive slices of each sequence in a canvas viewer. The JSON API:

* ``POST /api/predict`` (multipart: ``archive`` or ``files``, ``afp``; optional ``patient_id``,
  ``rois`` (a rois.csv), ``threshold``) returns what ``predict-patient`` writes to result.json;
* ``POST /api/predict/first`` (the same fields) answers as soon as the first-slice probability,
  the nomogram risk and the decision are ready; ``GET /api/followups/{id}`` returns the rest
  (the full result.json); the page uses ``POST /api/uploads/{id}/predict/first`` the same way
  and fills in the spread and the Grad-CAM card when they arrive;
* ``GET /api/model`` the model card summary (sequences, training data, thresholds, synthetic);
* ``POST /api/uploads``, ``GET /api/uploads/{id}/volumes/{sequence}``,
  ``POST /api/uploads/{id}/predict``, ``DELETE /api/uploads/{id}``: the page's two-step path
  (upload, draw, predict);
* OpenAPI documentation at ``/docs`` (served from the package, no CDN) and ``/openapi.json``.

Safety: :class:`ServeConfig` holds the access token (required by every ``/api`` route except
``/api/health`` when set; :func:`resolve_token` makes one when the server listens beyond
loopback), the upload size limit (a 413 with the limit in the message), the number of
predictions that run at once (``workers``; further requests wait in a queue, they do not
fail) and ``keep`` (else every upload's files are deleted once its answer is ready). Archives
go through :func:`dlmvi.io.archive.safe_extract`. User mistakes become a 4xx with one clear
message in which the server's folders do not appear; anything else a 500 with a reference,
logged without its message (which could name an uploaded file). The access log has method,
route template, status and time only: no query strings, upload ids, file or patient names.

The rooms are in :mod:`dlmvi.deploy.web` (settings, state, dependencies, forms, ASGI guard, one
router per concern); :func:`create_app` assembles them and is the only place that builds the
server's state. The names other modules use are re-exported here.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Callable

from dlmvi.deploy.web.asgi import ERROR_REF, Guard, log, log_config, quiet_warnings
from dlmvi.deploy.web.boxes import check_boxes, rois_csv
from dlmvi.deploy.web.config import (DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT, DEFAULT_UPLOAD_TTL_S, MAX_PENDING_UPLOADS,
                                     PATIENT_ID, ServeConfig, is_loopback, resolve_token)
from dlmvi.deploy.web.errors import UploadRefused
from dlmvi.deploy.web.responses import PRIVATE, json_response
from dlmvi.deploy.web.routers.model import model_summary
from dlmvi.deploy.web.routers.page import STATIC
from dlmvi.deploy.web.state import Server, Upload


def create_app(model, config: ServeConfig | None = None, render_card: Callable | None = None):
    """The FastAPI application of ``dlmvi serve``, wrapped in :class:`Guard`.

    Args:
        model: the loaded :class:`~dlmvi.deploy.model.ExportedModel` (loaded once, shared).
        config: :class:`ServeConfig` (token, limits, workers, keep).
        render_card: ``render_card(prediction, model) -> html`` for the page's card
            (:func:`dlmvi.report.card.render_card`; the report stage comes after this one, so
            the command passes it in). None: the page shows the result without the card.

    Returns:
        an ASGI application; ``.fastapi`` is the FastAPI object and ``.server`` the
        :class:`Server` (its state, for tests and shutdown).
    """
    import torch
    from fastapi.staticfiles import StaticFiles
    from fastapi_offline import FastAPIOffline

    import dlmvi
    from dlmvi.deploy.web.routers import model as model_routes
    from dlmvi.deploy.web.routers import followups, page, predict, uploads, worklist

    config = config or ServeConfig()
    # channels-last once, here: predict_patient's own conversion is then a no-op that
    # concurrent requests can share; the backend's encoder (an ONNX Runtime session, or the
    # compiled PyTorch encoder) is built once, before the first request.
    if model.backend == "torch" or render_card is not None:  # the card's Grad-CAM runs on PyTorch
        model.model.encoder.to(memory_format=torch.channels_last)
    model.encoder(compiled=config.compiled)
    server = Server(model, config, render_card)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        server.close()

    api = FastAPIOffline(
        title="dlmvi serve",
        version=dlmvi.__version__,
        description=("Microvascular invasion (MVI) risk of hepatocellular carcinoma for one patient from "
                     "multiphase liver MRI and AFP. **Research use only; not a medical device.**"
                     + (" The model was trained on SYNTHETIC data." if model.synthetic else "")),
        lifespan=lifespan,
    )
    api.state.server = server
    _add_error_handlers(api)
    api.include_router(page.router)
    api.mount("/static", StaticFiles(directory=STATIC), name="static")
    for routes in (model_routes, predict, uploads, followups, worklist):
        api.include_router(routes.router)
    app = Guard(api, config.max_upload_bytes)
    app.fastapi = api
    app.server = server
    return app


def _add_error_handlers(api) -> None:
    """A refusal is its status and message; a validation error one line; anything else a 500
    with a reference that :class:`Guard` logs (without the exception's message)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @api.exception_handler(UploadRefused)
    async def _refused(_request, exc: UploadRefused):
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=PRIVATE)

    @api.exception_handler(Exception)
    async def _bug(request, _exc):
        # Starlette answers with this, then re-raises for Guard to log under the same reference.
        ref = request.scope[ERROR_REF] = secrets.token_hex(4)
        return JSONResponse({"detail": f"internal error (reference {ref}); the server's log has the details"},
                            status_code=500, headers=PRIVATE)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(v) for v in e.get("loc", ())[1:]) or "request"
            parts.append(f"{loc}: {e.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422, headers=PRIVATE)


__all__ = ["ServeConfig", "create_app", "model_summary", "resolve_token", "is_loopback", "rois_csv", "check_boxes",
           "log_config", "quiet_warnings", "Server", "Upload", "UploadRefused", "Guard", "json_response", "log",
           "STATIC", "PATIENT_ID", "DEFAULT_PORT", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_UPLOAD_TTL_S",
           "MAX_PENDING_UPLOADS"]
