"""User mistakes and hostile places, through the real command line (subprocesses): one message,
exit 2, never a traceback, nothing half-written; inputs are never overwritten; patients left
out are counted and listed; files follow the umask. Data: the session's tiny study (phantom).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def dlmvi(*args, patch: str = "", umask: int | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ``python -m dlmvi.cli ARGS`` (after ``patch``, Python code that fakes a full or
    read-only disk) and return the finished process."""
    argv = [str(a) for a in args]
    if patch:
        code = (patch + "\nimport runpy, sys\nsys.argv = ['dlmvi', *" + repr(argv) + "]\n"
                "runpy.run_module('dlmvi.cli', run_name='__main__')\n")
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [sys.executable, "-m", "dlmvi.cli", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"},
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def one_error(res: subprocess.CompletedProcess) -> str:
    """The single error message of a refused command (exit 2, no traceback)."""
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.stderr
    return errors[0]


def disk_full(target: Path) -> str:
    """Patch: renaming a finished file into place under ``target`` fails with ENOSPC."""
    return f"""
import errno, os
_replace = os.replace
def _full(src, dst, *a, **k):
    if str(dst).startswith({str(target)!r}):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))
    return _replace(src, dst, *a, **k)
os.replace = _full
"""


def read_only(target: Path) -> str:
    """Patch: creating a folder under ``target`` fails with EROFS (the tests run as root,
    where chmod cannot make a place read-only)."""
    return f"""
import errno, os
_mkdir = os.mkdir
def _ro(path, *a, **k):
    if str(path).startswith({str(target)!r}):
        raise OSError(errno.EROFS, "Read-only file system", str(path))
    return _mkdir(path, *a, **k)
os.mkdir = _ro
"""


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---- point 3: never over or inside the inputs ------------------------------------------------

def test_predict_refuses_to_write_over_the_cohort_table(tiny_study):
    cohort, run = tiny_study["cohort"], tiny_study["run"]
    table = cohort / "clinical.csv"
    before = table.read_bytes()
    msg = one_error(dlmvi("predict", run / "train", cohort, "--out", table))
    assert f"--out {table} lies inside the input folder {cohort}; dlmvi never writes into its inputs" in msg
    assert table.read_bytes() == before
    assert not (cohort / "clinical_cache").exists() and not (cohort / "clinical.features.npz").exists()


def test_outputs_may_not_contain_or_be_their_inputs(tiny_study, tmp_path):
    run = tiny_study["run"]
    preds = tmp_path / "ev" / "predictions.csv"
    preds.parent.mkdir()
    shutil.copy(run / "predictions.csv", preds)
    msg = one_error(dlmvi("evaluate", preds, "--out", tmp_path / "ev"))
    assert f"the input {preds} lies inside --out {tmp_path / 'ev'}, which is replaced as a whole" in msg
    msg = one_error(dlmvi("survival", preds, "--out", preds))
    assert f"--out {preds} is the input {preds}" in msg
    assert preds.read_bytes() == (run / "predictions.csv").read_bytes()


# ---- point 6: output places; nothing half-written -------------------------------------------

def test_clinical_with_a_mistyped_development_cohort_leaves_nothing(tiny_study, tmp_path):
    cohort, run = tiny_study["cohort"], tiny_study["run"]
    msg = one_error(dlmvi("clinical", cohort / "clinical.csv", "--predictions", run / "predictions.csv",
                          "--develop-cohort", "2051", "--bootstrap", "0", "--out", tmp_path / "clinical"))
    assert "development cohort '2051' not in the table (cohorts: ['2015', '2018'])" in msg
    assert _leftovers(tmp_path) == []  # no univariate.csv, no table1, no hidden temporary folder


def test_out_is_a_file_where_a_folder_is_needed_and_the_reverse(tiny_study, tmp_path):
    cohort, run = tiny_study["cohort"], tiny_study["run"]
    (tmp_path / "notes.txt").write_text("mine")
    msg = one_error(dlmvi("survival", cohort / "clinical.csv", "--out", tmp_path / "notes.txt"))
    assert f"{tmp_path / 'notes.txt'} is a file; --out needs a folder" in msg
    msg = one_error(dlmvi("predict", run / "train", run / "cache", "--out", tmp_path))
    assert f"--out {tmp_path} is a folder; give the predictions file to write" in msg
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.docx").write_text("precious")
    msg = one_error(dlmvi("evaluate", run / "predictions.csv", "--out", tmp_path / "mine"))
    assert "holds files that are not an earlier output of this command" in msg
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "mine" / "thesis.docx").is_file()


