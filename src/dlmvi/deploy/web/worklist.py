"""``dlmvi serve --pacs NAME``: the worklist of the configured PACS on the page.

Pick a study: it is retrieved and mapped to the model's sequences by the PACS's map (the code
of ``predict-patient --pacs``: :mod:`dlmvi.deploy.pacs_study`), its SEG/RTSTRUCT becomes the
mask; a study without one opens in the page's viewer to draw the box. The prediction then
builds the DICOM SR, held on the server (:class:`Reports`) until the user sends it to the PACS
from the page (or it expires)."""

from __future__ import annotations

import secrets
import threading
import time

from dlmvi.deploy.web.errors import UploadRefused, status_of
from dlmvi.errors import DlmviError

#: An SR waiting to be sent is dropped after this many seconds.
REPORT_TTL_S = 3600.0


class Reports:
    """SRs built by predictions of worklist studies, waiting for "send to the PACS"."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, object]] = {}

    def hold(self, sr) -> str:
        rid = secrets.token_urlsafe(12)
        now = time.monotonic()
        with self._lock:
            self._items = {k: v for k, v in self._items.items() if now - v[0] < REPORT_TTL_S}
            self._items[rid] = (now, sr)
        return rid

    def pop(self, rid: str):
        with self._lock:
            item = self._items.pop(rid, None)
        if item is None:
            raise UploadRefused(404, "this report is no longer on the server (sent already, or it waited too "
                                "long); open the study again from the worklist")
        return item[1]


def pacs_of(server):
    """The configured PACS, or a 404 naming the option."""
    if server.config.pacs is None:
        raise UploadRefused(404, "no PACS configured; start the server with `dlmvi serve MODEL --pacs NAME`")
    return server.config.pacs


def list_studies(server, date: str | None) -> list[dict]:
    """The worklist: studies of the PACS (pseudonym, date, description, series), newest first."""
    from dlmvi.deploy.pacs_study import study_pseudonym
    from dlmvi.io.pacs import connect

    try:
        studies = connect(pacs_of(server)).find_studies(date=date)
    except DlmviError as exc:
        raise UploadRefused(502 if "reach" in str(exc) else status_of(exc), str(exc)) from None
    rows = [{"study_uid": st.study_uid, "study": study_pseudonym(st.study_uid), "date": st.date,
             "description": st.description, "modalities": st.modalities,
             "has_roi": any(se.modality in ("SEG", "RTSTRUCT") for se in st.series),
             "series": [{"number": se.number, "modality": se.modality, "description": se.description}
                        for se in st.series]} for st in studies]
    return sorted(rows, key=lambda r: r["date"], reverse=True)


def open_study(server, up, study_uid: str):
    """Retrieve and map one study into the upload ``up`` (the page's viewer then reads it)."""
    from dlmvi.deploy.pacs_study import attach_rois, map_study
    from dlmvi.deploy.patient import patient_sequences
    from dlmvi.io.dicom_import import ImportMap
    from dlmvi.io.pacs import connect

    conn = pacs_of(server)
    try:
        if conn.map is None:
            raise UploadRefused(422, f"{conn.config}: [pacs.{conn.name}] has no map (series -> sequences)")
        imap = ImportMap.from_toml(conn.map, patients=False)
        client = connect(conn)
        client.study(study_uid=study_uid)
        client.retrieve(study_uid, up.folder / "files")
        case = map_study(up.folder / "files", up.folder / "work", imap, server.model.sequences, study_uid)
        attach_rois(case, up.folder / "files")
        up.patient_dir, up.patient_id = case.patient_dir, case.patient_id
        found = patient_sequences(server.model.sequences, up.patient_dir, up.patient_id)
    except DlmviError as exc:
        raise UploadRefused(status_of(exc), up.scrub(str(exc))) from None
    up.sequences = {seq: {"source": src, "mask": src.mask is not None} for seq, src in found.items()}
    up.study = case
    return up


def report_of(server, up, res) -> str:
    """Build the SR of a worklist prediction and hold it; returns its id."""
    from dlmvi.deploy.dicom_sr import build_sr
    from dlmvi.deploy.pacs_study import model_identity

    case = up.study
    sr = build_sr(res.to_dict(), [case.evidence[s] for s in server.model.sequences if s in case.evidence],
                  model_identity(server.model))
    return server.reports.hold(sr)


def send_report(server, rid: str) -> dict:
    """Store a held SR into its study on the PACS."""
    from dlmvi.io.pacs import connect

    conn = pacs_of(server)
    sr = server.reports.pop(rid)
    try:
        connect(conn).store([sr])
    except DlmviError as exc:
        server.reports._items[rid] = (time.monotonic(), sr)  # not sent: the user may try again
        raise UploadRefused(502, str(exc)) from None
    return {"stored": True, "pacs": conn.name, "series_description": str(sr.SeriesDescription),
            "sop_instance_uid": str(sr.SOPInstanceUID)}


__all__ = ["Reports", "list_studies", "open_study", "report_of", "send_report", "pacs_of", "REPORT_TTL_S"]
