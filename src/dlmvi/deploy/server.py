"""The local web application behind ``dlmvi serve``: one page for the radiologist, a JSON API.

The model is loaded once, by the caller, and shared by every request. A page (``/``, plain
HTML and JavaScript under ``deploy/static``, nothing fetched from the internet) uploads a
patient, shows the card, and - when the upload has no tumour mask - lets the user draw the
tumour box on three consecutive slices of each sequence in a canvas viewer. The JSON API:

* ``POST /api/predict`` (multipart: ``archive`` or ``files``, ``afp``; optional ``patient_id``,
  ``rois`` (a rois.csv), ``threshold``) returns what ``predict-patient`` writes to result.json;
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
"""

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import re
import secrets
import shutil
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dlmvi.errors import ConfigError, DlmviError

#: Logger of the server (access lines and internal errors; never patient data).
log = logging.getLogger("dlmvi.serve")

STATIC = Path(__file__).parent / "static"
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 512
#: An upload waiting for its boxes is dropped (files deleted) after this many seconds.
DEFAULT_UPLOAD_TTL_S = 3600.0
#: At most this many uploads wait for boxes at once; the oldest is dropped beyond it.
MAX_PENDING_UPLOADS = 32
#: A patient id that may appear in a file name and in rois.csv.
PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Scope key under which the reference of an internal error travels from the app to the log.
ERROR_REF = "dlmvi.error_ref"
#: File names accepted one by one (``files``): a sequence or its mask, NIfTI.
SEQUENCE_FILE = re.compile(r"^(?P<name>[A-Za-z0-9]+?)(?P<roi>_roi)?\.nii(\.gz)?$")


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one ``dlmvi serve`` process.

    Attributes:
        host, port: where uvicorn listens (loopback by default).
        site: the hospital or department shown on the page and in ``/api/model``.
        token: access token required by the API (None: none required, loopback only).
        workers: predictions that run at once; further requests wait their turn.
        max_upload_bytes: largest request body (bytes); larger uploads get a 413.
        max_unpacked_bytes: largest total size of an archive's files once extracted (bytes).
        keep: folder where each upload's files and results are kept; None deletes them.
        work_dir: folder for the uploads being processed (default: the system's temp folder).
        upload_ttl_s: seconds an upload waits for its boxes before it is deleted.
        compiled: run the network's encoder compiled for inference (built once at start;
            about 2.4x less CPU per patient; probabilities equal to float precision).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    site: str | None = None
    token: str | None = None
    workers: int = 1
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024**2
    max_unpacked_bytes: int = 4 * 1024**3
    keep: Path | None = None
    work_dir: Path | None = None
    upload_ttl_s: float = DEFAULT_UPLOAD_TTL_S
    compiled: bool = True

    def __post_init__(self):
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: at least 1 prediction must be able to run")
        if self.max_upload_bytes < 1:
            raise ConfigError(f"--max-upload-mb must be positive (got {self.max_upload_bytes} bytes)")
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("--token: use at least 16 characters (or leave it out to get a random one)")
        if self.keep is not None and Path(self.keep).exists() and not Path(self.keep).is_dir():
            raise ConfigError(f"--keep {self.keep}: exists and is not a folder; give a folder")


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def resolve_token(host: str, token: str | None) -> tuple[str | None, bool]:
    """The token the server will require, and whether it was generated here.

    On loopback no token is needed unless one is given; beyond loopback a token is always
    required: the given one, or a new random one (to be printed for the user).
    """
    if token:
        return token, False
    if is_loopback(host):
        return None, False
    return secrets.token_urlsafe(24), True


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


