"""The application behind ``dlmvi annotate`` (the annotation router, the serve page's static
files and its outermost guard: access log without ids, last-resort error handler)."""

from __future__ import annotations

import secrets

from dlmvi.deploy.annotate import AnnotationError, Annotator
from dlmvi.deploy.web.asgi import ERROR_REF, Guard
from dlmvi.deploy.web.responses import PRIVATE
from dlmvi.deploy.web.routers.page import STATIC
from dlmvi.errors import DlmviError

#: Largest request body of the annotation API (boxes only).
MAX_BODY_BYTES = 1024**2


def create_annotate_app(annotator: Annotator):
    """The ASGI application of ``dlmvi annotate`` for one :class:`Annotator`; ``.fastapi`` is
    the FastAPI object."""
    from fastapi.staticfiles import StaticFiles
    from fastapi_offline import FastAPIOffline

    import dlmvi
    from dlmvi.deploy.web.routers import annotate

    api = FastAPIOffline(title="dlmvi annotate", version=dlmvi.__version__,
                         description="The annotation worklist of one cohort for one reader (boxes on key slices).")
    api.state.annotator = annotator
    add_error_handlers(api)
    api.include_router(annotate.router)
    api.mount("/static", StaticFiles(directory=STATIC), name="static")
    app = Guard(api, MAX_BODY_BYTES)
    app.fastapi = api
    return app


def add_error_handlers(api) -> None:
    """A refusal is its status and one message; anything else a 500 with a reference."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @api.exception_handler(DlmviError)
    async def refused(_request, exc: DlmviError):
        status = exc.status if isinstance(exc, AnnotationError) else 422
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=PRIVATE)

    @api.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(v) for v in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', 'invalid')}"
                 for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422, headers=PRIVATE)

    @api.exception_handler(Exception)
    async def bug(request, _exc):
        ref = request.scope[ERROR_REF] = secrets.token_hex(4)
        return JSONResponse({"detail": f"internal error (reference {ref}); the server's log has the details"},
                            status_code=500, headers=PRIVATE)