def test_a_full_disk_is_one_message_and_leaves_nothing(tiny_study, tmp_path):
    cohort, run = tiny_study["cohort"], tiny_study["run"]
    res = dlmvi("survival", cohort / "clinical.csv", "--predictions", run / "predictions.csv",
                "--out", tmp_path / "survival", patch=disk_full(tmp_path))
    msg = one_error(res)
    assert "no space left on the device (disk full or quota reached); free some space or write elsewhere" in msg
    assert _leftovers(tmp_path) == []


def test_a_read_only_place_is_one_message(tiny_study, tmp_path):
    cohort = tiny_study["cohort"]
    msg = one_error(dlmvi("survival", cohort / "clinical.csv", "--out", tmp_path / "ro" / "survival",
                          patch=read_only(tmp_path / "ro")))
    assert f"{tmp_path / 'ro'}: cannot write here (Read-only file system); choose a folder you can write to" in msg


def test_predict_patient_never_prints_a_result_it_cannot_write(tiny_study, tiny_study_model, tmp_path):
    exported = tiny_study_model
    patient = sorted((tiny_study["cohort"] / "images").iterdir())[0]
    (tmp_path / "card").write_text("a file")
    msg = one_error(dlmvi("predict-patient", exported, patient, "--afp", "35", "--out", tmp_path / "card"))
    assert "card is a file; --out needs a folder" in msg
    res = dlmvi("predict-patient", exported, patient, "--afp", "35", "--out", tmp_path / "new",
                patch=disk_full(tmp_path))
    assert "no space left on the device" in one_error(res)
    assert "DL-MVI probability" not in res.stdout  # the result is shown only once written
    assert _leftovers(tmp_path) == ["card"]
    ok = dlmvi("predict-patient", exported, patient, "--afp", "35", "--out", tmp_path / "new")
    assert ok.returncode == 0, ok.stderr
    assert "DL-MVI probability" in ok.stdout and _leftovers(tmp_path / "new") == ["card.html", "result.json"]


# ---- point 7: bad values named precisely -----------------------------------------------------

def test_dl_prob_written_as_percent_is_named(tiny_study, tmp_path):
    cohort, run = tiny_study["cohort"], tiny_study["run"]
    preds = pd.read_csv(run / "predictions.csv", dtype={"patient_id": str, "cohort": str})
    preds["dl_prob"] = (100 * preds["dl_prob"]).round(1)
    preds = preds.drop(columns=["dl_mvi"])
    preds.to_csv(tmp_path / "pct.csv", index=False)
    for args in (("evaluate", tmp_path / "pct.csv", "--out", tmp_path / "ev"),
                 ("clinical", cohort / "clinical.csv", "--predictions", tmp_path / "pct.csv", "--out", tmp_path / "c")):
        msg = one_error(dlmvi(*args))
        assert f"{tmp_path / 'pct.csv'}: column dl_prob must be a probability between 0 and 1 but ranges" in msg
        assert "(these look like percentages: divide by 100)" in msg and "(patient P0" in msg
    assert _leftovers(tmp_path) == ["pct.csv"]


def test_a_latin1_table_says_save_as_utf8_with_the_row(tiny_study, tmp_path):
    table = pd.read_csv(tiny_study["cohort"] / "clinical.csv", dtype=str)
    table["centre"] = "Paris"
    table.loc[4, "centre"] = "Besançon"
    table.to_csv(tmp_path / "clinical.csv", index=False, encoding="latin-1")
    msg = one_error(dlmvi("clinical", tmp_path / "clinical.csv", "--out", tmp_path / "c"))
    assert f"{tmp_path / 'clinical.csv'}: row 6 is not UTF-8 text (byte 0xe7" in msg
    assert "save the table as UTF-8" in msg


# ---- point 4: training needs every class ------------------------------------------------------

@pytest.mark.parametrize("grades, extra, expected", [
    ({"M0": "M1"}, (), "the training set of cohort 2015 (24 labelled patients) has 0 MVI absent, 24 MVI present: "
                       "no patient with MVI absent"),
    ({"M1": "M0", "M2": "M0"}, ("--folds", "2"), "has 24 MVI absent, 0 MVI present: no patient with MVI present"),
    ({"M2": "M1"}, ("--classes", "3"), "has 12 M0, 12 M1, 0 M2: no patient with M2"),
])
def test_training_on_a_missing_class_is_refused_with_the_counts(tiny_cache, tmp_path, grades, extra, expected):
    cache = tmp_path / "cache"
    shutil.copytree(tiny_cache, cache)
    p = pd.read_csv(cache / "patients.csv", dtype=str, keep_default_na=False)
    p["mvi_grade"] = p["mvi_grade"].replace(grades)
    p.to_csv(cache / "patients.csv", index=False)
    msg = one_error(dlmvi("train", cache, "--out", tmp_path / "run", "--develop-cohort", "2015", "--epochs", "1",
                          "--no-progress", *extra))
    assert expected in msg and "add such patients" in msg
    assert not (tmp_path / "run").exists()  # no "final model" with AUC nan