class UploadRefused(Exception):
    """A request the server refuses: an HTTP status and a message for the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _status_of(exc: DlmviError) -> int:
    from dlmvi.io.archive import ArchiveError, ArchiveTooLargeError

    if isinstance(exc, ArchiveTooLargeError):
        return 413
    if isinstance(exc, ArchiveError):
        return 400
    return 422


@dataclass
class Upload:
    """One patient's files on the server, between the upload and the prediction."""

    id: str
    folder: Path  # everything of this upload lives under it
    patient_dir: Path
    patient_id: str
    created: float
    sequences: dict = field(default_factory=dict)  # {seq: viewer info}
    volumes: dict = field(default_factory=dict)  # {seq: uint16 bytes}

    def scrub(self, text: str) -> str:
        """The message without the server's folders: paths inside the patient's folder are
        given relative to it, as the user knows them."""
        for path, label in ((self.folder / "upload", "the uploaded archive"), (self.folder / "rois.csv", "rois.csv")):
            text = text.replace(str(path), label)
        for base in sorted({str(self.patient_dir), str(self.folder / "x"), str(self.folder)}, key=len, reverse=True):
            text = text.replace(base + "/", "").replace(base, "the upload")
        return text


class Server:
    """The state shared by the requests: the model, the prediction queue, the pending uploads."""

    def __init__(self, model, config: ServeConfig, render_card: Callable | None = None):
        self.model = model
        self.config = config
        self.render_card = render_card
        self.executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="dlmvi-predict")
        base = Path(config.work_dir) if config.work_dir else None
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="dlmvi_serve_", dir=base))
        self.uploads: dict[str, Upload] = {}
        self._lock = threading.Lock()
        self._card_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe
        self.queued = 0

    # -- uploads ---------------------------------------------------------------------------
    def new_upload(self) -> Upload:
        uid = secrets.token_urlsafe(12)
        folder = self.work / uid
        folder.mkdir()
        return Upload(uid, folder, folder / "x", "patient", time.monotonic())

    def register(self, up: Upload) -> None:
        with self._lock:
            self.uploads[up.id] = up
        self.expire()

    def get(self, upload_id: str) -> Upload:
        self.expire()
        with self._lock:
            up = self.uploads.get(upload_id)
        if up is None:
            raise UploadRefused(404, "this upload is no longer on the server (it was used for a prediction, "
                                "cancelled, or waited too long); upload the patient again")
        return up

    def pop(self, upload_id: str) -> Upload:
        up = self.get(upload_id)
        with self._lock:
            if self.uploads.pop(upload_id, None) is None:
                raise UploadRefused(409, "this upload is already being predicted; wait for its result")
        return up

    def discard(self, up: Upload) -> None:
        with self._lock:
            self.uploads.pop(up.id, None)
        shutil.rmtree(up.folder, ignore_errors=True)

    def expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            old = [i for i, up in self.uploads.items() if now - up.created > self.config.upload_ttl_s]
            young = [i for i in self.uploads if i not in old]  # oldest first
            drop = [self.uploads.pop(i) for i in old + young[: max(0, len(young) - MAX_PENDING_UPLOADS)]]
        for up in drop:
            shutil.rmtree(up.folder, ignore_errors=True)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.work, ignore_errors=True)

    # -- the queue -------------------------------------------------------------------------
    async def run(self, fn, *args):
        """Run ``fn(*args)`` on one of the ``workers`` prediction threads; wait for a free one."""
        with self._lock:
            self.queued += 1
        try:
            return await asyncio.wrap_future(self.executor.submit(fn, *args))
        finally:
            with self._lock:
                self.queued -= 1

    # -- work done on the prediction threads -----------------------------------------------
    def unpack(self, up: Upload, archive: Path | None, files: list[tuple[str, Path]], patient_id: str | None) -> Upload:
        """Extract the archive (or place the files) and check that every sequence is there."""
        from dlmvi.deploy.patient import patient_folder, patient_sequences
        from dlmvi.io.archive import safe_extract

        try:
            if archive is not None:
                safe_extract(archive, up.folder / "x", max_total_bytes=self.config.max_unpacked_bytes)
                archive.unlink()
                up.patient_dir = patient_folder(up.folder / "x")
                default_id = up.patient_dir.name if up.patient_dir != up.folder / "x" else "patient"
            else:
                up.patient_dir = up.folder / "x"
                up.patient_dir.mkdir(exist_ok=True)
                for name, path in files:
                    path.rename(up.patient_dir / name)
                default_id = "patient"
            up.patient_id = patient_id or (default_id if PATIENT_ID.match(default_id) else "patient")
            found = patient_sequences(self.model.sequences, up.patient_dir, up.patient_id)
        except DlmviError as exc:
            raise UploadRefused(_status_of(exc), up.scrub(str(exc))) from None
        up.sequences = {seq: {"source": src, "mask": src.mask is not None} for seq, src in found.items()}
        return up

    def load_viewer(self, up: Upload) -> Upload:
        """Read the sequences that lack a mask, for the viewer (quantised to 16 bits)."""
        from dlmvi.deploy.patient import viewer_volume

        for seq, info in up.sequences.items():
            if info["mask"]:
                continue
            try:
                arr, spacing = viewer_volume(info["source"], up.patient_id)
            except DlmviError as exc:
                raise UploadRefused(422, up.scrub(str(exc))) from None
            lo, hi = float(arr.min()), float(arr.max())
            scale = (hi - lo) / 65535.0 if hi > lo else 1.0
            q = np.clip(np.rint((arr.astype(np.float64) - lo) / scale), 0, 65535).astype("<u2")
            p1, p99 = (float(v) for v in np.percentile(arr, [1, 99]))
            up.volumes[seq] = q.tobytes()
            info.update(shape=list(arr.shape), spacing=[round(v, 6) for v in spacing], offset=lo, scale=scale,
                        window=[p1, p99 if p99 > p1 else p1 + 1.0])
        return up

    def predict_upload(self, up: Upload, archive, files, patient_id, rois: Path | None, afp: float,
                       threshold: float | None) -> dict:
        """``POST /api/predict`` as one job: unpack, read the boxes (if any), predict."""
        self.unpack(up, archive, files, patient_id)
        bare = [seq for seq, info in up.sequences.items() if not info["mask"]]
        if bare and rois is None:
            raise UploadRefused(422, f"patient {up.patient_id}: no tumour mask for {', '.join(bare)} "
                                f"(expected {', '.join(s + '_roi.nii.gz' for s in bare)}); send the tumour boxes "
                                "as rois.csv (field 'rois'), or draw them on the web page")
        return self.predict(up, afp, rois, threshold, card=False)

    def predict(self, up: Upload, afp: float, boxes, threshold: float | None, card: bool) -> dict:
        """Predict one uploaded patient; returns {result, card_html, rois_csv}; deletes the upload."""
        from dlmvi.deploy.patient import predict_patient

        try:
            try:
                res = predict_patient(self.model.path, up.patient_dir, afp, patient_id=up.patient_id,
                                      boxes=boxes, threshold=threshold,
                                      explain=card and self.render_card is not None, model=self.model,
                                      compiled=self.config.compiled)
            except DlmviError as exc:
                raise UploadRefused(_status_of(exc), up.scrub(str(exc))) from None
            out = {"result": res.to_dict(), "card_html": None, "rois_csv": None}
            if card and self.render_card is not None:
                with self._card_lock:
                    out["card_html"] = self.render_card(res, self.model)
            if isinstance(boxes, dict) and boxes:
                out["rois_csv"] = rois_csv(up.patient_id, boxes)
            if self.config.keep is not None:
                self._keep(up, out, boxes)
            return out
        finally:
            shutil.rmtree(up.folder, ignore_errors=True)

    def _keep(self, up: Upload, out: dict, boxes) -> None:
        from dlmvi.io.atomic import write_json, write_text

        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        dest = Path(self.config.keep) / f"{stamp}_{up.id[:8]}"
        dest.mkdir(parents=True)
        shutil.copytree(up.patient_dir, dest / "patient")
        write_json(dest / "result.json", out["result"])
        if out["rois_csv"]:
            write_text(dest / "rois.csv", out["rois_csv"])
        elif isinstance(boxes, (str, Path)):
            shutil.copy(boxes, dest / "rois.csv")
        if out["card_html"]:
            write_text(dest / "card.html", out["card_html"])


