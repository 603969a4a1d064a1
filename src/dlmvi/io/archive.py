"""Unpacking patient archives (.zip, .tar, .tar.gz) that come from outside, safely.

Archives sent by other hospitals or downloaded from PACS exports are untrusted input. A
crafted archive can write outside the target folder (absolute paths, ``..`` components,
symbolic or hard links pointing elsewhere), create device files, or expand to far more data
than the disk holds (a "zip bomb"). :func:`safe_extract` checks *every* member before it
writes anything and refuses the whole archive on the first problem; files are then written
by dlmvi itself (never with the archive's permissions or owners) into a temporary folder
that is renamed onto ``dest`` only when everything was extracted, so an interrupted or
refused extraction leaves no partial output.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dlmvi.errors import CohortError

#: Default limit on the sum of the members' declared (uncompressed) sizes, bytes (8 GiB):
#: far above one patient's MRI (a few hundred MB), far below a zip bomb.
MAX_TOTAL_BYTES = 8 * 1024**3

#: Default limit on the number of members (a patient's DICOM export has a few thousand).
MAX_MEMBERS = 200_000

_CHUNK = 1024 * 1024


class ArchiveError(CohortError):
    """An archive cannot be read (not a zip/tar file, damaged, encrypted)."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would write outside the target folder or is not a plain file/folder."""


class ArchiveTooLargeError(ArchiveError):
    """An archive expands to more data (or more members) than allowed (zip bomb)."""


@dataclass(frozen=True)
class _Member:
    name: str  # relative POSIX path inside the archive
    is_dir: bool
    size: int  # declared uncompressed size, bytes
    handle: object  # ZipInfo or TarInfo


def safe_extract(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_members: int = MAX_MEMBERS,
) -> list[Path]:
    """Extract a .zip, .tar, .tar.gz (.tgz, .tar.bz2, .tar.xz) archive into ``dest``.

    Every member is checked before anything is written; the archive is refused when a
    member has an absolute path (``/x``, ``C:\\x``), a ``..`` component, is a symbolic or
    hard link, a device, a FIFO, or when the members' declared sizes add up to more than
    ``max_total_bytes`` (the actual bytes written are counted too, so a member that lies
    about its size cannot exceed the limit).

    Args:
        archive: the archive file.
        dest: folder to create; it must not exist or be empty.
        max_total_bytes: limit on the total uncompressed size, bytes.
        max_members: limit on the number of members.

    Returns:
        The extracted regular files (paths under ``dest``), in archive order.

    Raises:
        ArchiveError: unreadable archive, or ``dest`` not empty.
        UnsafeArchiveError: a member with an unsafe path or type (names the member).
        ArchiveTooLargeError: too much data or too many members.
    """
    archive = Path(archive)
    dest = Path(dest)
    if not archive.is_file():
        raise ArchiveError(f"{archive}: no such archive file")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ArchiveError(f"{archive}: cannot extract into {dest}: it exists and is not an empty folder; "
                           "choose a new folder")
    try:
        if zipfile.is_zipfile(archive):
            opened = zipfile.ZipFile(archive)
            kind = "zip"
        elif tarfile.is_tarfile(archive):
            opened = tarfile.open(archive, "r:*")
            kind = "tar"
        else:
            raise ArchiveError(f"{archive}: not a zip or tar archive; send the images as .zip, .tar or .tar.gz")
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"{archive}: the archive is damaged ({type(exc).__name__}: {exc})") from None

    with opened:
        try:
            members = _zip_members(archive, opened) if kind == "zip" else _tar_members(archive, opened, max_members)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            raise ArchiveError(f"{archive}: the archive is damaged ({type(exc).__name__}: {exc})") from None
        _check_members(archive, members, max_total_bytes, max_members)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
        try:
            files = _write_members(archive, opened, kind, members, tmp, max_total_bytes)
            if dest.exists():
                dest.rmdir()  # empty (checked above)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return [dest / f for f in files]


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[_Member]:
    out = []
    for info in zf.infolist():
        mode = (info.external_attr >> 16) & 0xFFFF
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{archive}: member {info.filename!r} is encrypted; send an unencrypted archive")
        # Only archives made on Unix record a file type; permission-only modes are plain files.
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file or folder"
            raise UnsafeArchiveError(
                f"{archive}: member {info.filename!r} is {kind}; links and special files are refused "
                "(nothing was extracted); re-create the archive from plain files"
            )
        out.append(_Member(info.filename, info.is_dir(), int(info.file_size), info))
    return out


