"""``dlmvi study`` checks every input before the first expensive stage: a mistake ends the study
in seconds with one message naming file, patient, column or row, and nothing is prepared."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from factories import write_cohort


def study(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlmvi.cli", "study", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def refused(res) -> str:
    assert res.returncode == 2, (res.stdout[-2000:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr and "[prepare]" not in res.stdout
    return res.stderr


@pytest.fixture
def cohort(tmp_path):
    """12 patients, cohorts 2015/2018 alternating: 2015 holds 2 M0, 2 M1, 2 M2."""
    return write_cohort(tmp_path / "cohort", n=12, cohort_names=("2015", "2018"))


def test_a_table_error_stops_the_study_before_anything_is_prepared(cohort, tmp_path):
    table = pd.read_csv(cohort / "clinical.csv", dtype=str)
    table.loc[2, "afp"] = "abc"
    table.to_csv(cohort / "clinical.csv", index=False)
    err = refused(study(cohort, "--out", tmp_path / "run", "--folds", "2"))
    assert f"error: {cohort / 'clinical.csv'}: patient P002, afp: not a number: 'abc' (row 4)" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (("--develop-cohort", "2016", "--folds", "2"),
     "--develop-cohort '2016' is not a cohort of the table (cohorts: 2015, 2018)"),
    (("--folds", "5"), "the training set of cohort 2015 has 2 MVI absent, 4 MVI present: 5-fold cross-validation "
                       "needs at least 5 patients of each class"),
])
def test_development_cohort_and_classes_are_checked_first(cohort, tmp_path, args, message):
    err = refused(study(cohort, "--out", tmp_path / "run", *args))
    assert message in err
    assert not (tmp_path / "run").exists()


def test_configuration_and_column_map_are_checked_against_the_table(cohort, tmp_path):
    toml = tmp_path / "variables.toml"
    toml.write_text('variables = ["afp", "ggt"]\n[nomogram]\npredictors = ["afp", "dl_mvi"]\n')
    err = refused(study(cohort, "--out", tmp_path / "run", "--folds", "2", "--clinical-config", toml))
    assert "the clinical configuration's variables ['ggt'] are not columns of the table" in err
    cmap = tmp_path / "map.toml"
    cmap.write_text('[units]\nafp = "mmol/L"\n')
    err = refused(study(cohort, "--out", tmp_path / "run", "--folds", "2", "--columns", cmap))
    assert "unit 'mmol/L' for column 'afp' is not known to dlmvi" in err


def test_run_folder_inside_the_cohort_is_refused(cohort):
    err = refused(study(cohort, "--out", cohort / "run", "--folds", "2"))
    assert f"--out {cohort / 'run'} lies inside the input folder {cohort}" in err
    assert not (cohort / "run").exists()


def test_missing_images_and_survival_columns_are_notes(cohort, tmp_path):
    import shutil

    from dlmvi.workflow.study import Study, StudyConfig

    shutil.rmtree(cohort / "images" / "P004")
    pd.read_csv(cohort / "clinical.csv").drop(columns=["rfs_months", "rfs_event"]).to_csv(
        cohort / "clinical.csv", index=False)
    logs: list[str] = []
    found = Study(StudyConfig.from_options(cohort, folds=2), tmp_path / "run", log=logs.append).preflight()
    assert found["without_images"] == ["P004"] and found["survival"] == []
    assert any("1 patient(s) lack a sequence of T1, T1V, T1D (or their images/ folder) and will be excluded: P004"
               in line for line in logs)
    assert any("the survival stage will be skipped" in line for line in logs)
    assert not (tmp_path / "run").exists()  # a preflight writes nothing