def rois_csv(patient_id: str, boxes: dict) -> str:
    """Boxes as rois.csv text (``patient_id, sequence, slice, x0, y0, x1, y1``)."""
    lines = ["patient_id,sequence,slice,x0,y0,x1,y1"]
    for seq, rows in boxes.items():
        for row in sorted(rows):
            lines.append(",".join([patient_id, seq, *(str(int(v)) for v in row)]))
    return "\n".join(lines) + "\n"


def check_boxes(boxes, model, up: Upload) -> dict:
    """The page's boxes as {sequence: ((slice, x0, y0, x1, y1), ...)}, checked.

    Each sequence without a mask needs boxes on ``n_slices`` consecutive slices, inside the
    image; a sequence with a mask takes no boxes (the mask wins).
    """
    n = int(model.prepare.n_slices)
    boxes = dict(boxes or {})
    unknown = sorted(set(boxes) - set(up.sequences))
    if unknown:
        raise UploadRefused(422, f"boxes for {', '.join(unknown)}: the model uses {', '.join(up.sequences)} only")
    out = {}
    for seq, info in up.sequences.items():
        rows = boxes.get(seq) or []
        if info["mask"]:
            if rows:
                raise UploadRefused(422, f"{seq}: the upload has a tumour mask for {seq}; draw no box on it")
            continue
        try:
            rows = [tuple(int(v) for v in r) for r in rows]
        except (TypeError, ValueError):
            raise UploadRefused(422, f"{seq}: each box is [slice, x0, y0, x1, y1] in whole voxels") from None
        if any(len(r) != 5 for r in rows):
            raise UploadRefused(422, f"{seq}: each box is [slice, x0, y0, x1, y1] in whole voxels")
        slices = sorted(r[0] for r in rows)
        consecutive = bool(slices) and slices == list(range(slices[0], slices[0] + len(slices)))
        if len(rows) != n or not consecutive:
            got = ", ".join(str(s) for s in slices) or "none"
            raise UploadRefused(422, f"patient {up.patient_id}, {seq}: draw the tumour box on {n} consecutive "
                                f"slices (boxed slices: {got})")
        nz, ny, nx = info["shape"]
        for s, x0, y0, x1, y1 in rows:
            if not (0 <= s < nz and 0 <= x0 <= x1 < nx and 0 <= y0 <= y1 < ny):
                raise UploadRefused(422, f"patient {up.patient_id}, {seq}: box slice {s}, ({x0},{y0})-({x1},{y1}) "
                                    f"lies outside the image of {nx}x{ny}x{nz} voxels or has x0>x1 or y0>y1")
        out[seq] = tuple(sorted(rows))
    return out


