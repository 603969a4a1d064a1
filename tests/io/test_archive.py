"""Tests of src/dlmvi/io/archive.py: untrusted patient archives are refused before anything is written."""

import io
import os
import stat
import tarfile
import zipfile

import pytest

from dlmvi.errors import CohortError, DlmviError
from dlmvi.io.archive import ArchiveError, ArchiveTooLargeError, UnsafeArchiveError, safe_extract


def _zip(path, members):
    """members: list of (name, bytes) or (name, bytes, unix mode)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for m in members:
            info = zipfile.ZipInfo(m[0])
            info.compress_type = zipfile.ZIP_DEFLATED
            if len(m) > 2:
                info.external_attr = m[2] << 16
            zf.writestr(info, m[1])
    return path


def _tar(path, members, mode="w:gz"):
    """members: TarInfo objects (regular files given as (name, bytes))."""
    with tarfile.open(path, mode) as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return path


GOOD = [("P001/T1/IM0001.dcm", b"a" * 100), ("P001/T1/IM0002.dcm", b"b" * 50), ("P001/clinical.txt", b"x")]


@pytest.mark.parametrize("fmt", ["zip", "tar", "tar.gz"])
def test_good_archive_is_extracted_with_contents(tmp_path, fmt):
    arc = tmp_path / f"p.{fmt}"
    if fmt == "zip":
        _zip(arc, GOOD)
    else:
        _tar(arc, GOOD, "w" if fmt == "tar" else "w:gz")
    files = safe_extract(arc, tmp_path / "out")
    assert [f.relative_to(tmp_path / "out").as_posix() for f in files] == [m[0] for m in GOOD]
    assert (tmp_path / "out" / "P001" / "T1" / "IM0002.dcm").read_bytes() == b"b" * 50
    # nothing left beside the destination (the temporary extraction folder was renamed)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([arc.name, "out"])


@pytest.mark.parametrize("name, what", [
    ("/tmp/evil.txt", "absolute path"),
    ("C:\\Windows\\evil.dll", "absolute path"),
    ("P001/../../evil.txt", "'..' component"),
    ("..\\evil.txt", "'..' component"),
])
@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_path_escapes_are_refused_naming_the_member(tmp_path, name, what, fmt):
    arc = tmp_path / f"bad.{fmt}"
    members = GOOD[:1] + [(name, b"pwned")]
    _zip(arc, members) if fmt == "zip" else _tar(arc, members)
    with pytest.raises(UnsafeArchiveError, match=rf"bad\.{fmt}: member '.*evil.*' has an? {what}") as ei:
        safe_extract(arc, tmp_path / "out")
    assert isinstance(ei.value, CohortError) and isinstance(ei.value, DlmviError)
    # nothing was written: neither the good member nor anything outside
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == [arc.name]


@pytest.mark.parametrize("kind, match", [
    (tarfile.SYMTYPE, "is a symbolic link \\(to '/etc/passwd'\\)"),
    (tarfile.LNKTYPE, "is a hard link \\(to '/etc/passwd'\\)"),
    (tarfile.CHRTYPE, "is a device, FIFO or other special file"),
    (tarfile.FIFOTYPE, "is a device, FIFO or other special file"),
])
def test_tar_links_and_devices_are_refused(tmp_path, kind, match):
    link = tarfile.TarInfo("P001/T1/link.dcm")
    link.type = kind
    link.linkname = "/etc/passwd"
    arc = _tar(tmp_path / "bad.tar.gz", GOOD[:1] + [link])
    with pytest.raises(UnsafeArchiveError, match=f"bad.tar.gz: member 'P001/T1/link.dcm' {match}"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_symlink_is_refused(tmp_path):
    arc = _zip(tmp_path / "bad.zip", GOOD[:1] + [("P001/link", b"/etc/passwd", stat.S_IFLNK | 0o777)])
    with pytest.raises(UnsafeArchiveError, match="member 'P001/link' is a symbolic link"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_bomb_refused_from_declared_sizes(tmp_path):
    # 16 MiB of zeros compress to ~16 KiB: refused from the declared size, before inflating.
    arc = _zip(tmp_path / "bomb.zip", [("a.bin", b"\0" * (16 * 1024**2))])
    assert arc.stat().st_size < 50_000
    with pytest.raises(ArchiveTooLargeError, match="bomb.zip: members declare more than 1000000 bytes .*member 'a.bin'"):
        safe_extract(arc, tmp_path / "out", max_total_bytes=1_000_000)
    assert not (tmp_path / "out").exists()


def test_member_lying_about_its_size_is_caught_while_writing(tmp_path):
    # A tar header says 10 bytes; a zip whose central directory under-declares the size is
    # rejected by zipfile itself. Both end as ArchiveError with nothing left behind.
    arc = _zip(tmp_path / "lie.zip", [("a.bin", b"z" * 5000)])
    raw = bytearray(arc.read_bytes())
    cd = raw.rfind(b"PK\x01\x02")  # central directory entry: uncompressed size at +24
    raw[cd + 24: cd + 28] = (10).to_bytes(4, "little")
    arc.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="lie.zip: member 'a.bin'"):
        safe_extract(arc, tmp_path / "out", max_total_bytes=100)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["lie.zip"]


def test_too_many_members(tmp_path):
    arc = _tar(tmp_path / "many.tar", [(f"f{i}", b"") for i in range(20)], "w")
    with pytest.raises(ArchiveTooLargeError, match="more than 10 members"):
        safe_extract(arc, tmp_path / "out", max_members=10)


def test_duplicate_member_and_bad_inputs(tmp_path):
    arc = _tar(tmp_path / "dup.tar", [("a/x", b"1"), ("a/x", b"2")], "w")
    with pytest.raises(UnsafeArchiveError, match="member 'a/x' appears twice"):
        safe_extract(arc, tmp_path / "out")
    not_arc = tmp_path / "notes.zip"
    not_arc.write_text("hello")
    with pytest.raises(ArchiveError, match="notes.zip: not a zip or tar archive"):
        safe_extract(not_arc, tmp_path / "out")
    good = _zip(tmp_path / "good.zip", GOOD)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ArchiveError, match="exists and is not an empty folder"):
        safe_extract(good, tmp_path / "full")
    assert os.listdir(tmp_path / "full") == ["keep.txt"]
    # an existing empty folder is fine
    (tmp_path / "empty").mkdir()
    assert len(safe_extract(good, tmp_path / "empty")) == 3
