"""The state shared by the requests of ``dlmvi serve``: the model, the prediction queue and the
uploads that wait for their boxes. Handlers receive it through :func:`dlmvi.deploy.web.deps.get_server`."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dlmvi.deploy.web.boxes import rois_csv
from dlmvi.deploy.web.config import MAX_PENDING_UPLOADS, PATIENT_ID, ServeConfig
from dlmvi.deploy.web.errors import UploadRefused, status_of
from dlmvi.errors import DlmviError


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
    study: object | None = None  # a PACS worklist study (dlmvi.deploy.pacs_study.StudyCase)

    def scrub(self, text: str) -> str:
        """The message without the server's folders: paths inside the patient's folder are
        given relative to it, as the user knows them."""
        for path, label in ((self.folder / "upload", "the uploaded archive"), (self.folder / "rois.csv", "rois.csv")):
            text = text.replace(str(path), label)
        for base in sorted({str(self.patient_dir), str(self.folder / "x"), str(self.folder)}, key=len, reverse=True):
            text = text.replace(base + "/", "").replace(base, "the upload")
        return text


@dataclass
class Followup:
    """The rest of a prediction whose first answer was sent (``GET /api/followups/{id}``)."""

    id: str
    future: Future
    created: float
    view: Callable = lambda out: out  # what of the job's result the client gets


class Server:
    """The state shared by the requests: the model, the prediction queue, the pending uploads and
    the predictions whose first answer was sent and whose rest is still being computed."""

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
        self.followups: dict[str, Followup] = {}
        self._lock = threading.Lock()
        self._card_lock = threading.Lock()  # one card rendered at a time (matplotlib's font cache is shared)
        self.queued = 0
        from dlmvi.deploy.web.worklist import Reports

        self.reports = Reports()  # SRs of worklist predictions, until sent to the PACS

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

    async def run_first(self, fn, *args, view: Callable | None = None) -> tuple[dict, str]:
        """Run ``fn(*args, on_first)`` on a prediction thread and return as soon as it calls
        ``on_first(answer)``: ``(answer, followup id)``. The rest of the job goes on; its result
        (``view(result)`` when given) is collected with :meth:`followup`. An error before the
        first answer is raised here."""
        first: Future = Future()

        def on_first(answer):
            if not first.done():
                first.set_result(answer.to_dict())

        def done(job: Future):
            with self._lock:
                self.queued -= 1
            if not first.done():  # the job ended without a first answer: its error is the answer
                exc = job.exception()
                first.set_exception(exc) if exc is not None else first.set_result(None)

        with self._lock:
            self.queued += 1
        job = self.executor.submit(fn, *args, on_first)
        job.add_done_callback(done)
        fid = secrets.token_urlsafe(12)
        with self._lock:
            self.followups[fid] = Followup(fid, job, time.monotonic(), view or (lambda out: out))
        try:
            answer = await asyncio.wrap_future(first)
        except BaseException:
            with self._lock:
                self.followups.pop(fid, None)
            raise
        self.expire_followups()
        return answer, fid

    async def followup(self, followup_id: str, wait_s: float):
        """The full result of a prediction whose first answer was sent, waiting up to ``wait_s``
        seconds; None while it is still being computed. A result is handed out once."""
        with self._lock:
            f = self.followups.get(followup_id)
        if f is None:
            raise UploadRefused(404, "no such prediction on the server (its result was already collected, or it "
                                "waited too long); predict the patient again")
        try:
            out = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(f.future)), timeout=max(0.0, wait_s))
        except asyncio.TimeoutError:
            return None
        finally:
            if f.future.done():
                with self._lock:
                    self.followups.pop(followup_id, None)
        return f.view(out)

    def expire_followups(self) -> None:
        now = time.monotonic()
        with self._lock:
            for fid in [i for i, f in self.followups.items() if f.future.done()
                        and now - f.created > self.config.upload_ttl_s]:
                self.followups.pop(fid)

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
            raise UploadRefused(status_of(exc), up.scrub(str(exc))) from None
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
                       threshold: float | None, on_first=None) -> dict:
        """``POST /api/predict`` as one job: unpack, read the boxes (if any), predict; deletes the upload."""
        try:
            self.unpack(up, archive, files, patient_id)
            bare = [seq for seq, info in up.sequences.items() if not info["mask"]]
            if bare and rois is None:
                raise UploadRefused(422, f"patient {up.patient_id}: no tumour mask for {', '.join(bare)} "
                                    f"(expected {', '.join(s + '_roi.nii.gz' for s in bare)}); send the tumour "
                                    "boxes as rois.csv (field 'rois'), or draw them on the web page")
            return self.predict(up, afp, rois, threshold, card=False, on_first=on_first)
        finally:
            shutil.rmtree(up.folder, ignore_errors=True)

    def predict(self, up: Upload, afp: float, boxes, threshold: float | None, card: bool, on_first=None) -> dict:
        """Predict one uploaded patient; returns {result, card_html, rois_csv}; deletes the upload.

        Args:
            on_first: called with the :class:`~dlmvi.deploy.patient.FirstAnswer` as soon as it
                is ready (``POST .../first``), before the spread, the Grad-CAM and the card.
        """
        from dlmvi.deploy.patient import predict_patient

        try:
            try:
                res = predict_patient(self.model.path, up.patient_dir, afp, patient_id=up.patient_id,
                                      boxes=boxes, threshold=threshold,
                                      explain=card and self.render_card is not None, model=self.model,
                                      compiled=self.config.compiled, on_first=on_first)
            except DlmviError as exc:
                raise UploadRefused(status_of(exc), up.scrub(str(exc))) from None
            out = {"result": res.to_dict(), "card_html": None, "rois_csv": None}
            if up.study is not None:  # a worklist study: its SR, sent from the page
                from dlmvi.deploy.web.worklist import report_of

                out["report_id"] = report_of(self, up, res)
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

