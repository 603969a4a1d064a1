"""Tests of src/dlmvi/io/atomic.py: modes follow the umask, full disks and bad places are
OutputErrors, folders appear whole or not at all, outputs never touch inputs."""

import errno
import os
import stat

import pytest

from dlmvi.errors import OutputError
from dlmvi.io import atomic
from dlmvi.io.atomic import atomic_dir, atomic_path, guard_output, write_json, write_text


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after)."""
    old = os.umask(0o022)
    os.umask(old)

    def set_(value):
        os.umask(value)

    yield set_
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750),
                                                       (0o002, 0o664, 0o775)])
def test_files_and_folders_follow_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    """As a plain open() / mkdir() would: 0666 & ~umask and 0777 & ~umask (mkstemp gave 0600)."""
    umask(mask)
    assert _mode(write_text(tmp_path / "a.txt", "x")) == file_mode
    assert _mode(write_json(tmp_path / "a.json", {"a": 1})) == file_mode
    with atomic_dir(tmp_path / "out") as tmp:
        write_text(tmp / "report.html", "<html></html>")
    assert _mode(tmp_path / "out") == dir_mode
    assert _mode(tmp_path / "out" / "report.html") == file_mode


def test_disk_full_is_an_output_error_and_leaves_nothing(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full)
    with pytest.raises(OutputError, match=r"a.csv: no space left on the device .* \(--out\)"):
        write_text(tmp_path / "a.csv", "x")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_write_failure_inside_the_block_is_converted(tmp_path):
    with pytest.raises(OutputError, match="cannot write here"):
        with atomic_path(tmp_path / "a.csv"):
            raise PermissionError(errno.EACCES, "Permission denied")
    assert list(tmp_path.iterdir()) == []


def test_a_file_where_a_folder_is_needed_and_the_reverse(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="f is a file, not a folder"):
        write_text(tmp_path / "f" / "a.csv", "x")
    with pytest.raises(OutputError, match="f is a file; --out needs a folder"):
        with atomic_dir(tmp_path / "f"):
            pass
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="d is a folder; give a file name"):
        write_text(tmp_path / "d", "x")


def test_atomic_dir_leaves_nothing_on_failure_and_replaces_an_earlier_output(tmp_path):
    out = tmp_path / "clinical"
    with pytest.raises(RuntimeError):
        with atomic_dir(out, marker="nomogram.json") as tmp:
            write_text(tmp / "univariate.csv", "half")
            raise RuntimeError("the analysis failed")
    assert list(tmp_path.iterdir()) == []  # no out, no hidden temporary
    with atomic_dir(out, marker="nomogram.json") as tmp:
        write_text(tmp / "nomogram.json", "{}")
        write_text(tmp / "stale.csv", "old")
    with atomic_dir(out, marker="nomogram.json") as tmp:
        write_text(tmp / "nomogram.json", '{"new": 1}')
    assert sorted(p.name for p in out.iterdir()) == ["nomogram.json"]  # no stale file survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clinical"]


def test_atomic_dir_refuses_a_folder_of_other_files(tmp_path):
    (tmp_path / "Desktop").mkdir()
    (tmp_path / "Desktop" / "thesis.docx").write_text("precious")
    with pytest.raises(OutputError, match="holds files that are not an earlier output"):
        with atomic_dir(tmp_path / "Desktop", marker="survival.json"):
            pass
    assert (tmp_path / "Desktop" / "thesis.docx").read_text() == "precious"


def test_guard_output(tmp_path):
    cohort = tmp_path / "cohort"
    (cohort / "images").mkdir(parents=True)
    table = cohort / "clinical.csv"
    table.write_text("patient_id,cohort\n")
    with pytest.raises(OutputError, match=r"--out .*clinical.csv is the input .*clinical.csv; the command would overwrite it"):
        guard_output(table, [tmp_path / "run", cohort / ".." / "cohort" / "clinical.csv"])
    with pytest.raises(OutputError, match="lies inside the input folder .*cohort; dlmvi never writes into its inputs"):
        guard_output(cohort / "preds.csv", [cohort])
    with pytest.raises(OutputError, match="the input .*clinical.csv lies inside --out .*, which is replaced as a whole"):
        guard_output(cohort, [table], replaces=True)
    os.symlink(cohort, tmp_path / "link")
    with pytest.raises(OutputError, match="lies inside the input folder"):
        guard_output(tmp_path / "link" / "out.csv", [cohort])  # resolved through the link
    guard_output(tmp_path / "run", [cohort, table, None])  # beside the inputs: fine
    guard_output(tmp_path / "run", [tmp_path / "run" / "cohort"])  # an input inside a non-replaced output


def test_skipped_summary_and_list(tmp_path):
    import pandas as pd

    from dlmvi.io.skipped import Skipped, skipped_path

    s = Skipped("the evaluation")
    s.extend(["P1", "P2", "P3", "P4", "P5", "P6"], "no mvi_grade")
    s.add("P7", "no prediction")
    assert s.summary(tmp_path / "skipped.csv", show=5) == (
        "7 patients left out of the evaluation: 6: no mvi_grade (P1, P2, P3, P4, P5, ...); "
        f"1: no prediction (P7); full list in {tmp_path / 'skipped.csv'}")
    assert skipped_path(tmp_path / "preds.csv") == tmp_path / "preds.skipped.csv"
    assert skipped_path(tmp_path / "ev") == tmp_path / "ev" / "skipped.csv"
    (tmp_path / "run_v1.2").mkdir()  # a folder with a dot in its name is still a folder
    assert skipped_path(tmp_path / "run_v1.2") == tmp_path / "run_v1.2" / "skipped.csv"
    frame = pd.read_csv(s.write(tmp_path / "skipped.csv"), dtype=str)
    assert len(frame) == 7 and frame["patient_id"].iloc[-1] == "P7"
    assert Skipped("x").write(tmp_path / "none.csv").read_text() == "patient_id,reason\n"
