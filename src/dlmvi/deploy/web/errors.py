"""What the server answers to a request it refuses: an HTTP status and one message for the user."""

from __future__ import annotations

from dlmvi.errors import DlmviError


class UploadRefused(Exception):
    """A request the server refuses: an HTTP status and a message for the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def status_of(exc: DlmviError) -> int:
    from dlmvi.io.archive import ArchiveError, ArchiveTooLargeError

    if isinstance(exc, ArchiveTooLargeError):
        return 413
    if isinstance(exc, ArchiveError):
        return 400
    return 422