def _tar_members(archive: Path, tf: tarfile.TarFile, max_members: int) -> list[_Member]:
    out = []
    for info in tf:  # iterating (not getmembers) bounds the work on a header bomb
        if len(out) >= max_members:
            raise ArchiveTooLargeError(
                f"{archive}: more than {max_members} members; refused (nothing was extracted)"
            )
        if info.issym() or info.islnk():
            kind = "a symbolic link" if info.issym() else "a hard link"
            raise UnsafeArchiveError(
                f"{archive}: member {info.name!r} is {kind} (to {info.linkname!r}); links are refused "
                "(nothing was extracted); re-create the archive from plain files"
            )
        if not (info.isfile() or info.isdir()):
            raise UnsafeArchiveError(
                f"{archive}: member {info.name!r} is a device, FIFO or other special file; refused "
                "(nothing was extracted)"
            )
        out.append(_Member(info.name, info.isdir(), int(info.size) if info.isfile() else 0, info))
    return out


def _safe_parts(archive: Path, name: str) -> tuple[str, ...]:
    """The path components of a member name, or UnsafeArchiveError."""
    if "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has a NUL character in its name; refused")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} has an absolute path; refused (nothing was extracted). "
            "Archives must hold relative paths"
        )
    parts = tuple(p for p in PurePosixPath(unified).parts if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} has a '..' component (it would write outside the target "
            "folder); refused (nothing was extracted)"
        )
    return parts


def _check_members(archive: Path, members: list[_Member], max_total: int, max_members: int) -> None:
    if len(members) > max_members:
        raise ArchiveTooLargeError(f"{archive}: {len(members)} members, more than the limit {max_members}; refused")
    total, seen, files = 0, set(), set()
    for m in members:
        parts = _safe_parts(archive, m.name)
        if not parts:
            if m.is_dir:
                continue  # "./" entries
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} has an empty name; refused")
        key = "/".join(parts)
        if not m.is_dir:
            if key in seen:
                raise UnsafeArchiveError(
                    f"{archive}: member {m.name!r} appears twice (a later copy would overwrite the first); refused"
                )
            files.add(key)
        seen.add(key)
        total += max(m.size, 0)
        if total > max_total:
            raise ArchiveTooLargeError(
                f"{archive}: members declare more than {max_total} bytes in total (reached at member "
                f"{m.name!r}); refused as a possible zip bomb (nothing was extracted)"
            )
    for key in files:  # a file that is also a parent folder of another member
        parent = key.rsplit("/", 1)[0] if "/" in key else None
        while parent:
            if parent in files:
                raise UnsafeArchiveError(f"{archive}: member {parent!r} is both a file and a folder; refused")
            parent = parent.rsplit("/", 1)[0] if "/" in parent else None


def _write_members(archive, opened, kind, members, root: Path, max_total: int) -> list[str]:
    written, files = 0, []
    root_resolved = root.resolve()
    for m in members:
        parts = _safe_parts(archive, m.name)
        if not parts:
            continue
        target = root.joinpath(*parts)
        # Belt and braces: the resolved path must stay inside the extraction folder.
        if root_resolved not in target.resolve().parents:
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} resolves outside the target folder; refused")
        if m.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "zip":
            src = opened.open(m.handle)
        else:
            src = opened.extractfile(m.handle)
            if src is None:  # pragma: no cover - regular files always have data
                raise UnsafeArchiveError(f"{archive}: member {m.name!r} has no data; refused")
        n = 0
        try:
            with src, open(target, "xb") as dst:
                while True:
                    chunk = src.read(_CHUNK)
                    if not chunk:
                        break
                    n += len(chunk)
                    written += len(chunk)
                    if n > m.size or written > max_total:
                        raise ArchiveTooLargeError(
                            f"{archive}: member {m.name!r} expands beyond its declared size "
                            f"({m.size} bytes) or the limit of {max_total} bytes; refused as a possible "
                            "zip bomb (nothing was extracted)"
                        )
                    dst.write(chunk)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, RuntimeError) as exc:
            raise ArchiveError(
                f"{archive}: member {m.name!r} cannot be extracted ({type(exc).__name__}: {exc}); "
                "the archive is damaged (nothing was extracted)"
            ) from None
        files.append("/".join(parts))
    return files
