"""Leakage canary: random labels, patient-specific textures - an honest pipeline finds nothing.

The cohort (NIfTI, a real cohort folder): 60 patients of one cohort, three sequences, each
patient's tumour ROI filled with its own texture (a grating of random frequency, orientation and
phase per patient and sequence, the same on the three key slices, plus noise), and MVI grades
assigned at random (30 absent, 30 present, seeded). The images say nothing about the labels, but
they identify the patient: the tiny network memorises its training patients (the in-sample AUC
of the final model on them is far above chance, asserted below), so any path by which a model
scores a patient it was trained on shows up as an AUC above chance.

Canary: the out-of-fold AUC must lie in the chance band |AUC - 0.5| < 3 SE, with the null SE of
the Mann-Whitney AUC sqrt((n0 + n1 + 1) / (12 n0 n1)) (Hanley & McNeil 1982) = 0.0752 for 30/30
(two-sided false alarm about 0.3 % for a leak-free pipeline). It is shown to fail for leaks
injected on purpose - the final model's in-sample predictions reported (the bug of
``--develop-cohort none`` that this canary was written for), and every fold trained on its own
test patients - and to pass for the pipeline as shipped, run as a single-centre hospital runs it:
``dlmvi study COHORT --develop-cohort none``. A harmonisation fitted with the test patients
cannot raise an AUC on random labels (it is unsupervised), so it is caught by the run's leakage
audit (:func:`dlmvi.train.leakage.audit_run`), which is shown to fail when such a leak is injected.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

pytestmark = pytest.mark.slow

N, SIZE, SLICES = 60, 32, 5
SEQS = ("T1", "T1V", "T1D")
SE = math.sqrt((N + 1) / (12 * (N // 2) ** 2))


def chance(auc: float) -> bool:
    """The canary's verdict: is this AUC inside the chance band?"""
    return abs(auc - 0.5) < 3 * SE


