"""``dlmvi listen``: a DICOM node (C-STORE SCP, pynetdicom) that predicts each study it receives
and sends the SR back (MONAI Deploy's model of an AI node: DICOM in, DICOM SR out).

* **Receiving.** Calling AE titles outside ``allow_ae`` are refused at association (A-ASSOCIATE-RJ,
  "calling AE title not recognised"); loopback by default. Every instance is written
  atomically into ``SPOOL/<study pseudonym>/files/<Modality>/<SOPInstanceUID>.dcm``.
* **Complete.** A study is processed once no instance of it arrived for ``quiet_seconds`` (a
  modality or a PACS sends a study as a burst; a study still arriving is not touched).
* **Predicting.** :func:`dlmvi.deploy.pacs_study.predict_study`, the code behind
  ``predict-patient --pacs``: the map's rules, the study's SEG or RTSTRUCT as the ROI. A study
  without a ROI gets an SR saying so and waits: a SEG/RTSTRUCT arriving later (or a box drawn
  in ``dlmvi serve``) triggers the prediction.
* **Answering.** The SR is written to ``SPOOL/<study>/report.dcm`` and, with ``send_to``, stored
  into the study on that PACS (STOW-RS or C-STORE).
* **State and restarts.** ``SPOOL/<study>/state.json`` holds each study's state (receiving,
  predicted, waiting for ROI, failed with the message); a restart resumes every study that
  was receiving or being processed. One study's failure is logged and recorded, never fatal.

Logs name studies by pseudonym only.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dlmvi.errors import DlmviError

RESUME = ("receiving", "processing")


@dataclass(frozen=True)
class ListenerConfig:
    """Settings of the DICOM node (built once by the CLI)."""

    spool: Path
    ae_title: str = "DLMVI"
    host: str = "127.0.0.1"
    port: int = 11112
    allow_ae: tuple[str, ...] = ()
    quiet_seconds: float = 10.0
    poll_seconds: float = 0.25
    afp_table: Path | None = None


class Listener:
    """The node: :meth:`start` (non-blocking), :meth:`stop`, :meth:`serve_forever`."""

    def __init__(self, model, imap, config: ListenerConfig, send_to=None, log: Callable[[str], None] = print):
        self.model, self.imap, self.config, self.send_to, self.log = model, imap, config, send_to, log
        self.spool = Path(config.spool)
        self.spool.mkdir(parents=True, exist_ok=True)
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = None
        self._worker = None

    # -- state -------------------------------------------------------------------------------
    def state(self, key: str) -> dict:
        p = self.spool / key / "state.json"
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return {}

    def _set_state(self, key: str, **values) -> None:
        from dlmvi.io.atomic import write_json

        doc = {**self.state(key), **values, "updated": time.time()}
        write_json(self.spool / key / "state.json", doc)

    # -- receiving ---------------------------------------------------------------------------
    def _on_store(self, event):
        from dlmvi.deploy.pacs_study import study_pseudonym
        from dlmvi.io.pacs import save_instance

        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            uid = str(ds.StudyInstanceUID)
        except Exception:  # noqa: BLE001 - a dataset we cannot decode: DICOM status, not a crash
            return 0xC210  # cannot understand
        key = study_pseudonym(uid)
        with self._lock:
            fresh = key not in self._last
            self._last[key] = time.monotonic()
            try:
                save_instance(ds, self.spool / key / "files")
            except (OSError, DlmviError):
                return 0xA700  # out of resources
            if fresh or self.state(key).get("status") not in ("receiving",):
                self._set_state(key, study_uid=uid, status="receiving")
        return 0x0000

    def _ae(self):
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.config.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        if self.config.allow_ae:
            ae.require_calling_aet = list(self.config.allow_ae)
        return ae, [(evt.EVT_C_STORE, self._on_store)]

    # -- processing --------------------------------------------------------------------------
    def due(self) -> list[str]:
        """Studies complete (quiet for ``quiet_seconds``) and not yet processed."""
        now = time.monotonic()
        with self._lock:
            return [k for k, t in self._last.items()
                    if now - t >= self.config.quiet_seconds and self.state(k).get("status") == "receiving"]

    def process(self, key: str) -> str:
        """Predict one study, write and send its SR; returns its new status (never raises)."""
        import shutil
        import tempfile

        from dlmvi.deploy.pacs_study import predict_study

        doc = self.state(key)
        self._set_state(key, status="processing")
        t0 = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix=f"dlmvi_listen_{key}_"))
        try:
            afp = self.afp_of(key)
            case, res, sr = predict_study(self.model, self.spool / key / "files", work, self.imap,
                                          afp=afp, study_uid=doc.get("study_uid", ""))
            sr.save_as(self.spool / key / "report.dcm", enforce_file_format=True)
            status = "predicted" if res is not None else "waiting for ROI"
            sent = ""
            if self.send_to is not None:
                from dlmvi.io.pacs import connect

                connect(self.send_to).store([sr])
                sent = f"; SR stored on {self.send_to.where()}"
            detail = (f"DL-MVI probability {res.probability:.3f}, {res.decision}" if res is not None
                      else "no tumour ROI yet (SR says so; waiting for a SEG/RTSTRUCT)")
            self._set_state(key, status=status, message=detail, report_sop=str(sr.SOPInstanceUID),
                            seconds=round(time.perf_counter() - t0, 3), sent=bool(sent))
            self.log(f"study {key}: {status}: {detail}{sent}")
            return status
        except DlmviError as exc:
            self._set_state(key, status="failed", message=str(exc))
            self.log(f"study {key}: failed: {exc}")
            return "failed"
        except Exception as exc:  # noqa: BLE001 - a bug in one study must not stop the node
            self._set_state(key, status="failed", message=f"internal error: {type(exc).__name__}: {exc}")
            self.log(f"study {key}: failed with an internal error (a bug; please report it):\n"
                     + traceback.format_exc())
            return "failed"
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def afp_of(self, key: str) -> float | None:
        """The study's AFP (ng/mL) from ``afp_table`` (CSV ``accession,afp``), by AccessionNumber;
        None without a table or a row (the SR then has no nomogram risk)."""
        import csv

        import pydicom

        if self.config.afp_table is None:
            return None
        first = next((p for p in sorted((self.spool / key / "files").rglob("*.dcm"))), None)
        if first is None:
            return None
        acc = str(pydicom.dcmread(first, stop_before_pixels=True, specific_tags=["AccessionNumber"])
                  .get("AccessionNumber", ""))
        try:
            rows = list(csv.DictReader(Path(self.config.afp_table).read_text(encoding="utf-8-sig").splitlines()))
        except OSError as exc:
            from dlmvi.errors import ConfigError

            raise ConfigError(f"--afp-table {self.config.afp_table} cannot be read ({exc.strerror})") from None
        for i, r in enumerate(rows, start=2):
            if acc and (r.get("accession") or "").strip() == acc:
                try:
                    return float((r.get("afp") or "").replace(",", "."))
                except ValueError:
                    from dlmvi.errors import ConfigError

                    raise ConfigError(f"{self.config.afp_table}, row {i}: afp is not a number (ng/mL)") from None
        return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            for key in self.due():
                self.process(key)
            self._stop.wait(self.config.poll_seconds)

    def resume(self) -> list[str]:
        """Studies left receiving or processing by an earlier run: their quiet period restarts."""
        keys = []
        for d in sorted(p for p in self.spool.iterdir() if p.is_dir()):
            st = self.state(d.name)
            if st.get("status") in RESUME:
                self._set_state(d.name, status="receiving")
                with self._lock:
                    self._last[d.name] = time.monotonic()
                keys.append(d.name)
        if keys:
            self.log(f"resuming {len(keys)} pending stud{'y' if len(keys) == 1 else 'ies'}: {', '.join(keys)}")
        return keys

    # -- running -----------------------------------------------------------------------------
    def start(self) -> "Listener":
        ae, handlers = self._ae()
        self.resume()
        try:
            self._server = ae.start_server((self.config.host, self.config.port), block=False, evt_handlers=handlers)
        except OSError as exc:
            from dlmvi.errors import PacsError

            raise PacsError(f"cannot listen on {self.config.host}:{self.config.port} ({exc.strerror}); "
                            "choose another --port") from None
        self._worker = threading.Thread(target=self._loop, name="dlmvi-listen", daemon=True)
        self._worker.start()
        allowed = ", ".join(self.config.allow_ae) if self.config.allow_ae else "any calling AE title"
        self.log(f"dlmvi listen: AE {self.config.ae_title} on {self.config.host}:{self.config.port} ({allowed}); "
                 f"a study is complete after {self.config.quiet_seconds:g} s without images; research use only")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self._worker is not None:
            self._worker.join(timeout=60)

    def serve_forever(self) -> None:
        import signal

        self.start()
        signal.signal(signal.SIGTERM, lambda *a: self._stop.set())
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()


__all__ = ["Listener", "ListenerConfig"]
