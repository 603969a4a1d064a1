"""Tests of src/dlmvi/deploy/dicom_sr.py, src/dlmvi/io/dicom_seg.py and
src/dlmvi/deploy/pacs_study.py on local files (no PACS): a phantom study as DICOM, its tumour
as a SEG (as 3D Slicer stores it) and as an RTSTRUCT, mapped with the import's rules; the SR
of a study without ROI passes dciodvfy. The PACS round trips are in tests/cli/test_pacs.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import orthanc as ot  # tests/orthanc.py: the phantom study and ROI writers


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    import SimpleITK as sitk

    from dlmvi.datasets.phantom import make_phantom

    root = tmp_path_factory.mktemp("sr")
    cohort = make_phantom(root / "dcm", n_patients=1, size=64, n_slices=16, seed=7, progress=False, workers=1,
                          fmt="dicom")
    st = ot.phantom_study(cohort, 0, root / "study", "ACC9")
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(st / "T1V_roi.nii.gz")))
    (root / "files").mkdir()
    for seq in ("T1", "T1V", "T1D"):
        shutil.copytree(st / seq, root / "files" / seq)
    (root / "map.toml").write_text(ot.MAP_TOML)
    return {"root": root, "study": st, "mask": mask}


def _case(study, name):
    from dlmvi.deploy.pacs_study import map_study
    from dlmvi.io.dicom_import import ImportMap

    imap = ImportMap.from_toml(study["root"] / "map.toml", patients=False)
    return map_study(study["root"] / "files", study["root"] / name, imap, ("T1", "T1V", "T1D"))


def test_seg_and_rtstruct_give_the_masks_drawn(study):
    import SimpleITK as sitk

    from dlmvi.deploy.pacs_study import attach_rois

    case = _case(study, "w_seg")
    assert sorted(case.evidence) == ["T1", "T1D", "T1V"] and case.patient_id.startswith("S")
    rois = study["root"] / "rois_seg"
    (rois / "SEG").mkdir(parents=True)
    ot.write_seg(study["mask"], study["study"] / "T1V", rois / "SEG" / "seg.dcm")
    assert attach_rois(case, rois) == "SEG"
    for seq in ("T1", "T1V", "T1D"):  # drawn on T1V; the same frame of reference carries it to T1 and T1D
        got = sitk.GetArrayFromImage(sitk.ReadImage(str(case.patient_dir / f"{seq}_roi.nii.gz")))
        np.testing.assert_array_equal(got, study["mask"])
    case2 = _case(study, "w_rt")
    rt = study["root"] / "rois_rt"
    (rt / "RTSTRUCT").mkdir(parents=True)
    ot.write_rtstruct(study["mask"], study["study"] / "T1V", rt / "RTSTRUCT" / "rt.dcm")
    assert attach_rois(case2, rt) == "RTSTRUCT"
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(case2.patient_dir / "T1V_roi.nii.gz")))
    expected = np.zeros_like(study["mask"])
    for z in range(len(expected)):  # the contour is each slice's bounding box of the mask
        ys, xs = np.nonzero(study["mask"][z])
        if len(ys):
            expected[z, ys.min():ys.max() + 1, xs.min():xs.max() + 1] = 1
    np.testing.assert_array_equal(got, expected)


def test_study_without_roi_gets_a_valid_sr_saying_so(study, patient_model):
    from dlmvi.deploy.dicom_sr import read_sr
    from dlmvi.deploy.model import load_model
    from dlmvi.deploy.pacs_study import NO_ROI_STATE, predict_study
    from dlmvi.io.dicom_import import ImportMap

    em = load_model(patient_model[1])
    imap = ImportMap.from_toml(study["root"] / "map.toml", patients=False)
    case, res, sr = predict_study(em, study["root"] / "files", study["root"] / "w_none", imap, afp=10.0,
                                  entropy="test")
    assert res is None and case.roi == ""
    back = read_sr(sr)
    assert back["state"] == NO_ROI_STATE and "probability" not in back and "not a medical device" in back["notice"]
    assert sr.AccessionNumber == "ACC9" and sr.Modality == "SR"
    path = study["root"] / "noroi.dcm"
    sr.save_as(path, enforce_file_format=True)
    if shutil.which("dciodvfy"):
        val = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        assert not [ln for ln in (val.stdout + val.stderr).splitlines() if ln.startswith("Error")]


def test_read_sr_refuses_another_report(study):
    import pydicom

    from dlmvi.deploy.dicom_sr import read_sr
    from dlmvi.errors import ImageError

    ds = pydicom.Dataset()
    ds.ConceptNameCodeSequence = [pydicom.Dataset()]
    ds.ConceptNameCodeSequence[0].CodeValue = "126000"
    ds.ConceptNameCodeSequence[0].CodingSchemeDesignator = "DCM"
    with pytest.raises(ImageError, match="not a DL-MVI report"):
        read_sr(ds)


def test_rois_csv_of_a_study_gives_the_prediction_of_its_boxes(study, patient_model, tmp_path):
    """``predict-patient --pacs ... --rois rois.csv``: rows named by the study's pseudonym (as
    ``dlmvi pacs find`` lists it) are the boxes of the files' grid, as for a patient folder."""
    from dlmvi.deploy.model import load_model
    from dlmvi.deploy.pacs_study import predict_study
    from dlmvi.deploy.patient import predict_patient
    from dlmvi.io.dicom_import import ImportMap

    em = load_model(patient_model[1])
    ref_mask = predict_patient(em.path, study["study"], 10.0, model=em)
    boxes = {}
    for seq in ("T1", "T1V", "T1D"):
        boxes[seq] = []
        for z in ref_mask.key_slices[seq]:
            ys, xs = np.nonzero(study["mask"][z])
            boxes[seq].append((z, int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))
    ref = predict_patient(em.path, study["study"], 10.0, model=em, boxes=boxes)
    imap = ImportMap.from_toml(study["root"] / "map.toml", patients=False)
    case, _, _ = predict_study(em, study["root"] / "files", tmp_path / "w0", imap, afp=10.0)  # its SR says: no ROI
    pseudonym = case.patient_id.removesuffix("-1")
    rows = [f"{pseudonym},{seq},{z},{x0},{y0},{x1},{y1}" for seq, bs in boxes.items() for z, x0, y0, x1, y1 in bs]
    (tmp_path / "rois.csv").write_text("patient_id,sequence,slice,x0,y0,x1,y1\n" + "\n".join(rows) + "\n")
    case, res, sr = predict_study(em, study["root"] / "files", tmp_path / "w1", imap, afp=10.0,
                                  rois=tmp_path / "rois.csv")
    assert case.roi == "boxes" and res.probability == ref.probability and res.boxes == ref.boxes
    assert res.nomogram.risk == ref.nomogram.risk
