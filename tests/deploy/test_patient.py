"""Tests of src/dlmvi/deploy/patient.py, src/dlmvi/report/card.py and src/dlmvi/cli/patient.py.

The session fixture ``patient_model`` (tests/conftest.py): a 10-patient phantom (64 px, 16 slices),
its patch cache, a fast-preset network trained for 1 epoch, the study's published nomogram,
exported with ``export_model``.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from factories import STUDY_NOMOGRAM
from dlmvi.errors import CohortError, CohortWarning

SEQS = ("T1", "T1V", "T1D")
NOMOGRAM = STUDY_NOMOGRAM


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _pids(cohort: Path) -> list[str]:
    return sorted(p.name for p in (cohort / "images").iterdir())


def test_probabilities_match_predict_cache(patient_model):
    from dlmvi.model.inference import predict_cache
    from dlmvi.deploy.patient import predict_patient

    run, model_dir, cohort = patient_model
    pids = _pids(cohort)[:2]
    first = predict_cache(run / "train", run / "cache", patient_ids=pids).frame
    tta = predict_cache(run / "train", run / "cache", patient_ids=pids, tta=True).frame
    for i, pid in enumerate(pids):
        r = predict_patient(model_dir, cohort / "images" / pid, afp=35.0)
        assert r.patient_id == pid
        assert r.probability == r.probability_first_slice
        assert r.probability_first_slice == pytest.approx(first["dl_prob"].iloc[i], abs=1e-5)
        assert r.dl_mvi == int(first["dl_mvi"].iloc[i])
        # mean over the 27 combinations = predict's --tta
        assert float(np.mean(r.combination_probabilities)) == pytest.approx(tta["dl_prob"].iloc[i], abs=1e-5)
        assert sum(r.class_probabilities.values()) == pytest.approx(1.0, abs=1e-6)


def test_spread_covers_the_first_slice_probability(patient_model):
    from dlmvi.deploy.patient import predict_patient

    _, model_dir, cohort = patient_model
    r = predict_patient(model_dir, cohort / "images" / _pids(cohort)[2], afp=10.0)
    p = r.combination_probabilities
    assert r.spread.n == 27 and p.shape == (27,) and r.combinations.shape == (27, 3)
    assert r.combinations[0].tolist() == [0, 0, 0] and p[0] == pytest.approx(r.probability_first_slice, abs=1e-7)
    assert r.spread.min <= r.probability_first_slice <= r.spread.max
    assert r.spread.min == pytest.approx(p.min()) and r.spread.max == pytest.approx(p.max())
    assert r.spread.median == pytest.approx(np.median(p)) and r.spread.sd == pytest.approx(np.std(p))
    assert len(r.key_slices["T1"]) == 3 and r.key_slices["T1"] == list(range(r.key_slices["T1"][0], r.key_slices["T1"][0] + 3))
    r1 = predict_patient(model_dir, cohort / "images" / _pids(cohort)[2], afp=10.0, spread=False)
    assert r1.probability == pytest.approx(r.probability, abs=1e-7) and r1.spread.n == 1


@pytest.mark.parametrize("afp, above", [(35.0, 1.0), (10.0, 0.0), (20.0, 0.0), (20.01, 1.0)])
def test_nomogram_risk_is_the_formula_with_a_delta_method_ci(patient_model, afp, above):
    """risk = expit(-3.51 + 1.53 [AFP > 20] + 3.58 DL-MVI); CI = expit(lp -+ 1.959964 sqrt(z' V z))."""
    from dlmvi.deploy.patient import predict_patient

    _, model_dir, cohort = patient_model
    r = predict_patient(model_dir, cohort / "images" / _pids(cohort)[0], afp=afp)
    z = np.array([1.0, above, float(r.dl_mvi)])
    lp = -3.51 + 1.53 * above + 3.58 * r.dl_mvi
    se = math.sqrt(z @ np.array(NOMOGRAM["covariance"]) @ z)
    expit = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    n = r.nomogram
    assert n.inputs == {"afp > 20": above, "dl_mvi": float(r.dl_mvi)}
    assert n.linear_predictor == pytest.approx(lp, rel=1e-12)
    assert n.risk == pytest.approx(expit(lp), rel=1e-12)
    assert n.se == pytest.approx(se, rel=1e-12)
    assert n.ci_low == pytest.approx(expit(lp - 1.959963984540054 * se), rel=1e-9)
    assert n.ci_high == pytest.approx(expit(lp + 1.959963984540054 * se), rel=1e-9)
    assert n.ci_low < n.risk < n.ci_high
    assert r.threshold == 0.5 and r.decision_basis == "nomogram"
    assert r.decision == ("MVI likely" if n.risk >= 0.5 else "MVI unlikely")


def test_missing_sequence_or_roi_names_patient_sequence_and_file(patient_model, tmp_path):
    from dlmvi.deploy.patient import predict_patient

    _, model_dir, cohort = patient_model
    pid = _pids(cohort)[0]
    case = tmp_path / pid
    shutil.copytree(cohort / "images" / pid, case)
    (case / "T1V.nii.gz").unlink()
    with pytest.raises(CohortError, match=rf"patient {pid}, T1V: sequence T1V is missing; expected the file "
                                          rf"{case}/T1V.nii.gz or the DICOM series folder {case}/T1V/"):
        predict_patient(model_dir, case, afp=35.0)
    shutil.copy(cohort / "images" / pid / "T1V.nii.gz", case / "T1V.nii.gz")
    (case / "T1D_roi.nii.gz").unlink()
    with pytest.raises(CohortError, match=rf"patient {pid}, T1D: no tumour ROI; expected the mask {case}/T1D_roi.nii.gz"):
        predict_patient(model_dir, case, afp=35.0)


def test_the_checks_of_validate_apply_to_one_patient(patient_model, tmp_path):
    """An inverted mask or a blank image is refused as `dlmvi validate` refuses it (never a
    prediction on a crop of the whole image); a volumes.toml in the folder is honoured."""
    import nibabel as nib

    from dlmvi.deploy.patient import predict_patient

    _, model_dir, cohort = patient_model
    pid = _pids(cohort)[0]
    case = tmp_path / pid
    shutil.copytree(cohort / "images" / pid, case)
    roi = nib.load(case / "T1D_roi.nii.gz")
    inverted = (np.asarray(roi.dataobj) == 0).astype(np.uint8)
    nib.save(nib.Nifti1Image(inverted, roi.affine, roi.header), case / "T1D_roi.nii.gz")
    with pytest.raises(CohortError, match=rf"patient {pid}, T1D: the mask covers \d+% of the volume .*looks inverted"):
        predict_patient(model_dir, case, afp=35.0)
    shutil.copy(cohort / "images" / pid / "T1D_roi.nii.gz", case / "T1D_roi.nii.gz")
    ref = predict_patient(model_dir, case, afp=35.0)
    (case / "T1V.nii.gz").rename(case / "DYN.nii.gz")  # the series is named otherwise at this site
    (case / "volumes.toml").write_text('[T1V]\nsource = "DYN"\n')
    assert predict_patient(model_dir, case, afp=35.0).probability == ref.probability


def test_boxes_around_the_mask_give_the_same_prediction(patient_model, tmp_path):
    """Boxes drawn tightly around the mask on the key slices crop the same patch."""
    from dlmvi.cohort.patient import Patient, SequenceSource
    from dlmvi.deploy.patient import predict_patient

    _, model_dir, cohort = patient_model
    pid = _pids(cohort)[1]
    ref = predict_patient(model_dir, cohort / "images" / pid, afp=35.0)
    case = tmp_path / pid
    case.mkdir()
    boxes = {}
    for seq in SEQS:
        shutil.copy(cohort / "images" / pid / f"{seq}.nii.gz", case)
        src = SequenceSource(seq, cohort / "images" / pid / f"{seq}.nii.gz", cohort / "images" / pid / f"{seq}_roi.nii.gz")
        mask = Patient(pid, "", "", sources={seq: src}).load(seq).mask  # phantom files are LPS: file grid
        rows = []
        for z in ref.key_slices[seq]:
            ys, xs = np.nonzero(mask[z])
            rows.append((z, xs.min(), ys.min(), xs.max(), ys.max()))
        boxes[seq] = rows
    r = predict_patient(model_dir, case, afp=35.0, boxes=boxes)
    assert r.key_slices == ref.key_slices and r.boxes == ref.boxes
    assert r.probability == pytest.approx(ref.probability, abs=1e-6)


def test_spacing_outside_the_training_range_warns(patient_model, tmp_path):
    from dlmvi.deploy.patient import predict_patient

    _, model_dir, cohort = patient_model
    m = tmp_path / "model"
    shutil.copytree(model_dir, m)
    doc = json.loads((m / "model.json").read_text())
    spacing = doc["training_data"]["spacing_mm"]
    assert spacing["all"]["min"] == [5.625, 5.625, 6.0] and spacing["all"]["max"] == [5.625, 5.625, 6.0]
    doc["training_data"]["spacing_mm"] = {"all": {"min": [0.7, 0.7, 3.0], "max": [1.5, 1.5, 5.0]}}
    (m / "model.json").write_text(json.dumps(doc))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = predict_patient(m, cohort / "images" / _pids(cohort)[0], afp=35.0)
    msgs = [str(w.message) for w in caught if issubclass(w.category, CohortWarning)]
    assert len(msgs) == 3 and msgs == r.input_warnings
    assert "T1: voxel spacing outside the training range: x 5.62 mm (training 0.7-1.5 mm), " \
           "y 5.62 mm (training 0.7-1.5 mm), z 6 mm (training 3-5 mm)" in msgs[0]
    assert doc["training_data"]["n"] == 10
    assert doc["training_data"]["orientation"] == {"planes": {"axial": 30}, "codes": {"LPS": 30},  # 10 x 3
                                                   "note": doc["training_data"]["orientation"]["note"]}


def test_gradcam_has_one_map_per_sequence(patient_model):
    from dlmvi.deploy.patient import predict_patient

    _, model_dir, cohort = patient_model
    r = predict_patient(model_dir, cohort / "images" / _pids(cohort)[0], afp=35.0, explain=True)
    assert r.gradcam.shape == (3, 64, 64) and r.gradcam_class == "MVI present"
    assert r.gradcam.min() >= 0.0 and r.gradcam.max() == pytest.approx(1.0)
    # the explained model is untouched (MONAI's hooks went on a copy)
    r2 = predict_patient(model_dir, cohort / "images" / _pids(cohort)[0], afp=35.0)
    assert r2.probability == pytest.approx(r.probability, abs=1e-7)


def test_cli_writes_result_and_card(patient_model, tmp_path, capsys):
    from dlmvi.cli import run_cli
    from dlmvi.deploy.patient import predict_patient

    _, model_dir, cohort = patient_model
    pid = _pids(cohort)[0]
    out = tmp_path / "out"
    code = run_cli(["predict-patient", str(model_dir), str(cohort / "images" / pid), "--afp", "35",
                    "--out", str(out), "--id", "case-7"])
    text = capsys.readouterr().out
    assert code == 0
    api = predict_patient(model_dir, cohort / "images" / pid, afp=35.0)
    res = json.loads((out / "result.json").read_text())
    assert res["patient_id"] == "case-7"
    assert res["probability"] == pytest.approx(api.probability, abs=1e-7)
    assert res["nomogram"]["risk"] == pytest.approx(api.nomogram.risk, abs=1e-7)
    assert len(res["combination_probabilities"]) == 27 and res["synthetic"] is True
    assert f"DL-MVI probability    {api.probability:.3f}" in text and "SYNTHETIC" in text
    html = (out / "card.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == 3
    assert 'id="synthetic-banner"' in html and "SYNTHETIC" in html
    assert "Research use only, not a medical device" in html
    assert "case-7" in html and pid not in html  # only the id the user chose
    assert f"{100 * api.nomogram.risk:.1f} %" in html
    for field in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
        assert field not in html and field not in json.dumps(res)


def test_cli_reads_a_patient_archive_and_refuses_an_unsafe_one(patient_model, tmp_path, capsys):
    import tarfile

    from dlmvi.cli import run_cli
    from dlmvi.deploy.patient import predict_patient

    _, model_dir, cohort = patient_model
    pid = _pids(cohort)[0]
    archive = tmp_path / "case-9.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cohort / "images" / pid, arcname=pid)
    assert run_cli(["predict-patient", str(model_dir), str(archive), "--afp", "35"]) == 0
    api = predict_patient(model_dir, cohort / "images" / pid, afp=35.0)
    out = capsys.readouterr().out
    assert "patient case-9" in out and f"{api.probability:.3f}" in out
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 0
        tar.addfile(info)
    assert run_cli(["predict-patient", str(model_dir), str(evil), "--afp", "35"]) == 2
    assert "escape.txt" in capsys.readouterr().err
    assert not (tmp_path.parent / "escape.txt").exists()


def test_predict_patient_is_exported_lazily():
    import dlmvi
    from dlmvi.deploy.patient import predict_patient

    assert dlmvi.predict_patient is predict_patient


def test_harmonised_model_crops_and_normalises_exactly_as_training(patient_model, tmp_path):
    """A model trained on a Nyul-harmonised cache: the patient's input equals the training input."""
    from dlmvi.deploy.model import export_model, load_model
    from dlmvi.model.inference import predict_cache
    from dlmvi.preprocess.cache import PatchCache, PrepareConfig
    from dlmvi.preprocess.harmonize import harmonize_cache
    from dlmvi.preprocess.prepare import prepare_cohort
    from dlmvi.deploy.patient import predict_patient, prepare_patient
    from dlmvi.preprocess.patches import load_patches

    run, _, cohort = patient_model
    run2 = tmp_path / "run"
    raw_cfg = PrepareConfig(sequences=SEQS, size=64, normalization="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare_cohort(cohort, tmp_path / "raw", raw_cfg, progress=False)
        harmonize_cache(tmp_path / "raw", run2 / "cache", method="nyul", develop_cohort="2015")
    final = run2 / "train" / "final"
    final.mkdir(parents=True)
    shutil.copy(run / "train" / "final" / "model.safetensors", final)
    meta = json.loads((run / "train" / "final" / "model.json").read_text())
    meta["prepare"] = raw_cfg.to_dict()
    meta["cache"] = {"path": str(run2 / "cache")}
    (final / "model.json").write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no nomogram
        export_model(run2, tmp_path / "model")
    em = load_model(tmp_path / "model")
    assert em.harmonization["method"] == "nyul" and em.prepare.normalization == "none"
    pid = _pids(cohort)[0]
    x = prepare_patient(em, cohort / "images" / pid, pid)["patches"]
    ref = load_patches(PatchCache(run2 / "cache"), [pid], SEQS, 64)[0]
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-6)
    r = predict_patient(tmp_path / "model", cohort / "images" / pid, afp=35.0)
    p = predict_cache(final, run2 / "cache", patient_ids=[pid]).frame["dl_prob"].iloc[0]
    assert r.probability == pytest.approx(p, abs=1e-5)
    assert r.nomogram is None and r.decision_basis == "DL-MVI"


def test_non_axial_series_is_refused(patient_model, tmp_path):
    import nibabel as nib

    from dlmvi.deploy.patient import predict_patient

    _, model_dir, cohort = patient_model
    pid = _pids(cohort)[0]
    case = tmp_path / pid
    shutil.copytree(cohort / "images" / pid, case)
    for name in ("T1D.nii.gz", "T1D_roi.nii.gz"):
        img = nib.load(str(case / name))
        aff = img.affine.copy()
        aff[:3, [1, 2]] = aff[:3, [2, 1]]  # slices now stacked along anterior-posterior: coronal
        nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), aff), str(case / name))
    with pytest.raises(CohortError, match=rf"patient {pid}, T1D: T1D.nii.gz was acquired coronal but the model "
                                          r"was trained on axial images"):
        predict_patient(model_dir, case, afp=35.0)


