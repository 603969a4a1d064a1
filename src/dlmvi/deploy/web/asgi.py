"""The outermost layer of ``dlmvi serve`` (pure ASGI: size limit, access log, last-resort error
handler) and its logging: nothing a patient could be identified by reaches the log."""

from __future__ import annotations

import logging
import secrets
import time
import traceback
from pathlib import Path

#: Logger of the server (access lines and internal errors; never patient data).
log = logging.getLogger("dlmvi.serve")
#: Scope key under which the reference of an internal error travels from the app to the log.
ERROR_REF = "dlmvi.error_ref"


def _size(n: int) -> str:
    return f"{n / 1024**2:.1f} MB" if n >= 1024**2 else f"{n / 1024:.0f} kB"


class Guard:
    """Outermost layer of the application (pure ASGI).

    * refuses a request body larger than ``max_bytes`` with a 413 (at once when the
      Content-Length says so, else as soon as the streamed body passes the limit);
    * logs one access line per request: method, route template, status, seconds (no query
      string, no path parameters);
    * turns any unexpected exception into a 500 with a reference; the log gets the exception's
      type and stack frames, not its message (it could name an uploaded file).
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self, size: int | None = None) -> str:
        got = f" ({_size(size)})" if size is not None else ""
        return (f"the upload{got} is larger than this server's limit of {_size(self.max_bytes)}; send a smaller "
                "archive (only the model's sequences and their masks), or restart the server with a larger "
                "--max-upload-mb")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse

        t0 = time.perf_counter()
        state = {"status": None}

        async def send_logged(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            await send(message)

        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        try:
            if length is not None and int(length) > self.max_bytes:
                await JSONResponse({"detail": self.too_large(int(length))}, status_code=413,
                                   headers={"Connection": "close"})(scope, receive, send_logged)
                return
            received = 0

            async def limited():
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_bytes:
                        raise HTTPException(413, self.too_large())
                return message

            await self.app(scope, limited, send_logged)
        except Exception as exc:  # noqa: BLE001 - the last resort: never a trace to the client
            ref = scope.get(ERROR_REF) or secrets.token_hex(4)  # set by the app's handler, if it answered
            # where it happened (file, line, function), without source lines or the message
            frames = "\n".join(f"  {Path(f.filename).name}:{f.lineno} in {f.name}"
                                for f in traceback.extract_tb(exc.__traceback__))
            log.error("internal error %s: %s (message withheld: it may name uploaded files)\n%s",
                      ref, type(exc).__name__, frames)
            if state["status"] is None:
                await JSONResponse({"detail": f"internal error (reference {ref}); the server's log has the details"},
                                   status_code=500)(scope, receive, send_logged)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "(no route)"
            log.info("%s %s %s %.3fs", scope.get("method"), path, state["status"], time.perf_counter() - t0)


def log_config(level: str = "INFO") -> dict:
    """uvicorn's logging configuration for ``dlmvi serve``: uvicorn's own access log is off
    (:class:`Guard` writes one without query strings or ids); messages go to stderr."""
    fmt = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s", "datefmt": "%Y-%m-%d %H:%M:%S"}
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": fmt},
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            # the multipart parser's warnings quote bytes of the upload
            "python_multipart": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
            "dlmvi.serve": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }


def quiet_warnings() -> None:
    """Keep warnings out of the server's log: dlmvi's own (they name the patient) reach the
    user in result.json's ``input_warnings``; other libraries' are logged without their text."""
    import warnings

    from dlmvi.errors import DlmviWarning

    warnings.filterwarnings("ignore", category=DlmviWarning)

    def show(message, category, filename, lineno, file=None, line=None):
        log.warning("%s at %s:%s (text withheld: it may name uploaded files)", category.__name__,
                    Path(filename).name, lineno)

    warnings.showwarning = show

