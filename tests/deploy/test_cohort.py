"""Tests of src/dlmvi/deploy/cohort.py: a prospective cohort (no grades) predicted with an
exported model, each patient as predict-patient predicts one, with nomogram risks."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest

from dlmvi.deploy.cohort import is_exported_model, predict_cohort
from dlmvi.deploy.patient import nomogram_risk, predict_patient

pytestmark = pytest.mark.slow


def prospective_cohort(root, tiny_study, ids=None, afp=None):
    """A cohort folder of the tiny study's patients without mvi_grade (images linked)."""
    src = tiny_study["cohort"]
    table = pd.read_csv(src / "clinical.csv", dtype={"patient_id": str, "cohort": str})
    if ids is not None:
        table = table[table["patient_id"].isin(ids)]
    table = table[["patient_id", "afp"]].assign(cohort="2024").sort_values("patient_id").reset_index(drop=True)
    if afp is not None:
        table["afp"] = afp
    (root / "images").mkdir(parents=True)
    for pid in table["patient_id"]:
        os.symlink(src / "images" / pid, root / "images" / pid)
    table.to_csv(root / "clinical.csv", index=False)
    return root, table


def test_predict_cohort_matches_predict_patient(tiny_study, tiny_study_model, tmp_path):
    ids = sorted(p.name for p in (tiny_study["cohort"] / "images").iterdir())[:4]
    cohort, table = prospective_cohort(tmp_path / "new", tiny_study, ids, afp=[5.0, 35.0, np.nan, 250.0])
    assert is_exported_model(tiny_study_model) and not is_exported_model(tiny_study["run"] / "train")
    pred = predict_cohort(tiny_study_model, cohort)
    f = pred.frame.set_index("patient_id")
    assert list(f.index) == ids and f["mvi_grade"].tolist() == [""] * 4 and f["label"].isna().all()
    for pid, afp in zip(ids, [5.0, 35.0, None, 250.0]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one = predict_patient(tiny_study_model, cohort / "images" / pid, afp)
        assert f.loc[pid, "dl_prob"] == pytest.approx(one.probability, abs=1e-5)
        assert f.loc[pid, "dl_mvi"] == one.dl_mvi
        if afp is None:  # no AFP: no nomogram risk, the DL-MVI decision, and the patient is listed
            assert np.isnan(f.loc[pid, "nomogram_risk"]) and f.loc[pid, "decision_basis"] == "DL-MVI"
            continue
        assert f.loc[pid, "nomogram_risk"] == pytest.approx(one.nomogram.risk, abs=1e-12)
        assert f.loc[pid, "nomogram_ci_low"] == pytest.approx(one.nomogram.ci_low, abs=1e-12)
        assert f.loc[pid, "nomogram_ci_high"] == pytest.approx(one.nomogram.ci_high, abs=1e-12)
        assert f.loc[pid, "decision"] == one.decision and f.loc[pid, "decision_basis"] == "nomogram"
    assert pred.skipped.rows == [{"patient_id": ids[2], "reason": "no nomogram risk: afp empty in clinical.csv "
                                  "(DL-MVI prediction written)", "step": "nomogram"}]
    assert pred.features.shape[:2] == (4, 3)


def test_patients_that_cannot_be_predicted_are_listed(tiny_study, tiny_study_model, tmp_path):
    ids = sorted(p.name for p in (tiny_study["cohort"] / "images").iterdir())[:3]
    cohort, table = prospective_cohort(tmp_path / "new", tiny_study, ids)
    (cohort / "images" / ids[1]).unlink()  # no images for the second patient
    table = pd.concat([table, pd.DataFrame({"patient_id": ["X9"], "cohort": ["2024"], "afp": ["abc"]})])
    table.to_csv(cohort / "clinical.csv", index=False)
    pred = predict_cohort(tiny_study_model, cohort)
    assert pred.frame["patient_id"].tolist() == [ids[0], ids[2]]
    reasons = {r["patient_id"]: r["reason"] for r in pred.skipped.rows}
    assert set(reasons) == {ids[1], "X9"}
    assert reasons[ids[1]].startswith(f"patient {ids[1]}, T1: sequence T1 is missing")
    assert reasons["X9"].startswith("clinical.csv: afp: not a number: 'abc' (row 5)")
    assert pred.frame["nomogram_risk"].notna().all()


def test_a_model_without_a_nomogram_input_column_predicts_dl_mvi_only(tiny_study, tiny_study_model, tmp_path):
    from dlmvi.errors import DlmviWarning

    ids = sorted(p.name for p in (tiny_study["cohort"] / "images").iterdir())[:2]
    cohort, table = prospective_cohort(tmp_path / "new", tiny_study, ids)
    table.drop(columns="afp").to_csv(cohort / "clinical.csv", index=False)
    with pytest.warns(DlmviWarning, match="no nomogram risk: clinical.csv has no column afp"):
        pred = predict_cohort(tiny_study_model, cohort)
    assert "nomogram_risk" not in pred.frame and set(pred.frame["decision_basis"]) == {"DL-MVI"}
    assert "no column afp" in pred.meta["nomogram_note"]


def test_nomogram_columns_are_the_formula(tiny_study, tiny_study_model, tmp_path):
    """nomogram_risk = expit(b0 + b1 [afp > 20] + b2 dl_mvi), its CI by the delta method."""
    import json

    ids = sorted(p.name for p in (tiny_study["cohort"] / "images").iterdir())[:6]
    cohort, _ = prospective_cohort(tmp_path / "new", tiny_study, ids)
    frame = predict_cohort(tiny_study_model, cohort).frame
    nom = json.loads((tiny_study_model / "model.json").read_text())["nomogram"]
    afp = pd.read_csv(cohort / "clinical.csv", dtype={"patient_id": str}).set_index("patient_id")["afp"]
    for row in frame.itertuples():
        lp = (nom["intercept"] + nom["coefficients"]["afp"] * float(afp[row.patient_id] > 20)
              + nom["coefficients"]["dl_mvi"] * row.dl_mvi)
        assert row.nomogram_risk == pytest.approx(1 / (1 + np.exp(-lp)), abs=1e-12)
        r = nomogram_risk(nom, {"afp": afp[row.patient_id], "dl_mvi": row.dl_mvi})
        assert (row.nomogram_ci_low, row.nomogram_ci_high) == pytest.approx((r.ci_low, r.ci_high), abs=1e-12)
