"""Connections to a hospital's PACS: query (QIDO-RS / C-FIND), retrieve (WADO-RS / C-GET) and
store (STOW-RS / C-STORE), with the field's libraries (``dicomweb-client``, ``pynetdicom``).

Connections are named in a TOML file (``--pacs-config``; default
``$XDG_CONFIG_HOME/dlmvi/pacs.toml``, else ``~/.config/dlmvi/pacs.toml``)::

    [pacs.hospital]                                  # --pacs hospital
    dicomweb = "http://127.0.0.1:8042/dicom-web"     # DICOMweb; or DIMSE:
    host = "127.0.0.1"
    port = 4242
    called_ae = "ORTHANC"
    calling_ae = "DLMVI"
    username_file = "/secure/pacs_user"              # optional; password_file likewise
    map = "map.toml"                                 # series -> sequences, as `dlmvi import`

Credentials come from ``username_file``/``password_file`` or from the environment
(``DLMVI_PACS_<NAME>_USERNAME`` / ``_PASSWORD``, NAME upper-cased); they are read when a
connection opens and never stored in an object's repr, printed or logged. Every failure is a
:class:`~dlmvi.errors.PacsError` naming the PACS and the fix (exit code 2 on the command line).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from dlmvi.errors import PacsError

#: Modalities whose instances hold the tumour ROI rather than images.
ROI_MODALITIES = ("SEG", "RTSTRUCT")
_KEYS = {"dicomweb", "host", "port", "called_ae", "calling_ae", "username_file", "password_file", "map",
         "timeout"}


def default_config_path() -> Path:
    """The user's PACS configuration file (XDG config folder)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dlmvi" / "pacs.toml"


@dataclass(frozen=True)
class PacsConnection:
    """One ``[pacs.NAME]`` entry (no credential values: they are read by :meth:`credentials`)."""

    name: str
    config: Path
    dicomweb: str | None = None
    host: str | None = None
    port: int | None = None
    called_ae: str = "ANY-SCP"
    calling_ae: str = "DLMVI"
    username_file: Path | None = None
    password_file: Path | None = None
    map: Path | None = None
    timeout: float = 30.0

    @property
    def kind(self) -> str:
        """"dicomweb" or "dimse"."""
        return "dicomweb" if self.dicomweb else "dimse"

    def where(self) -> str:
        """The PACS as messages name it (no credentials)."""
        return (f"PACS {self.name!r} ({self.dicomweb})" if self.dicomweb
                else f"PACS {self.name!r} ({self.called_ae}@{self.host}:{self.port})")

    def env_names(self) -> tuple[str, str]:
        key = re.sub(r"[^A-Z0-9]", "_", self.name.upper())
        return f"DLMVI_PACS_{key}_USERNAME", f"DLMVI_PACS_{key}_PASSWORD"

    def credentials(self) -> tuple[str, str] | None:
        """(username, password) from the files or the environment, or None (no authentication)."""
        env_user, env_pw = self.env_names()
        user = _secret(self.username_file, env_user, self)
        pw = _secret(self.password_file, env_pw, self)
        if user is None and pw is None:
            return None
        if user is None or pw is None:
            raise PacsError(f"{self.where()}: a username without a password (or the reverse); give both "
                            f"(username_file/password_file in {self.config}, or {env_user}/{env_pw})")
        return user, pw


def _secret(path: Path | None, env: str, conn: PacsConnection) -> str | None:
    if path is not None:
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PacsError(f"{conn.where()}: the credential file {path} cannot be read "
                            f"({exc.strerror or type(exc).__name__})") from None
    value = os.environ.get(env)
    return value if value else None


