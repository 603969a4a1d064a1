"""JSON answers of ``dlmvi serve``: never cached (they hold a patient's result), numpy values plain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: Headers of every answer that holds a patient's data.
PRIVATE = {"Cache-Control": "no-store"}
#: Headers of the page: nothing loaded from elsewhere, nothing sniffed, no referrer.
PAGE_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                                "script-src 'self'; frame-src 'self' blob: data:; connect-src 'self' blob:"),
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
}


def plain(obj):
    """numpy scalars and arrays, tuples and paths as JSON values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def json_response(obj, status: int = 200):
    """A JSON response that is never cached (it holds a patient's result)."""
    from starlette.responses import Response

    return Response(json.dumps(obj, default=plain), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})