def test_too_few_patients_of_a_class_for_the_folds(tiny_cache, tmp_path):
    msg = one_error(dlmvi("train", tiny_cache, "--out", tmp_path / "run", "--develop-cohort", "2015",
                          "--folds", "20", "--epochs", "1", "--no-progress"))
    assert ("the training set of cohort 2015 has 12 MVI absent, 12 MVI present: 20-fold cross-validation needs "
            "at least 20 patients of each class") in msg and "use --folds 12 or fewer" in msg


# ---- points 2 and 5: unlabelled patients skipped, counted and listed -------------------------

@pytest.fixture(scope="module")
def half_labelled(tiny_study, tmp_path_factory):
    """The tiny study's table with three patients' grades blanked (prospective patients)."""
    table = pd.read_csv(tiny_study["cohort"] / "clinical.csv", dtype=str, keep_default_na=False)
    table.loc[[0, 1, 2], "mvi_grade"] = ""
    path = tmp_path_factory.mktemp("half") / "clinical.csv"
    table.to_csv(path, index=False)
    return path, table.loc[[0, 1, 2], "patient_id"].tolist()


def test_clinical_skips_unlabelled_patients_and_lists_them(tiny_study, half_labelled, tmp_path):
    path, unlabelled = half_labelled
    res = dlmvi("clinical", path, "--predictions", tiny_study["run"] / "predictions.csv", "--develop-cohort", "2015",
                "--bootstrap", "0", "--out", tmp_path / "c")
    assert res.returncode == 0, res.stderr
    assert (f"warning: 3 patients left out of the clinical analysis: 3: no mvi_grade (unlabelled) "
            f"({', '.join(unlabelled)}); full list in {tmp_path / 'c' / 'skipped.csv'}") in res.stderr
    skipped = pd.read_csv(tmp_path / "c" / "skipped.csv", dtype=str)
    assert skipped["patient_id"].tolist() == unlabelled
    summary = json.loads((tmp_path / "c" / "clinical_summary.json").read_text())
    assert summary["n_patients"] == 37


def test_survival_and_evaluate_skip_unlabelled_patients(tiny_study, half_labelled, tmp_path):
    path, unlabelled = half_labelled
    run = tiny_study["run"]
    res = dlmvi("survival", path, "--predictions", run / "predictions.csv", "--out", tmp_path / "s")
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "s" / "survival.json").read_text())
    assert doc["os_by_mvi"]["n"] == 37 and doc["os_by_mvi"]["excluded"] == unlabelled
    assert doc["os_by_dl"]["n"] == doc["os_by_mvi"]["n"] + 3  # DL-MVI groups need no grade: complete cases
    assert "3 patients without a value in mvi_grade left out" in res.stderr
    preds = pd.read_csv(run / "predictions.csv", dtype={"patient_id": str, "cohort": str})
    preds = preds.astype({"label": object})
    preds.loc[preds["patient_id"].isin(unlabelled), ["mvi_grade", "label"]] = ""
    preds.to_csv(tmp_path / "p.csv", index=False)
    res = dlmvi("evaluate", tmp_path / "p.csv", "--out", tmp_path / "ev")
    assert res.returncode == 0, res.stderr
    assert "warning: 3 patients left out of the evaluation: 3: no label (mvi_grade empty: unlabelled)" in res.stderr
    assert sorted(pd.read_csv(tmp_path / "ev" / "skipped.csv", dtype=str)["patient_id"]) == sorted(unlabelled)
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert sum(c["binary"]["n"] for k, c in metrics["cohorts"].items() if k != "all cohorts") == 37


# ---- point 9: the umask ---------------------------------------------------------------------

def test_outputs_follow_the_umask(tiny_study, tmp_path):
    res = dlmvi("survival", tiny_study["cohort"] / "clinical.csv", "--out", tmp_path / "s", umask=0o027)
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o750
    for f in ("survival.json", "os_by_mvi.png", "os_by_mvi.csv", "skipped.csv"):
        assert stat.S_IMODE((tmp_path / "s" / f).stat().st_mode) == 0o640, f