def read_pacs_config(path: str | os.PathLike | None, name: str) -> PacsConnection:
    """The connection ``name`` of the TOML file ``path`` (None: :func:`default_config_path`).

    Raises:
        PacsError: the file or the entry is missing or invalid (names the file and the key).
    """
    path = Path(path) if path is not None else default_config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PacsError(f"PACS configuration {path} does not exist; write [pacs.{name}] there or give "
                        "--pacs-config FILE (see README, PACS)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PacsError(f"{path}: invalid TOML ({exc})") from None
    entries = data.get("pacs") or {}
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise PacsError(f"{path}: no [pacs.{name}] (configured: {known})")
    e = entries[name]
    bad = set(e) - _KEYS
    if bad:
        raise PacsError(f"{path}: [pacs.{name}] has unknown key(s) {', '.join(sorted(bad))}; "
                        f"allowed: {', '.join(sorted(_KEYS))}")

    def rel(key):
        v = e.get(key)
        return None if v in (None, "") else (path.parent / str(v)).resolve()

    conn = PacsConnection(
        name=name, config=path, dicomweb=(str(e["dicomweb"]).rstrip("/") if e.get("dicomweb") else None),
        host=e.get("host"), port=e.get("port"), called_ae=str(e.get("called_ae", "ANY-SCP")),
        calling_ae=str(e.get("calling_ae", "DLMVI")), username_file=rel("username_file"),
        password_file=rel("password_file"), map=rel("map"), timeout=float(e.get("timeout", 30)))
    if not conn.dicomweb and not (conn.host and isinstance(conn.port, int)):
        raise PacsError(f"{path}: [pacs.{name}] needs dicomweb = \"http://HOST:PORT/dicom-web\", or host and "
                        "port (an integer) for DIMSE")
    return conn


# ----------------------------------------------------------------------------- query results


@dataclass
class SeriesInfo:
    """One series of a study as the PACS lists it."""

    series_uid: str
    number: int | None
    modality: str
    description: str
    instances: int | None


@dataclass
class StudyInfo:
    """One study as the PACS lists it. ``patient_key`` and ``accession`` identify the patient:
    shown only when asked (``dlmvi pacs find --identified``), never logged."""

    study_uid: str
    date: str
    description: str
    modalities: str
    accession: str = field(default="", repr=False)
    patient_key: str = field(default="", repr=False)
    series: list[SeriesInfo] = field(default_factory=list)


def _value(ds, keyword, default=""):
    v = ds.get(keyword, default)
    if v is None:
        return default
    if hasattr(v, "__iter__") and not isinstance(v, (str, bytes)):
        return "\\".join(str(x) for x in v)
    return str(v)


def _study_info(ds) -> StudyInfo:
    return StudyInfo(study_uid=_value(ds, "StudyInstanceUID"), date=_value(ds, "StudyDate"),
                     description=_value(ds, "StudyDescription"), modalities=_value(ds, "ModalitiesInStudy"),
                     accession=_value(ds, "AccessionNumber"), patient_key=_value(ds, "PatientID"))


def _series_info(ds) -> SeriesInfo:
    num, n = ds.get("SeriesNumber"), ds.get("NumberOfSeriesRelatedInstances")
    return SeriesInfo(series_uid=_value(ds, "SeriesInstanceUID"), number=None if num in (None, "") else int(num),
                      modality=_value(ds, "Modality"), description=_value(ds, "SeriesDescription"),
                      instances=None if n in (None, "") else int(n))


def study_filters(patient: str | None = None, accession: str | None = None, date: str | None = None,
                  study_uid: str | None = None) -> dict:
    """Query keys of a study search (DICOM matching: ``20240101-20240131`` is a date range)."""
    out = {}
    if patient:
        out["PatientID"] = patient
    if accession:
        out["AccessionNumber"] = accession
    if date:
        if not re.fullmatch(r"\d{8}(-\d{8})?|\d{8}-|-\d{8}", date):
            raise PacsError(f"--date {date!r}: write YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
        out["StudyDate"] = date
    if study_uid:
        out["StudyInstanceUID"] = study_uid
    return out


def save_instance(ds, folder: Path) -> Path:
    """Write one retrieved instance atomically as ``folder/<Modality>/<SOPInstanceUID>.dcm``
    (ROI objects and images apart: the import indexes only the images)."""
    import pydicom

    from dlmvi.io.atomic import atomic_path

    modality = re.sub(r"[^A-Z0-9]", "", str(ds.get("Modality", "OT")).upper()) or "OT"
    sop = re.sub(r"[^0-9.]", "", str(ds.get("SOPInstanceUID", ""))) or "unknown"
    target = Path(folder) / modality / f"{sop}.dcm"
    target.parent.mkdir(parents=True, exist_ok=True)
    meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta = meta
    with atomic_path(target) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)  # preamble + meta: a DICOM file any reader takes
    return target


# ----------------------------------------------------------------------------- clients


class PacsClient:
    """What dlmvi asks of a PACS. :func:`connect` returns the DICOMweb or the DIMSE one."""

    def __init__(self, conn: PacsConnection):
        self.conn = conn

    def find_studies(self, **query) -> list[StudyInfo]:
        """Studies matching :func:`study_filters` ``query`` (series filled in)."""
        raise NotImplementedError

    def retrieve(self, study_uid: str, folder: Path) -> int:
        """Every instance of the study into ``folder`` (:func:`save_instance`); the count."""
        raise NotImplementedError

    def store(self, datasets: Sequence) -> None:
        """Store instances (an SR) into their study."""
        raise NotImplementedError

    def study(self, study_uid: str | None = None, accession: str | None = None) -> StudyInfo:
        """The one study with this UID or accession number.

        Raises:
            PacsError: none, or several for one accession number.
        """
        found = self.find_studies(study_uid=study_uid, accession=accession)
        what = f"study {study_uid}" if study_uid else "the accession number given"
        if not found:
            raise PacsError(f"{self.conn.where()}: {what} not found; list the studies with `dlmvi pacs find`")
        if len(found) > 1:
            raise PacsError(f"{self.conn.where()}: {len(found)} studies match {what}; give --study UID")
        return found[0]


class DicomWebPacs(PacsClient):
    """QIDO-RS, WADO-RS and STOW-RS through ``dicomweb_client.DICOMwebClient``."""

    def __init__(self, conn: PacsConnection):
        super().__init__(conn)
        from dicomweb_client.api import DICOMwebClient
        from dicomweb_client.session_utils import create_session, create_session_from_user_pass

        cred = conn.credentials()
        session = create_session_from_user_pass(*cred) if cred else create_session()
        self.client = DICOMwebClient(conn.dicomweb, session=session, timeout=conn.timeout)
        # the client's default retries 5 times with exponential back-off (30 s for a PACS that is
        # down); one clear message at once is what a user at the command line needs
        self.client.set_http_retry_params(retry=False)

    def _call(self, what: str, fn, *args, **kwargs):
        import requests

        try:
            return fn(*args, **kwargs)
        except requests.exceptions.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else "?"
            if code in (401, 403):
                env_user, env_pw = self.conn.env_names()
                raise PacsError(f"{self.conn.where()} refused the credentials (HTTP {code}) while {what}; check "
                                f"username_file/password_file in {self.conn.config} or {env_user}/{env_pw}") from None
            if code == 404:
                raise PacsError(f"{self.conn.where()}: not found (HTTP 404) while {what}") from None
            raise PacsError(f"{self.conn.where()} answered HTTP {code} while {what}") from None
        except requests.exceptions.RequestException as exc:
            raise PacsError(f"{self.conn.where()} cannot be reached while {what} ({type(exc).__name__}); is it "
                            f"running, and is dicomweb in {self.conn.config} right?") from None

    def find_studies(self, **query) -> list[StudyInfo]:
        from pydicom import Dataset

        filters = study_filters(**query)
        rows = self._call("searching studies", self.client.search_for_studies, search_filters=filters,
                          fields=["StudyDescription", "ModalitiesInStudy", "AccessionNumber", "PatientID"])
        studies = [_study_info(Dataset.from_json(r)) for r in rows]
        for st in studies:
            ser = self._call("searching series", self.client.search_for_series, study_instance_uid=st.study_uid,
                             fields=["SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances"])
            st.series = sorted((_series_info(Dataset.from_json(r)) for r in ser),
                               key=lambda s: (s.number is None, s.number or 0))
        return studies

    def retrieve(self, study_uid: str, folder: Path) -> int:
        n = 0
        for ds in self._call(f"retrieving study {study_uid}", self.client.iter_study, study_uid):
            save_instance(ds, folder)
            n += 1
        if n == 0:
            raise PacsError(f"{self.conn.where()}: study {study_uid} has no instances")
        return n

    def store(self, datasets: Sequence) -> None:
        datasets = list(datasets)
        status = self._call("storing the report", self.client.store_instances, datasets,
                            study_instance_uid=str(datasets[0].StudyInstanceUID))
        failed = status.get("FailedSOPSequence") if status is not None else None
        if failed:
            raise PacsError(f"{self.conn.where()} refused {len(failed)} instance(s) of the report "
                            f"(STOW-RS FailureReason {failed[0].get('FailureReason', '?')})")


class DimsePacs(PacsClient):
    """C-FIND, C-GET and C-STORE through ``pynetdicom`` (a PACS without DICOMweb)."""

    def _associate(self, contexts, what: str, roles=(), handlers=()):
        from pynetdicom import AE

        ae = AE(ae_title=self.conn.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.conn.timeout
        for cx in contexts:
            ae.add_requested_context(cx) if isinstance(cx, str) else ae.add_requested_context(*cx)
        assoc = ae.associate(self.conn.host, int(self.conn.port), ae_title=self.conn.called_ae,
                             ext_neg=list(roles) or None, evt_handlers=list(handlers) or None)
        if assoc.is_rejected:
            raise PacsError(f"{self.conn.where()} rejected the association while {what} (calling AE title "
                            f"{self.conn.calling_ae!r} not allowed there?)")
        if not assoc.is_established:
            raise PacsError(f"{self.conn.where()} cannot be reached while {what}; is it running, and are host, "
                            f"port and called_ae in {self.conn.config} right?")
        return assoc

    def _find(self, assoc, level: str, keys: dict, returned: Iterable[str]):
        from pydicom import Dataset
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

        q = Dataset()
        q.QueryRetrieveLevel = level
        for k in returned:
            setattr(q, k, "")
        for k, v in keys.items():
            setattr(q, k, v)
        out = []
        for status, ident in assoc.send_c_find(q, FIND):
            if status is None or not status or status.Status not in (0x0000, 0xFF00, 0xFF01):
                code = "no answer" if status is None or not status else f"status 0x{status.Status:04X}"
                raise PacsError(f"{self.conn.where()}: C-FIND failed ({code})")
            if status.Status in (0xFF00, 0xFF01) and ident is not None:
                out.append(ident)
        return out

    def find_studies(self, **query) -> list[StudyInfo]:
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

        filters = study_filters(**query)
        assoc = self._associate([FIND], "searching studies")
        try:
            rows = self._find(assoc, "STUDY", filters, ["StudyInstanceUID", "StudyDate", "StudyDescription",
                                                         "ModalitiesInStudy", "AccessionNumber", "PatientID"])
            studies = [_study_info(r) for r in rows]
            for st in studies:
                ser = self._find(assoc, "SERIES", {"StudyInstanceUID": st.study_uid},
                                 ["SeriesInstanceUID", "SeriesNumber", "Modality", "SeriesDescription",
                                  "NumberOfSeriesRelatedInstances"])
                st.series = sorted((_series_info(r) for r in ser), key=lambda s: (s.number is None, s.number or 0))
        finally:
            assoc.release()
        return studies

    def retrieve(self, study_uid: str, folder: Path) -> int:
        from pydicom import Dataset
        from pynetdicom import StoragePresentationContexts, build_role, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

        saved = []

        def on_store(event):
            ds = event.dataset
            ds.file_meta = event.file_meta
            saved.append(save_instance(ds, folder))
            return 0x0000

        contexts = [GET] + [cx.abstract_syntax for cx in StoragePresentationContexts[:127]]
        roles = [build_role(cx.abstract_syntax, scp_role=True) for cx in StoragePresentationContexts[:127]]
        assoc = self._associate(contexts, f"retrieving study {study_uid}", roles, [(evt.EVT_C_STORE, on_store)])
        try:
            q = Dataset()
            q.QueryRetrieveLevel = "STUDY"
            q.StudyInstanceUID = study_uid
            last = None
            for status, _ in assoc.send_c_get(q, GET):
                if status:
                    last = status.Status
        finally:
            assoc.release()
        if last not in (0x0000, 0xFF00, None) and not saved:
            raise PacsError(f"{self.conn.where()}: C-GET of study {study_uid} failed (status 0x{last:04X})")
        if not saved:
            raise PacsError(f"{self.conn.where()}: study {study_uid} not found or empty (C-GET returned nothing)")
        return len(saved)

    def store(self, datasets: Sequence) -> None:
        datasets = list(datasets)
        contexts = sorted({str(ds.SOPClassUID) for ds in datasets})
        assoc = self._associate(contexts, "storing the report")
        try:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                if not status or status.Status != 0x0000:
                    code = "no answer" if not status else f"status 0x{status.Status:04X}"
                    raise PacsError(f"{self.conn.where()} did not store the report ({code})")
        finally:
            assoc.release()


def connect(conn: PacsConnection) -> PacsClient:
    """The client of ``conn``: DICOMweb when ``dicomweb`` is set, else DIMSE."""
    return DicomWebPacs(conn) if conn.dicomweb else DimsePacs(conn)


__all__ = ["PacsConnection", "PacsClient", "DicomWebPacs", "DimsePacs", "StudyInfo", "SeriesInfo", "connect",
           "read_pacs_config", "default_config_path", "study_filters", "save_instance", "ROI_MODALITIES"]
