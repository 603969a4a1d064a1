"""Atomic file and folder writes, and the guard that keeps a command off its own inputs.

* :func:`atomic_path` / :func:`write_text` / ...: a reader never sees a half-written file.
* :func:`atomic_dir`: a command's output folder is built in a hidden temporary sibling and
  moved into place only when the command succeeded, so a failing command leaves nothing.
* :func:`guard_output`: refuses an output that is, lies inside, or would replace an input.

Files and folders end up with the mode a plain ``open()`` / ``mkdir()`` gives (``0666`` /
``0777`` minus the umask), not the private ``0600`` of :func:`tempfile.mkstemp`, so a report
written to a group drive stays readable there.

Errors of the place written to (disk full, read-only, a file where a folder is needed) are
raised as :class:`~dlmvi.errors.OutputError` naming the path and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

from dlmvi.errors import OutputError

#: errno values that mean "this place cannot be written" (a user's or an admin's matter, not a bug).
WRITE_ERRNOS = frozenset(
    e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS, errno.EACCES, errno.EPERM,
                errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG)
    if e is not None
)


def output_error(exc: OSError, path: str | os.PathLike) -> OutputError:
    """The :class:`OutputError` for an OSError met while writing ``path``."""
    path = Path(path)
    e = exc.errno
    if e in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EFBIG):
        why = "no space left on the device (disk full or quota reached); free some space or write elsewhere (--out)"
    elif e in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = f"cannot write here ({exc.strerror or 'permission denied'}); choose a folder you can write to (--out)"
    elif e == errno.ENOTDIR:
        why = "a part of this path is a file, not a folder; choose another --out"
    elif e == errno.EISDIR:
        why = "this is a folder where a file is needed; give a file name"
    elif e == errno.EEXIST:
        why = "a file is in the way where a folder is needed; choose another --out"
    else:
        why = f"cannot write ({exc.strerror or exc})"
    return OutputError(f"{path}: {why}")


@contextlib.contextmanager
def _as_output_errors(path) -> Iterator[None]:
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise output_error(exc, path) from exc
        raise


def make_dirs(path: str | os.PathLike) -> Path:
    """``mkdir -p`` whose failures (a file in the way, read-only, disk full) are OutputErrors."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file, not a folder; give a folder (or remove the file)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{parent} is a file, not a folder; {path} cannot be created there")
            break
    with _as_output_errors(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def _temp_name(folder: Path, prefix: str, suffix: str) -> Path:
    return folder / f"{prefix}{secrets.token_hex(4)}{suffix}"


def _new_temp_file(folder: Path, prefix: str, suffix: str) -> Path:
    """Create an empty, unique file with mode 0666 & ~umask (mkstemp would give 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = _temp_name(folder, prefix, suffix)
        try:
            fd = os.open(name, flags, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return name
    raise OutputError(f"{folder}: cannot create a temporary file (too many name clashes)")


def _new_temp_dir(folder: Path, prefix: str, suffix: str) -> Path:
    """Create an empty, unique folder with mode 0777 & ~umask (mkdtemp would give 0700)."""
    for _ in range(100):
        name = _temp_name(folder, prefix, suffix)
        try:
            os.mkdir(name, 0o777)
        except FileExistsError:
            continue
        return name
    raise OutputError(f"{folder}: cannot create a temporary folder (too many name clashes)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    ``suffix`` keeps the extension libraries look at (``.nii.gz``, ``.npy``).

    Raises:
        OutputError: ``path`` is a folder, its folder cannot be created or written, or the
            disk is full (also when the write inside the ``with`` block fails so).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name (e.g. {path / 'out.csv'})")
    make_dirs(path.parent)
    if suffix is None:
        suffix = "".join(path.suffixes)
    with _as_output_errors(path):
        tmp_path = _new_temp_file(path.parent, f".{path.name}.", f".tmp{suffix}")
    try:
        with _as_output_errors(path):
            yield tmp_path
            os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def check_output_dir(path: str | os.PathLike, marker: str | None = None) -> Path:
    """Refuse, before any work, an output folder :func:`atomic_dir` would refuse at the end.

    Raises:
        OutputError: ``path`` is a file, or a non-empty folder without ``marker``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file; --out needs a folder here (choose a new folder name)")
    if path.is_dir() and any(path.iterdir()) and not (marker and (path / marker).exists()):
        raise OutputError(
            f"{path} already holds files that are not an earlier output of this command; "
            "choose a new or empty folder for --out"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{parent} is a file, not a folder; {path} cannot be created there")
            break
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, marker: str | None = None) -> Iterator[Path]:
    """Build an output folder in a hidden temporary sibling; move it onto ``path`` on success.

    A command that fails leaves no partial output: the temporary folder is removed and
    ``path`` is untouched. An earlier output at ``path`` is replaced as a whole (no stale files
    of the earlier run stay behind).

    Args:
        path: the output folder.
        marker: a file every earlier output of this command holds (e.g. ``survival.json``);
            an existing non-empty ``path`` without it is refused rather than replaced, so a
            mistyped ``--out`` never deletes someone's folder.

    Raises:
        OutputError: ``path`` is a file, holds other files, or cannot be written.
    """
    path = check_output_dir(path, marker)
    make_dirs(path.parent)
    with _as_output_errors(path):
        tmp = _new_temp_dir(path.parent, f".{path.name}.", ".tmpdir")
    try:
        with _as_output_errors(path):
            yield tmp
            old = None
            if path.exists():
                old = _temp_name(path.parent, f".{path.name}.", ".old")
                os.rename(path, old)
            try:
                os.rename(tmp, path)
            except OSError:
                if old is not None:  # put the earlier output back
                    os.rename(old, path)
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def guard_output(outputs, inputs: Iterable, *, replaces: bool = False, label: str = "--out") -> None:
    """Refuse outputs that would overwrite, write inside, or replace a command's inputs.

    Paths are compared resolved (symbolic links, ``..``). Refused:

    * an output that is an input (``predict ... --out COHORT/clinical.csv`` over the table);
    * an output inside an input folder (writing into the cohort, cache or model folder);
    * with ``replaces`` (the output folder is replaced as a whole, see :func:`atomic_dir`),
      an input inside the output.

    Args:
        outputs: one path or several (e.g. a CSV and the files written beside it).
        inputs: the command's input files and folders (None entries are ignored).
        replaces: the output folder is replaced as a whole.
        label: the option that named the output, for the message.

    Raises:
        OutputError: naming both paths and the fix.
    """
    if isinstance(outputs, (str, os.PathLike)):
        outputs = [outputs]
    ins = [(i, Path(i).expanduser().resolve()) for i in inputs if i is not None]
    for out in outputs:
        o = Path(out).expanduser().resolve()
        for given, i in ins:
            if o == i:
                raise OutputError(
                    f"{label} {out} is the input {given}; the command would overwrite it. "
                    f"Choose another {label}"
                )
            if i.is_dir() and _inside(o, i):
                raise OutputError(
                    f"{label} {out} lies inside the input folder {given}; dlmvi never writes into its "
                    f"inputs. Choose a {label} outside {given}"
                )
            if replaces and _inside(i, o):
                raise OutputError(
                    f"the input {given} lies inside {label} {out}, which is replaced as a whole; "
                    f"choose a {label} that does not contain the input"
                )


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically; NaN is written as null."""
    return write_text(path, json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n")


def write_csv(path: str | os.PathLike, frame, **kwargs) -> Path:
    """Write a pandas DataFrame to CSV atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(path)


def save_figure(fig, path: str | os.PathLike, **kwargs) -> Path:
    """Save a matplotlib figure atomically (format from the extension)."""
    path = Path(path)
    kwargs.setdefault("dpi", 150)
    kwargs.setdefault("bbox_inches", "tight")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), **kwargs)
    return path


def _clean(obj: Any) -> Any:
    """Make numpy scalars/arrays and NaN JSON-safe."""
    import math

    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _clean(obj.tolist())
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