def test_dicom_series_patient(patient_model, tmp_path):
    """A patient given as DICOM series folders (masks NIfTI) is read, oriented and predicted."""
    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.deploy.patient import predict_patient

    _, model_dir, _ = patient_model
    cohort = make_phantom(tmp_path / "dicom", n_patients=1, size=64, n_slices=16, seed=3, fmt="dicom",
                          progress=False, workers=1)
    folder = next((Path(cohort) / "images").iterdir())
    assert (folder / "T1").is_dir()
    r = predict_patient(model_dir, folder, afp=35.0, patient_id="dicom-case")
    assert r.orientation["T1"] == {"code": "LPS", "plane": "axial"}
    assert r.spacing_mm["T1"] == (5.625, 5.625, 6.0) and r.spread.n == 27
    assert r.spread.min <= r.probability <= r.spread.max and r.input_warnings == []
    assert r.to_dict()["patient_id"] == "dicom-case"


def _with_robustness(model_dir: Path, dst: Path, dropout: float) -> Path:
    """A copy of the exported model whose model.json says how it was trained (sequence dropout)
    and what each missing sequence cost at training time (numbers illustrative)."""
    shutil.copytree(model_dir, dst)
    doc = json.loads((dst / "model.json").read_text())
    doc["robustness"] = {"sequence_dropout": dropout, "sequence_removed": {
        "auc_all_sequences": 0.81, "auc_without": {"T1D": {"auc": 0.79, "cost": 0.02}, "T1": {"auc": 0.7, "cost": 0.11},
                                                   "T1V": {"auc": 0.8, "cost": 0.01}}}}
    (dst / "model.json").write_text(json.dumps(doc))
    return dst