# ---------------------------------------------------------------------------------------
# ASGI: limit, access log, last-resort error handler
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# the application
# ---------------------------------------------------------------------------------------
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
    import contextlib

    import torch
    from fastapi import Depends, File, Form, HTTPException, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from fastapi.staticfiles import StaticFiles
    from fastapi_offline import FastAPIOffline
    from pydantic import BaseModel, Field
    from starlette.concurrency import run_in_threadpool

    import dlmvi

    config = config or ServeConfig()
    # channels-last once, here: predict_patient's own conversion is then a no-op that
    # concurrent requests can share; the compiled encoder is built before the first request.
    model.model.encoder.to(memory_format=torch.channels_last)
    if config.compiled:
        model.inference_encoder()
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
    bearer = HTTPBearer(auto_error=False, description="the token printed by `dlmvi serve`")

    def authorised(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if config.token is None:
            return
        if cred is None or not secrets.compare_digest(cred.credentials.encode(), config.token.encode()):
            raise HTTPException(401, "this server requires its access token: open the address printed by "
                                "`dlmvi serve` (it ends with #token=...), or send 'Authorization: Bearer TOKEN'",
                                headers={"WWW-Authenticate": "Bearer"})

    private = {"Cache-Control": "no-store"}

    @api.exception_handler(UploadRefused)
    async def _refused(_request, exc: UploadRefused):
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=private)

    @api.exception_handler(Exception)
    async def _bug(request, _exc):
        # Starlette answers with this, then re-raises for Guard to log under the same reference.
        ref = request.scope[ERROR_REF] = secrets.token_hex(4)
        return JSONResponse({"detail": f"internal error (reference {ref}); the server's log has the details"},
                            status_code=500, headers=private)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(v) for v in e.get("loc", ())[1:]) or "request"
            parts.append(f"{loc}: {e.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422, headers=private)

    # -- page -----------------------------------------------------------------------------
    page_headers = {
        "Content-Security-Policy": ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                                    "script-src 'self'; frame-src 'self' blob: data:; connect-src 'self' blob:"),
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    }

    @api.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers=page_headers)

    api.mount("/static", StaticFiles(directory=STATIC), name="static")

    # -- API --------------------------------------------------------------------------------
    @api.get("/api/health", tags=["server"], summary="Liveness (no token needed)")
    async def health():
        return {"status": "ok", "queued": server.queued, "workers": config.workers}

    @api.get("/api/model", tags=["model"], summary="Model card summary", dependencies=[Depends(authorised)])
    async def model_card():
        """Sequences, training data, thresholds, nomogram and the synthetic flag of the loaded model."""
        return json_response(model_summary(model, config.site, config.max_upload_bytes))

    def save(src: UploadFile, dest: Path) -> Path:
        src.file.seek(0)
        with open(dest, "xb") as out:
            shutil.copyfileobj(src.file, out, 1024 * 1024)
        return dest

    async def receive_upload(up: Upload, archive: UploadFile | None, files: list[UploadFile] | None):
        """Write the request's archive or files into the upload's folder; returns (archive, files)."""
        if archive is not None and files:
            raise UploadRefused(400, "send either one archive or the sequence files, not both")
        if archive is None and not files:
            raise UploadRefused(400, "no patient: send the patient's folder as a .zip/.tar.gz archive (field "
                                "'archive') or the sequence files (field 'files')")

        if archive is not None:
            return await run_in_threadpool(save, archive, up.folder / "upload"), []
        placed = []
        allowed = set(model.sequences)
        for f in files:
            name = Path(f.filename or "").name
            m = SEQUENCE_FILE.match(name)
            if m is None or m.group("name") not in allowed or name != (f.filename or ""):
                raise UploadRefused(400, f"file {name!r}: name the sequence files "
                                    f"{', '.join(s + '.nii.gz' for s in model.sequences)} and their masks "
                                    f"{', '.join(s + '_roi.nii.gz' for s in model.sequences)} (NIfTI), or send an "
                                    "archive of the patient's folder (DICOM series)")
            if any(n == name for n, _ in placed):
                raise UploadRefused(400, f"file {name!r} was sent twice")
            placed.append((name, await run_in_threadpool(save, f, up.folder / f"file{len(placed)}")))
        return None, placed

    def check_afp(afp: float | None) -> float | None:
        if afp is not None and not (np.isfinite(afp) and afp >= 0):
            raise UploadRefused(422, f"AFP {afp!r} must be a non-negative number in ng/mL")
        return afp

    def check_id(patient_id: str | None) -> str | None:
        if patient_id in (None, ""):
            return None
        patient_id = patient_id.strip()
        if not PATIENT_ID.match(patient_id):
            raise UploadRefused(422, "patient id: use 1-64 letters, digits, '.', '_' or '-' (no names or record "
                                "numbers: the id appears on the card and in rois.csv)")
        return patient_id

    @api.post("/api/predict", tags=["predict"], summary="Predict one patient (result.json)",
              dependencies=[Depends(authorised)])
    async def predict(
        afp: float = Form(..., description="alpha-fetoprotein, ng/mL"),
        archive: UploadFile | None = File(None, description="the patient's folder as .zip, .tar or .tar.gz "
                                          "(NIfTI files or DICOM series folders, masks <SEQ>_roi.nii.gz)"),
        files: list[UploadFile] | None = File(None, description="or the sequence files: <SEQ>.nii.gz and "
                                              "<SEQ>_roi.nii.gz"),
        rois: UploadFile | None = File(None, description="rois.csv with the tumour boxes (instead of masks)"),
        patient_id: str | None = Form(None, description="id shown in the result (default: the archive's folder)"),
        threshold: float | None = Form(None, description="nomogram risk for 'MVI likely' (default: the model's)"),
    ):
        """Returns the JSON that ``dlmvi predict-patient --out`` writes to result.json.

        The upload's files are deleted once the result is ready (unless the server runs with --keep).
        Requests beyond the server's --workers wait in a queue.
        """
        check_afp(afp)
        pid = check_id(patient_id)
        up = server.new_upload()
        try:
            arch, placed = await receive_upload(up, archive, files)
            table = None if rois is None else await run_in_threadpool(save, rois, up.folder / "rois.csv")
            out = await server.run(server.predict_upload, up, arch, placed, pid, table, afp, threshold)
        finally:
            shutil.rmtree(up.folder, ignore_errors=True)
        return json_response(out["result"])

    @api.post("/api/uploads", tags=["page"], summary="Upload a patient for the page (step 1)",
              dependencies=[Depends(authorised)])
    async def upload(
        archive: UploadFile | None = File(None, description="the patient's folder as .zip, .tar or .tar.gz"),
        files: list[UploadFile] | None = File(None, description="or the sequence files (NIfTI)"),
        patient_id: str | None = Form(None),
    ):
        """Unpacks the patient and says which sequences need a box (no mask); the viewer reads
        those sequences with ``GET /api/uploads/{upload_id}/volumes/{sequence}``."""
        pid = check_id(patient_id)
        up = server.new_upload()
        try:
            arch, placed = await receive_upload(up, archive, files)
            await server.run(server.unpack, up, arch, placed, pid)
            await server.run(server.load_viewer, up)
        except BaseException:
            shutil.rmtree(up.folder, ignore_errors=True)
            raise
        server.register(up)
        seqs = {s: {k: v for k, v in info.items() if k != "source"} for s, info in up.sequences.items()}
        return json_response({
            "upload_id": up.id, "patient_id": up.patient_id, "n_slices": int(model.prepare.n_slices),
            "sequences": seqs, "needs_boxes": [s for s, i in up.sequences.items() if not i["mask"]],
            "expires_s": config.upload_ttl_s,
        })

    @api.get("/api/uploads/{upload_id}/volumes/{sequence}", tags=["page"], dependencies=[Depends(authorised)],
             summary="A sequence's voxels for the viewer (uint16, little-endian)")
    async def volume(upload_id: str, sequence: str):
        """Raw ``uint16`` voxels in the file's own grid, ``(slices, y, x)`` in C order; the intensity
        is ``offset + scale * value`` (both given by ``POST /api/uploads``)."""
        up = server.get(upload_id)
        data = up.volumes.get(sequence)
        if data is None:
            raise UploadRefused(404, f"no volume {sequence!r} in this upload (only sequences without a mask "
                                "are shown for drawing)")
        return Response(data, media_type="application/octet-stream", headers=private)

    class BoxesRequest(BaseModel):
        afp: float = Field(..., description="alpha-fetoprotein, ng/mL")
        boxes: dict[str, list[list[int]]] = Field(default_factory=dict, description=(
            "{sequence: [[slice, x0, y0, x1, y1], ...]}: voxel indices in the image file's grid, inclusive"))
        threshold: float | None = None

    @api.post("/api/uploads/{upload_id}/predict", tags=["page"], dependencies=[Depends(authorised)],
              summary="Predict an uploaded patient, with the boxes drawn on the page (step 2)")
    async def predict_upload(upload_id: str, body: BoxesRequest):
        """Returns ``{result, card_html, rois_csv}``; the upload is deleted afterwards."""
        check_afp(body.afp)
        up = server.get(upload_id)
        boxes = check_boxes(body.boxes, model, up)
        up = server.pop(upload_id)
        try:
            out = await server.run(server.predict, up, body.afp, boxes or None, body.threshold, True)
        finally:
            shutil.rmtree(up.folder, ignore_errors=True)
        return json_response(out)

    @api.delete("/api/uploads/{upload_id}", tags=["page"], status_code=204, dependencies=[Depends(authorised)],
                summary="Cancel an upload (its files are deleted)")
    async def cancel(upload_id: str):
        server.discard(server.get(upload_id))
        return Response(status_code=204)

    app = Guard(api, config.max_upload_bytes)
    app.fastapi = api
    app.server = server
    return app


def _plain(obj):
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

    return Response(json.dumps(obj, default=_plain), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


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


__all__ = ["ServeConfig", "create_app", "model_summary", "resolve_token", "is_loopback", "rois_csv",
           "log_config", "quiet_warnings", "Server", "Guard", "DEFAULT_PORT", "DEFAULT_MAX_UPLOAD_MB"]
