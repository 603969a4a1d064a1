"""Settings of one ``dlmvi serve`` process and the access rules that follow from where it listens."""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from dlmvi.errors import ConfigError

DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 512
#: An upload waiting for its boxes is dropped (files deleted) after this many seconds.
DEFAULT_UPLOAD_TTL_S = 3600.0
#: At most this many uploads wait for boxes at once; the oldest is dropped beyond it.
MAX_PENDING_UPLOADS = 32
#: A patient id that may appear in a file name and in rois.csv.
PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
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
    pacs: object | None = None  # a dlmvi.io.pacs.PacsConnection: the page's worklist

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