def _without_t1d(cohort: Path, pid: str, tmp_path: Path) -> Path:
    """A copy of the patient's folder without T1D (image and mask)."""
    case = tmp_path / pid
    shutil.copytree(cohort / "images" / pid, case)
    for f in case.glob("T1D*"):
        f.unlink()
    return case


def test_missing_sequence_is_blanked_for_a_dropout_model_and_its_cost_reported(patient_model, tmp_path):
    """T1D missing: the network sees zeros in the T1D branch (as in training with sequence
    dropout) - the same probability as predict_arrays on the blanked patches - and the result
    names the sequences used and the measured cost."""
    from dlmvi.deploy.model import load_model
    from dlmvi.deploy.patient import predict_patient, prepare_patient
    from dlmvi.model.inference import blank_sequences, predict_arrays

    _, model_dir, cohort = patient_model
    model = _with_robustness(model_dir, tmp_path / "m", 0.2)
    pid = _pids(cohort)[1]
    case = _without_t1d(cohort, pid, tmp_path)
    with pytest.warns(CohortWarning, match="T1D missing; predicted from T1, T1V"):
        res = predict_patient(model, case, afp=35.0, explain=True)
    assert res.sequences_used == ("T1", "T1V") and res.sequences_missing == ("T1D",)
    assert res.missing_cost == {"auc_all_sequences": 0.81, "auc_without": {"T1D": 0.79}, "note": None}
    em = load_model(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = prepare_patient(em, cohort / "images" / pid, pid)["patches"]
    want = predict_arrays(em.model, blank_sequences(full[None], em.sequences, ["T1D"]))[0][0, 1:].sum()
    assert res.probability == pytest.approx(float(want), abs=1e-5)
    assert res.gradcam is None and res.to_dict()["sequences_missing"] == ["T1D"]


def test_missing_sequence_without_dropout_is_refused_with_its_measured_cost(patient_model, tmp_path):
    from dlmvi.deploy.patient import predict_patient

    _, model_dir, cohort = patient_model
    model = _with_robustness(model_dir, tmp_path / "m", 0.0)
    pid = _pids(cohort)[0]
    case = _without_t1d(cohort, pid, tmp_path)
    with pytest.raises(CohortError, match=r"trained without sequence dropout and cannot score a patient without T1D; "
                                          r"with T1D missing its development AUC falls from 0.81 to 0.79; retrain with "
                                          r"`--sequence-dropout 0.2`"):
        predict_patient(model, case, afp=35.0)
