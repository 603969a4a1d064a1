"""Tests of src/dlmvi/deploy/annotate.py: the worklist's states, the reader's file written
atomically and merged, and bad input refused with one message and nothing written.

Two :class:`Annotator` objects on one cohort stand for two browsers (or two servers) on one
reader's file: they share nothing but the files.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from dlmvi.deploy.annotate import AnnotationConflict, AnnotationError, Annotator, adopt_reader_file

ROWS = [[10, 20, 20, 34, 32], [11, 20, 20, 34, 32], [12, 20, 20, 34, 32]]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from dlmvi.datasets.phantom import make_phantom

    root = make_phantom(tmp_path_factory.mktemp("ann") / "c", n_patients=3, size=48, progress=False,
                        cohorts=(("2015", 3),))
    for p in (root / "images").iterdir():
        for f in p.iterdir():
            if f.name.split(".")[0].split("_")[0] in ("T1A", "T2", "DWI"):
                f.unlink()  # three sequences keep the test small
    for seq in ("T1", "T1V", "T1D"):  # P0001 and P0003 without masks; P0002 keeps its masks
        (root / "images" / "P0001" / f"{seq}_roi.nii.gz").unlink()
        (root / "images" / "P0003" / f"{seq}_roi.nii.gz").unlink()
    return root


@pytest.fixture
def cohort(phantom, tmp_path):
    return shutil.copytree(phantom, tmp_path / "c")


def test_the_worklist_states_each_sequence(cohort):
    (cohort / "rois.csv").write_text("patient_id,sequence,slice,x0,y0,x1,y1\n"
                                     + "".join(f"P0003,T1V,{s},1,1,5,5\n" for s in (3, 4, 5)))
    wl = Annotator(cohort, "A").worklist()
    assert (wl["reader"], wl["file"], wl["sequences"], wl["done"], wl["total"]) == ("A", "rois.A.csv",
                                                                                     ["T1", "T1V", "T1D"], 1, 3)
    states = {r["patient_id"]: r["states"] for r in wl["patients"]}
    assert states["P0001"] == {"T1": "none", "T1V": "none", "T1D": "none"}
    assert states["P0002"] == {"T1": "mask", "T1V": "mask", "T1D": "mask"}
    assert states["P0003"] == {"T1": "none", "T1V": "proposed", "T1D": "none"}  # rows of the cohort's rois.csv


def test_confirming_writes_the_reader_file_and_proposals_survive_a_restart(cohort):
    a = Annotator(cohort, "A")
    view = a.view("P0001")
    out = a.carry("P0001", "T1", ROWS, view["fingerprint"])
    assert out["refused"] == {} and set(out["carried"]) == {"T1V", "T1D"}
    assert out["carried"]["T1V"] == ROWS  # the phantom's sequences share one grid
    a.confirm("P0001", "T1", ROWS, view["fingerprint"])
    text = (cohort / "rois.A.csv").read_text()
    assert text == "patient_id,sequence,slice,x0,y0,x1,y1\n" + "".join(
        f"P0001,T1,{r[0]},{r[1]},{r[2]},{r[3]},{r[4]}\n" for r in ROWS)
    # a new server (the browser closed, the server restarted) finds the confirmed and the proposed boxes
    b = Annotator(cohort, "A")
    seqs = b.view("P0001")["sequences"]
    assert (seqs["T1"]["state"], seqs["T1"]["confirmed"]) == ("confirmed", tuple(tuple(r) for r in ROWS))
    assert (seqs["T1V"]["state"], seqs["T1V"]["proposed"]) == ("proposed", ROWS)
    assert oct(os.stat(cohort / "rois.A.csv").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_two_windows_merge_and_a_conflict_is_refused(cohort):
    w1, w2 = Annotator(cohort, "A"), Annotator(cohort, "A")
    f1, f2 = w1.view("P0001")["fingerprint"], w2.view("P0003")["fingerprint"]
    w1.confirm("P0001", "T1", ROWS, f1)
    w2.confirm("P0003", "T1", ROWS, f2)  # the other window's work is kept: merged by sequence
    rows = (cohort / "rois.A.csv").read_text().splitlines()
    assert [r.split(",")[:2] for r in rows[1:]] == [["P0001", "T1"]] * 3 + [["P0003", "T1"]] * 3
    w2.view("P0001")
    moved = [[s, x0 + 2, y0, x1 + 2, y1] for s, x0, y0, x1, y1 in ROWS]
    before = (cohort / "rois.A.csv").read_bytes()
    with pytest.raises(AnnotationConflict, match="patient P0001, T1: another window confirmed different boxes"):
        w2.confirm("P0001", "T1", moved, f1, base=None)  # w2 opened P0001 before w1 confirmed it
    assert (cohort / "rois.A.csv").read_bytes() == before
    w2.confirm("P0001", "T1", moved, f1, base=ROWS)  # after reopening: its base is w1's boxes
    assert "P0001,T1,10,22,20,36,32" in (cohort / "rois.A.csv").read_text()


@pytest.mark.parametrize("rows,message", [
    ([[10, 20, 20, 34, 32], [11, 20, 20, 34, 32]], r"patient P0001, T1V: box the tumour on 3 consecutive slices "
                                                   r"\(boxed slices: 10, 11\); nothing was saved"),
    ([[10, 20, 20, 34, 32], [11, 20, 20, 34, 32], [13, 20, 20, 34, 32]], r"boxed slices: 10, 11, 13"),
    ([[10, 20, 20, 34, 32], [11, 20, 20, 34, 32], [12, 20, 20, 34, 48]], r"patient P0001, T1V: the box on slice 12, "
                                                                         r"\(20,20\)-\(34,48\), lies off the image of 48x48x24"),
    ([[10, 20, 20, 34, 32], [11, 20, 20, 34, 32], [24, 20, 20, 34, 32]], r"off the image|consecutive"),
])
def test_bad_boxes_are_refused_and_nothing_is_written(cohort, rows, message):
    a = Annotator(cohort, "A")
    fp = a.view("P0001")["fingerprint"]
    for call in (a.confirm, a.carry):
        with pytest.raises(AnnotationError, match=message):
            call("P0001", "T1V", rows, fp)
    assert not (cohort / "rois.A.csv").exists() and not (cohort / ".rois.A.proposed.csv").exists()


def test_a_patient_folder_changed_since_the_worklist_was_built_is_refused(cohort):
    a = Annotator(cohort, "A")
    fp = a.view("P0001")["fingerprint"]
    t1 = cohort / "images" / "P0001" / "T1.nii.gz"
    os.utime(t1, ns=(t1.stat().st_atime_ns, t1.stat().st_mtime_ns + 10**9))  # a file rewritten
    with pytest.raises(AnnotationConflict, match=r"patient P0001: the patient's folder .*P0001 changed since the "
                                                 r"worklist was built .*nothing was saved"):
        a.confirm("P0001", "T1", ROWS, fp)
    assert not (cohort / "rois.A.csv").exists()
    a.build()  # reloading the worklist (key R) takes the change in
    a.confirm("P0001", "T1", ROWS, a.view("P0001")["fingerprint"])
    assert (cohort / "rois.A.csv").is_file()


def test_sequences_of_different_frames_of_reference_are_not_carried(cohort):
    from dlmvi.io.dicom_write import write_dicom_series

    folder = cohort / "images" / "P0001"
    for seq, uid in (("T1V", "1.2.826.0.1.3680043.10.1.1"), ("T1D", "1.2.826.0.1.3680043.10.1.2")):
        img = sitk.ReadImage(str(folder / f"{seq}.nii.gz"))
        img = sitk.DICOMOrient(img, "LPS")
        write_dicom_series(sitk.GetArrayFromImage(img).astype(np.float32), img.GetSpacing(), img.GetOrigin(),
                           folder / seq, seq, frame_of_reference_uid=uid,
                           direction=np.reshape(img.GetDirection(), (3, 3)))
        (folder / f"{seq}.nii.gz").unlink()
    a = Annotator(cohort, "A")
    view = a.view("P0001")
    assert view["carry"]["T1V"] == {"T1D": "the two series have different frames of reference "
                                           "(DICOM FrameOfReferenceUID)"}
    assert view["carry"]["T1"] == {}  # NIfTI: no frame named, the volumes overlap
    rows = [[10, 20, 20, 34, 32], [11, 20, 20, 34, 32], [12, 20, 20, 34, 32]]
    out = a.carry("P0001", "T1V", rows, view["fingerprint"])
    assert set(out["carried"]) == {"T1"}
    assert out["refused"] == {"T1D": "patient P0001, T1D: not carried from T1V: the two series have different "
                                     "frames of reference (DICOM FrameOfReferenceUID); draw the box on T1D"}


def test_a_reader_file_becomes_the_cohorts_rois_csv(cohort):
    from dlmvi.cohort.validate import validate_cohort

    a = Annotator(cohort, "A")
    for pid in ("P0001", "P0003"):
        fp = a.view(pid)["fingerprint"]
        for seq in ("T1", "T1V", "T1D"):
            a.confirm(pid, seq, ROWS, fp)
    with pytest.raises(AnnotationError, match="rois.B.csv does not exist"):
        adopt_reader_file(cohort, "B")
    out = adopt_reader_file(cohort, "A")
    assert (out["rows"], out["patients"], out["backup"]) == (18, 2, None)
    assert (cohort / "rois.csv").read_bytes() == (cohort / "rois.A.csv").read_bytes()
    assert [p for p in validate_cohort(cohort, ("T1", "T1V", "T1D")) if p.level == "error"] == []
    with pytest.raises(AnnotationError, match="rois.csv exists; pass --replace"):
        adopt_reader_file(cohort, "A")
    assert adopt_reader_file(cohort, "A", replace=True)["backup"].endswith("rois.csv.before-A")


def test_a_reader_name_that_cannot_name_a_file_is_refused(cohort):
    with pytest.raises(AnnotationError, match=r"--reader '\.\./x': use 1-32 letters"):
        Annotator(cohort, "../x")
