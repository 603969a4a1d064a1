"""Tests of src/dlmvi/workflow/agreement.py: two readers' ROIs through an exported model.

The session's exported phantom model (``patient_model``, tests/conftest.py) predicts its own
cohort with the masks removed: reader A boxed each sequence's key slices tightly around the
tumour; reader B drew larger boxes on half of the patients and shifted slices on one.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from dlmvi.errors import CohortError
from dlmvi.preprocess.roi import key_slices
from dlmvi.workflow.agreement import analyse_agreement, reader_files

SEQS = ("T1", "T1V", "T1D")
HEADER = "patient_id,sequence,slice,x0,y0,x1,y1"


def two_readers(root) -> list[str]:
    """Replace the masks of SEQS by two readers' files: A boxes the mask's key slices tightly,
    B draws 3 voxels larger on odd patients and one slice higher on the first patient's T1."""
    a, b = [HEADER], [HEADER]
    pids = sorted(p.name for p in (root / "images").iterdir())
    for i, pid in enumerate(pids):
        for seq in SEQS:
            path = root / "images" / pid / f"{seq}_roi.nii.gz"
            img = sitk.ReadImage(str(path))  # the image file's own grid, as rois.csv
            m = sitk.GetArrayFromImage(img) > 0
            nx, ny = img.GetSize()[:2]
            zs = key_slices(m, img.GetSpacing()[:2])
            for z in zs:
                ys, xs = np.nonzero(m[zs].any(axis=0))
                box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
                a.append(",".join(map(str, (pid, seq, z, *box))))
                grow = 3 if i % 2 else 0
                zb = z + (1 if (i == 0 and seq == "T1") else 0)
                b.append(",".join(map(str, (pid, seq, zb, max(box[0] - grow, 0), max(box[1] - grow, 0),
                                            min(box[2] + grow, nx - 1), min(box[3] + grow, ny - 1)))))
            path.unlink()
    (root / "rois.A.csv").write_text("\n".join(a) + "\n")
    (root / "rois.B.csv").write_text("\n".join(b) + "\n")
    return pids


@pytest.fixture(scope="module")
def readers(patient_model, tmp_path_factory):
    _, model_dir, source = patient_model
    root = tmp_path_factory.mktemp("agreement") / "cohort"
    shutil.copytree(source, root)
    return root, model_dir, two_readers(root)


def test_icc_bland_altman_and_decisions_from_both_readers(readers, tmp_path):
    from dlmvi.deploy.patient import predict_patient
    from dlmvi.stats.icc import icc

    root, model_dir, pids = readers
    assert reader_files(root) == ["A", "B"]
    res = analyse_agreement(root, ("A", "B"), model_dir)
    p = res.probabilities
    assert p["patient_id"].tolist() == pids
    # reader A's probability is predict-patient's with A's boxes (another route through the model)
    a_rows = pd.read_csv(root / "rois.A.csv", dtype={"patient_id": str})
    one = a_rows[a_rows["patient_id"] == pids[1]]
    boxes = {s: [tuple(r) for r in one[one["sequence"] == s][["slice", "x0", "y0", "x1", "y1"]].to_numpy()]
             for s in SEQS}
    ref = predict_patient(model_dir, root / "images" / pids[1], 35.0, boxes=boxes)
    assert p.loc[1, "dl_prob_A"] == pytest.approx(ref.probability, abs=1e-6)
    assert res.icc["icc"] == pytest.approx(icc(p[["dl_prob_A", "dl_prob_B"]].to_numpy()).icc)
    assert res.icc["ci_low"] < res.icc["icc"] < res.icc["ci_high"]
    ba = res.bland_altman.result
    assert ba.bias == pytest.approx(float((p["dl_prob_A"] - p["dl_prob_B"]).mean()))
    assert res.decision_differs["n"] == int(p["decision_differs"].sum()) and res.decision_differs["of"] == len(pids)
    # reader B's boxes equal A's on even patients (but P0001's T1 is one slice off)
    even = res.boxes[res.boxes["patient_id"].isin(pids[2::2])]
    assert (even["iou"] == 1.0).all()
    first = res.boxes[(res.boxes["patient_id"] == pids[0]) & (res.boxes["sequence"] == "T1")].iloc[0]
    assert (first["common_slices"], first["same_key_slices"], first["centre_offset_slices"]) == (2, False, -1.0)
    out = res.write(tmp_path / "agreement")
    doc = json.loads((out / "agreement.json").read_text())
    assert doc["synthetic"] is True and doc["icc"]["form"] == "ICC2" and "SYNTHETIC" in doc["synthetic_notice"]
    assert {f.name for f in out.iterdir()} == {"agreement.json", "boxes.csv", "boxes_summary.csv",
                                               "single_reader.csv", "probabilities.csv", "bland_altman.csv",
                                               "bland_altman.png"}


def test_readers_without_a_common_sequence_are_refused(readers, tmp_path):
    root, _, _ = readers
    c = tmp_path / "c"
    c.mkdir()
    shutil.copy(root / "clinical.csv", c / "clinical.csv")
    (c / "rois.A.csv").write_text(HEADER + "\nP0001,T1,1,1,1,2,2\n")
    (c / "rois.B.csv").write_text(HEADER + "\nP0002,T1,1,1,1,2,2\n")
    with pytest.raises(CohortError, match="readers A and B boxed no sequence of the same patient"):
        analyse_agreement(c, ("A", "B"))
    with pytest.raises(CohortError, match="name two different readers"):
        analyse_agreement(c, ("A", "A"))


def test_a_study_with_two_readers_reports_their_agreement(tiny_study, tmp_path):
    """The study's agreement stage (the final model exported on the fly) and its report section."""
    import dataclasses

    from dlmvi.report.build import build_report
    from dlmvi.workflow.study import Study

    cohort, run = tmp_path / "cohort", tmp_path / "run"
    shutil.copytree(tiny_study["cohort"], cohort)
    shutil.copytree(tiny_study["run"], run)
    two_readers(cohort)
    study = Study(dataclasses.replace(tiny_study["config"], cohort=str(cohort)), run, log=lambda *_: None)
    from dlmvi.workflow.stages.agreement import AgreementStage

    assert study.run_stage(AgreementStage())
    doc = json.loads((run / "agreement" / "agreement.json").read_text())
    assert doc["readers"] == ["A", "B"] and doc["icc"]["n"] == 40 and doc["model"] == "the study's final model"
    assert "agreement" in json.loads((run / "stages.json").read_text())
    assert not [p for p in run.iterdir() if p.name.startswith(".dlmvi-agreement")]  # the export is removed
    html = build_report(run).read_text()
    assert "Readers&#39; agreement (A and B)" in html or "Readers' agreement (A and B)" in html
    assert f"ICC (two-way random effects, single rater, absolute agreement) {doc['icc']['icc']:.3f}" in html
    assert "Bland-Altman: DL-MVI probability, reader A - B" in html
