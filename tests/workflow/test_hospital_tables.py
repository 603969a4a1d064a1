"""Issue 15's "done when": a hospital's own tables through the whole study, and a prospective
cohort through an exported model. Data: the session's tiny study (SYNTHETIC phantom, 40
patients, 2 folds, 10 epochs); its clinical.csv rewritten as a European Excel export."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

COLUMN_MAP = """\
[columns]
ID = "patient_id"
Kohorte = "cohort"
Grad = "mvi_grade"
"AFP (IU/ml)" = "afp"
[units]
afp = "IU/mL"
"""


def _european(value) -> str:
    """A number as a German Excel writes it: decimal comma, full precision."""
    if pd.isna(value):
        return ""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text.replace(".", ",")


def european_copy(src, dst):
    """``src``'s cohort with clinical.csv as a European Excel export: UTF-8 BOM, ';', decimal
    commas, AFP in IU/mL with '<1' for the lowest, grades 0/1/2, own column names, blank
    trailing rows. Returns (cohort folder, the same data written plainly)."""
    table = pd.read_csv(src / "clinical.csv", dtype={"patient_id": str, "cohort": str})
    dst.mkdir(parents=True)
    os.symlink(src / "images", dst / "images")
    shutil.copy(src / "cohort.json", dst / "cohort.json")
    eu = table.copy()
    iu = table["afp"] / 1.21
    low = int(np.argmin(iu))
    eu["afp"] = [_european(v) for v in iu]
    eu.loc[low, "afp"] = "<1"
    numeric = [c for c in table.columns if c not in ("patient_id", "cohort", "mvi_grade", "afp")
               and pd.api.types.is_numeric_dtype(table[c])]
    for c in numeric:
        eu[c] = [_european(v) for v in table[c]]
    eu["mvi_grade"] = table["mvi_grade"].map({"M0": "0", "M1": "1", "M2": "2"})
    eu = eu.rename(columns={"patient_id": "ID", "cohort": "Kohorte", "mvi_grade": "Grad", "afp": "AFP (IU/ml)"})
    text = eu.to_csv(sep=";", index=False) + ";" * (eu.shape[1] - 1) + "\n" + ";" * (eu.shape[1] - 1) + "\n"
    (dst / "clinical.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    (dst / "columns.toml").write_text(COLUMN_MAP)
    plain = table.copy()
    plain["afp"] = iu * 1.21  # what the reader makes of the IU/mL values
    plain.loc[low, "afp"] = 1.21  # '<1' IU/mL: the limit, converted
    return dst, plain


def test_a_european_excel_export_runs_to_the_report_with_the_plain_nomogram(tiny_study, tmp_path):
    from dlmvi.io.tables import ColumnMap, read_clinical
    from dlmvi.stats.clinical import run_clinical
    from dlmvi.workflow.study import Study, StudyConfig

    cohort, plain = european_copy(tiny_study["cohort"], tmp_path / "hospital")
    with pytest.warns(Warning):  # '<1' is reported as a censored value
        parsed = read_clinical(cohort / "clinical.csv", ColumnMap.from_toml(cohort / "columns.toml")).frame
    assert len(parsed) == 40  # the blank trailing rows are ignored
    assert parsed["mvi_grade"].tolist() == plain["mvi_grade"].tolist()
    np.testing.assert_allclose(parsed["afp"], plain["afp"], rtol=1e-15)

    ref = tiny_study["config"]  # the same settings as the tiny study, plus the column map
    cfg = StudyConfig.from_options(cohort, folds=ref.train.folds, epochs=ref.train.epochs,
                                   bootstrap=ref.clinical.n_bootstrap, seed=ref.seed, columns=cohort / "columns.toml")
    logs: list[str] = []
    Study(cfg, tmp_path / "run", log=logs.append).run()
    run = tmp_path / "run"
    assert (run / "report.html").is_file() and (run / "survival" / "survival.json").is_file()
    eu = json.loads((run / "clinical" / "nomogram.json").read_text())
    assert "error" not in eu

    # the same data written plainly, with the same predictions: the same nomogram
    plain_csv = tmp_path / "plain" / "clinical.csv"
    plain_csv.parent.mkdir()
    plain.to_csv(plain_csv, index=False)
    ref_doc = run_clinical(plain_csv, tmp_path / "plain_clinical", predictions=run / "predictions.csv",
                           develop_cohort="2015", config=cfg.clinical)["nomogram"]
    assert eu["terms"] == ref_doc["terms"] and eu["n"] == ref_doc["n"]
    assert eu["intercept"] == pytest.approx(ref_doc["intercept"], abs=1e-12)
    for k, v in ref_doc["coefficients"].items():
        assert eu["coefficients"][k] == pytest.approx(v, abs=1e-12)
    np.testing.assert_allclose(eu["covariance"], ref_doc["covariance"], rtol=0, atol=1e-12)

    # and the same nomogram as the tiny study run on the original (plain) table
    tiny = json.loads((tiny_study["run"] / "clinical" / "nomogram.json").read_text())
    assert eu["intercept"] == pytest.approx(tiny["intercept"], abs=1e-12)
    for k, v in tiny["coefficients"].items():
        assert eu["coefficients"][k] == pytest.approx(v, abs=1e-12)
    survival = json.loads((run / "survival" / "survival.json").read_text())
    tiny_survival = json.loads((tiny_study["run"] / "survival" / "survival.json").read_text())
    assert survival["os_by_mvi"]["logrank"] == pytest.approx(tiny_survival["os_by_mvi"]["logrank"], abs=1e-12)


def dlmvi(*args):
    return subprocess.run([sys.executable, "-m", "dlmvi.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=900)


def test_a_prospective_cohort_gets_predictions_and_nomogram_risks(tiny_study, tiny_study_model, tmp_path):
    """No grades at all: validate, prepare, predict (exported model, and the training run)."""
    src = tiny_study["cohort"]
    table = pd.read_csv(src / "clinical.csv", dtype={"patient_id": str, "cohort": str})
    ids = sorted(table.loc[table["cohort"] == "2018", "patient_id"])[:8]
    cohort = tmp_path / "new"
    (cohort / "images").mkdir(parents=True)
    for pid in ids:
        os.symlink(src / "images" / pid, cohort / "images" / pid)
    table.set_index("patient_id").loc[ids, ["afp"]].reset_index().assign(cohort="2024").to_csv(
        cohort / "clinical.csv", index=False)  # patient_id, afp, cohort: no mvi_grade column

    res = dlmvi("validate", cohort)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "8 patient(s) have no mvi_grade (no pathology result yet)" in res.stdout
    res = dlmvi("prepare", cohort, "--out", tmp_path / "cache", "--size", "64")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "8 patient(s) prepared (8 without mvi_grade: predicted, not trained on), 0 excluded" in res.stdout

    res = dlmvi("predict", tiny_study_model, cohort, "--out", tmp_path / "preds.csv")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "8 patients predicted, nomogram risk for 8" in res.stdout
    preds = pd.read_csv(tmp_path / "preds.csv", dtype={"patient_id": str, "cohort": str})
    assert preds["patient_id"].tolist() == ids and preds["label"].isna().all()
    assert ((preds["nomogram_ci_low"] < preds["nomogram_risk"]) & (preds["nomogram_risk"] < preds["nomogram_ci_high"])).all()
    assert set(preds["decision_basis"]) == {"nomogram"}
    assert len(pd.read_csv(tmp_path / "preds.skipped.csv")) == 0

    # the training run on the prepared cache gives the same DL-MVI probabilities
    res = dlmvi("predict", tiny_study["run"] / "train", tmp_path / "cache", "--out", tmp_path / "run_preds.csv")
    assert res.returncode == 0, res.stdout + res.stderr
    other = pd.read_csv(tmp_path / "run_preds.csv", dtype={"patient_id": str})
    np.testing.assert_allclose(other["dl_prob"], preds["dl_prob"], atol=1e-5)

    # nothing to evaluate without outcomes: one message
    res = dlmvi("evaluate", tmp_path / "preds.csv", "--out", tmp_path / "ev")
    assert res.returncode == 2 and "none of the 8 patients has a label" in res.stderr
