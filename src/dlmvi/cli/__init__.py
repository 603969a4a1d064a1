"""Command-line interface: thin commands over the library.

``main`` prints a :class:`dlmvi.errors.DlmviError` as one clear message (exit 2) and keeps the
traceback only for real bugs.
"""

from __future__ import annotations

import sys

from dlmvi.cli.app import app
from dlmvi.errors import DlmviError

# Importing a command module registers its commands on ``app``.
from dlmvi.cli import cohort as _cohort  # noqa: F401,E402
from dlmvi.cli import phantom as _phantom  # noqa: F401,E402
from dlmvi.cli import network as _network  # noqa: F401,E402
from dlmvi.cli import evaluation as _evaluation  # noqa: F401,E402
from dlmvi.cli import clinical as _clinical  # noqa: F401,E402
from dlmvi.cli import survival as _survival  # noqa: F401,E402
from dlmvi.cli import study as _study  # noqa: F401,E402
from dlmvi.cli import patient as _patient  # noqa: F401,E402
from dlmvi.cli import importer as _importer  # noqa: F401,E402
from dlmvi.cli import serve as _serve  # noqa: F401,E402
from dlmvi.cli import transport as _transport  # noqa: F401,E402
from dlmvi.cli import pacs as _pacs  # noqa: F401,E402
from dlmvi.cli import radiomics as _radiomics  # noqa: F401,E402
from dlmvi.cli import annotate as _annotate  # noqa: F401,E402
from dlmvi.cli import federated as _federated  # noqa: F401,E402

__all__ = ["app", "main"]


def _user_error(exc: BaseException) -> DlmviError | None:
    """The user-facing error of ``exc``: a DlmviError as is; an OSError of the place written
    to (disk full, read-only, permission) as an OutputError; None for a bug."""
    from dlmvi.io.atomic import WRITE_ERRNOS, output_error

    if isinstance(exc, DlmviError):
        return exc
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        return output_error(exc, exc.filename or "output")
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dlmvi`` command."""
    try:
        app(args=argv, standalone_mode=True)
    except (DlmviError, OSError) as exc:
        err = _user_error(exc)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def run_cli(argv: list[str]) -> int:
    """Run the CLI in-process and return its exit code (for tests)."""
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except (DlmviError, OSError) as exc:
        err = _user_error(exc)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