def _write_cohort(root):
    from factories import write_nifti

    rng = np.random.default_rng(2026)
    grades = np.array(["M0"] * (N // 2) + ["M1", "M2"] * (N // 4))[rng.permutation(N)]
    yy, xx = np.mgrid[:SIZE, :SIZE]
    mask = np.zeros((SLICES, SIZE, SIZE), np.uint8)
    mask[1:4, 6:26, 6:26] = 1  # the three key slices; the crop covers the whole image
    rows = []
    for i in range(N):
        pid = f"C{i:03d}"
        rows.append({"patient_id": pid, "cohort": "2024", "mvi_grade": grades[i], "age": 50 + i % 20,
                     "afp": float(rng.uniform(2, 60))})
        for seq in SEQS:
            f, th, ph = rng.uniform(0.15, 1.2), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
            grating = np.sin(f * (np.cos(th) * xx + np.sin(th) * yy) + ph)
            img = np.stack([300 + 60 * grating + rng.normal(0, 18, grating.shape) for _ in range(SLICES)])
            write_nifti(root / "images" / pid / f"{seq}.nii.gz", img.astype(np.float32))
            write_nifti(root / "images" / pid / f"{seq}_roi.nii.gz", mask)
    pd.DataFrame(rows).to_csv(root / "clinical.csv", index=False)
    return root


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    """The cohort, and the study run on it as shipped (``--develop-cohort none``)."""
    from dlmvi.model.presets import PRESETS, Preset
    from dlmvi.workflow.study import Study

    mp = pytest.MonkeyPatch()
    mp.setitem(PRESETS, "tiny", Preset(name="tiny", input_size=SIZE, stem_width=8, widths=(4, 8), blocks=(1, 1),
                                       epochs=15, batch_size=8, lr=3e-3, patience=0))
    root = tmp_path_factory.mktemp("canary")
    cohort = _write_cohort(root / "cohort")
    cfg = _config(cohort)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random labels: the clinical models warn, as they should
        Study(cfg, root / "run", log=lambda *_: None).run()
    yield cohort, root / "run", cfg
    mp.undo()


def _config(cohort, **train):
    from dataclasses import replace

    from dlmvi.workflow.study import StudyConfig

    cfg = StudyConfig.from_options(cohort, preset="tiny", develop_cohort=None, folds=5, seed=0, bootstrap=0)
    # holdout 0: no early-stopping patients, so every model trains all its epochs (and memorises)
    return replace(cfg, train=replace(cfg.train, holdout=0.0, device="cpu", progress=False, **train))


def _auc(frame) -> float:
    frame = frame[frame["label"].notna()]
    return float(roc_auc_score(frame["label"].astype(int), frame["dl_prob"]))


def test_single_centre_study_reports_chance_and_the_canary_can_bite(canary):
    _, run, _ = canary
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    auc = metrics["cohorts"]["2024"]["binary"]["auc"]
    print(f"DL-MVI AUC (out-of-fold, --develop-cohort none, random labels): {auc:.3f}")
    assert chance(auc), f"AUC {auc:.3f} on random labels: a leak"
    pred = pd.read_csv(run / "predictions.csv", dtype={"patient_id": str})
    assert set(pred["source"]) == {"cross-validation (out of fold)"} and len(pred) == N
    study = json.loads((run / "study.json").read_text())
    assert study["prediction_sources"] == {"2024": {"cross-validation (out of fold)": N}}
    assert study["leakage"]["passed"] and len(study["leakage"]["checked"]) >= 7
    shift = json.loads((run / "shift" / "shift.json").read_text())  # one cohort: skipped, said why
    assert shift["skipped"].startswith("skipped: one cohort (2024)")
    # the leak this canary was written for: the final model's in-sample predictions, reported
    final = pd.read_csv(run / "predict" / "final_predictions.csv", dtype={"patient_id": str})
    assert final["source"].str.endswith("(in-sample: a training patient)").all()
    in_sample = _auc(final)
    print(f"in-sample AUC of the final model on its own training patients: {in_sample:.3f}")
    assert not chance(in_sample) and in_sample > 0.8, "the network cannot memorise: the canary would be blind"


def test_the_one_reader_keeps_in_sample_predictions_out_of_every_figure(canary, tmp_path):
    from dlmvi.errors import PredictionsTableError
    from dlmvi.evaluate.metrics import run_evaluate

    _, run, _ = canary
    with pytest.raises(PredictionsTableError, match="every prediction is in-sample"):
        run_evaluate(run / "predict" / "final_predictions.csv", tmp_path / "ev")


def test_a_fold_trained_on_its_test_patients_fails_the_canary(canary, tmp_path, monkeypatch):
    import dlmvi.train.run as run_module
    from dlmvi.train.leakage import audit_run
    from dlmvi.train.splits import Split

    _, run, cfg = canary
    honest = run_module.kfold_splits

    def leaky(ids, labels, folds, seed, holdout):  # each fold also trains on its test patients
        return [Split(s.train + s.test, s.val, s.test) for s in honest(ids, labels, folds, seed, holdout)]

    monkeypatch.setattr(run_module, "kfold_splits", leaky)
    res = run_module.run_training(run / "cache", tmp_path / "leaky", cfg.train)
    auc = _auc(res.cv_predictions)
    print(f"out-of-fold AUC with every fold trained on its test patients: {auc:.3f}")
    assert not chance(auc)
    audit = audit_run(tmp_path / "leaky")
    assert not audit.ok and "fold 1: patients on both its training and test sides" in audit.problems[0]


@pytest.mark.parametrize("leak", [False, True])
def test_a_harmonisation_fitted_with_the_test_patients_fails_the_audit(canary, tmp_path, monkeypatch, leak):
    """``--normalization global`` trains each model on the raw cache with a scale fitted on its
    own training patients; fitting it on every patient instead is caught."""
    from dataclasses import replace

    from dlmvi.preprocess.prepare import prepare_cohort
    from dlmvi.train.inputs import TrainingInputs
    from dlmvi.train.leakage import audit_run
    from dlmvi.train.run import run_training

    cohort, _, cfg = canary
    raw = tmp_path / "raw"
    prepare_cohort(cohort, raw, replace(cfg.prepare, normalization="none"))
    if leak:
        honest = TrainingInputs.for_unit
        monkeypatch.setattr(TrainingInputs, "for_unit", lambda self, fit_ids: honest(self, self.ids))
    tcfg = replace(cfg.train, harmonization="global", folds=2, epochs=1)
    run_training(raw, tmp_path / "run", tcfg)
    audit = audit_run(tmp_path / "run")
    assert any("global harmonisation fitted on its training patients only" in c for c in audit.checked)
    if leak:
        assert any("harmonisation was fitted with its test patients" in p for p in audit.problems)
    else:
        assert audit.ok, audit.problems
        fold0 = json.loads((tmp_path / "run" / "fold_0" / "model.json").read_text())["harmonization"]
        split = json.loads((tmp_path / "run" / "splits.json").read_text())["folds"][0]
        assert sorted(fold0["fit_patients"]) == sorted(split["train"] + split["val"])
    shutil.rmtree(tmp_path / "run")
