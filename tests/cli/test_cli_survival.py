"""Tests of `dlmvi survival` and dlmvi.stats.survival_pipeline.run_survival.

The table is the 60-patient reference data of tests/stats/test_survival.py (R numbers there);
here OS uses it as is and RFS uses times * 0.5 (same ranks, so the same log-rank and Cox
numbers, medians halved).
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from dlmvi.cli import run_cli
from dlmvi.constants import SYNTHETIC_NOTICE
from dlmvi.errors import ClinicalTableError, StatisticsError, StatisticsWarning
from dlmvi.stats.survival_pipeline import run_survival

TIME = [12, 18, 21, 21, 54, 18, 24, 3, 21, 33, 69, 45, 33, 27, 24, 12, 36, 15, 27, 3, 33, 45,
        27, 6, 36, 18, 15, 18, 33, 15, 3, 60, 51, 54, 6, 69, 3, 36, 3, 15, 24, 54, 24, 18, 39,
        18, 48, 51, 12, 15, 39, 39, 12, 24, 3, 36, 27, 36, 15, 15]
EVENT = [0, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1,
         1, 1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1,
         1, 1]
GRADE = ["M1", "M2", "M2", "M0", "M0", "M2", "M0", "M2", "M2", "M1", "M0", "M0", "M0", "M1",
         "M1", "M1", "M2", "M2", "M1", "M2", "M0", "M0", "M1", "M0", "M0", "M1", "M1", "M2",
         "M1", "M1", "M1", "M0", "M0", "M0", "M1", "M0", "M0", "M0", "M2", "M0", "M0", "M2",
         "M1", "M2", "M1", "M1", "M0", "M1", "M1", "M2", "M0", "M1", "M0", "M0", "M0", "M0",
         "M2", "M0", "M2", "M1"]
IDS = [f"{i:03d}" for i in range(1, 61)]  # leading zeros must survive


def _table(**extra):
    frame = pd.DataFrame({
        "patient_id": IDS, "cohort": "2015", "mvi_grade": GRADE,
        "os_months": TIME, "os_event": EVENT,
        "rfs_months": [t * 0.5 for t in TIME], "rfs_event": EVENT,
        "edmondson": [i % 2 for i in range(60)],
    })
    for key, value in extra.items():
        frame[key] = value
    return frame


@pytest.fixture
def files(tmp_path):
    table = tmp_path / "clinical.csv"
    _table().to_csv(table, index=False)
    preds = tmp_path / "predictions.csv"
    # DL-MVI equal to pathological MVI except the first 10 patients (flipped); patient 060
    # has no prediction.
    dl = [int(g != "M0") if i >= 10 else int(g == "M0") for i, g in enumerate(GRADE)]
    pd.DataFrame({"patient_id": IDS[:-1], "dl_prob": 0.5, "dl_mvi": dl[:-1]}).to_csv(preds, index=False)
    return table, preds


def test_cli_writes_json_figures_and_curves(files, tmp_path, capsys):
    table, preds = files
    out = tmp_path / "out"
    code = run_cli(["survival", str(table), "--out", str(out), "--predictions", str(preds),
                    "--group", "edmondson"])
    assert code == 0
    result = json.loads((out / "survival.json").read_text())
    assert result["analyses"] == ["os_by_mvi", "rfs_by_mvi", "os_by_dl", "rfs_by_dl",
                                  "os_by_edmondson", "rfs_by_edmondson"]
    assert result["synthetic"] is False
    for name in result["analyses"]:
        assert (out / f"{name}.png").stat().st_size > 10_000
        curve = pd.read_csv(out / f"{name}.csv")
        assert list(curve.columns[:6]) == ["group", "time", "n_risk", "n_event", "n_censor", "survival"]
        assert result[name]["figure"] == f"{name}.png"

    os_mvi = result["os_by_mvi"]
    # R numbers: see tests/stats/test_survival.py (survfit / survdiff / coxph on the same data).
    assert os_mvi["groups"]["absent"] == {"n": 25, "events": 7, "median": None, "median_ci": [None, None]}
    assert os_mvi["groups"]["present"] == {"n": 35, "events": 28, "median": 18.0, "median_ci": [18.0, 33.0]}
    assert os_mvi["logrank"]["chi2"] == pytest.approx(17.2014886842827, rel=1e-6)
    assert os_mvi["logrank"]["p"] == pytest.approx(3.3617281461824e-05, rel=1e-6)
    assert os_mvi["cox"]["hr"] == pytest.approx(5.21062522310991, rel=1e-6)
    assert os_mvi["cox"]["ci"] == pytest.approx([2.22329123019817, 12.2119022676526], rel=1e-6)
    assert os_mvi["cox"]["p"] == pytest.approx(0.00014551432147882, rel=1e-6)
    rfs_mvi = result["rfs_by_mvi"]
    assert rfs_mvi["groups"]["present"]["median_ci"] == [9.0, 16.5]
    assert rfs_mvi["cox"]["hr"] == pytest.approx(5.21062522310991, rel=1e-6)

    os_dl = result["os_by_dl"]
    assert os_dl["excluded"] == ["060"] and os_dl["n"] == 59
    assert os_dl["groups"]["absent"]["n"] + os_dl["groups"]["present"]["n"] == 59
    assert any("060" in note for note in os_dl["notes"])
    assert set(result["os_by_edmondson"]["groups"]) == {"0", "1"}
    assert result["os_by_edmondson"]["cox"]["comparison"] == "1"

    captured = capsys.readouterr()
    assert "os_by_mvi: absent n=25 events=7 median=not reached; present n=35" in captured.out
    assert "warning: os_by_dl: 1 patients without a value in dl_mvi left out: 060" in captured.err


def test_without_predictions_dl_entries_are_null(files, tmp_path):
    table, _ = files
    with pytest.warns(StatisticsWarning, match="no DL-MVI predictions"):
        result = run_survival(table, tmp_path / "out")
    assert result["os_by_dl"] is None and result["rfs_by_dl"] is None
    assert "--predictions" in result["notes"]["os_by_dl"]
    assert result["os_by_mvi"]["n"] == 60


def test_dl_mvi_column_of_the_table_is_used(tmp_path):
    frame = _table(dl_mvi=[int(g != "M0") for g in GRADE])
    result = run_survival(frame, tmp_path / "out")
    assert result["os_by_dl"]["cox"]["hr"] == pytest.approx(5.21062522310991, rel=1e-6)


@pytest.mark.filterwarnings("ignore::dlmvi.errors.StatisticsWarning")
def test_synthetic_cohort_is_labelled(files, tmp_path):
    table, preds = files
    (table.parent / "cohort.json").write_text(json.dumps({"synthetic": True}))
    result = run_survival(table, tmp_path / "out", predictions=preds)
    assert result["synthetic"] is True and result["notice"] == SYNTHETIC_NOTICE
    assert pd.read_csv(tmp_path / "out" / "os_by_mvi.csv")["synthetic"].all()


def test_dates_with_censor_date(tmp_path, capsys):
    frame = pd.DataFrame({
        "patient_id": ["P1", "P2", "P3", "P4", "P5", "P6"],
        "cohort": "2018",
        "mvi_grade": ["M0", "M0", "M0", "M1", "M2", "M1"],
        "surgery_date": ["2018-01-01"] * 6,
        "recurrence_date": ["", "2019-01-01", "", "2018-07-01", "2018-04-01", "2021-03-01"],
        "death_date": ["", "", "2020-01-01", "2019-01-01", "", "2021-06-01"],
        "last_followup_date": ["2021-12-31", "2020-06-01", "2019-12-01", "2018-12-01",
                               "2020-12-01", "2021-05-01"],
    })
    path = tmp_path / "clinical.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "out"
    assert run_cli(["survival", str(path), "--out", str(out), "--censor-date", "2020-12-31"]) == 0
    result = json.loads((out / "survival.json").read_text())
    assert result["censor_date"] == "2020-12-31"
    # OS: P3 dies 2020-01-01 (730 days) and P4 2019-01-01 (365 days); P6's death is after the
    # censor date; everyone else is censored at follow-up or at 2020-12-31 (1095 days).
    os_mvi = result["os_by_mvi"]
    assert os_mvi["groups"]["absent"]["events"] == 1 and os_mvi["groups"]["present"]["events"] == 1
    curve = pd.read_csv(out / "os_by_mvi.csv")
    absent = curve[curve["group"] == "absent"]
    np.testing.assert_allclose(absent["time"], np.array([730, 882, 1095]) / 30.4375)
    rfs = result["rfs_by_mvi"]
    assert rfs["groups"]["present"]["events"] == 2  # P4 (recurrence), P5; P6's is after 2020
    assert rfs["groups"]["present"]["median"] == pytest.approx(181 / 30.4375)


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("os_event", 2, "patient 004, os_event: value 2 is not 0 or 1"),
        ("os_months", -3, "patient 004, os_months: negative follow-up -3 months"),
        ("rfs_months", "abc", r"patient 004, rfs_months: not a number: 'abc' \(row 5\)"),
    ],
)
def test_cli_bad_survival_values_name_the_patient(tmp_path, capsys, column, value, message):
    frame = _table()
    frame[column] = frame[column].astype(object)
    frame.loc[3, column] = value
    path = tmp_path / "clinical.csv"
    frame.to_csv(path, index=False)
    assert run_cli(["survival", str(path), "--out", str(tmp_path / "out")]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out" / "survival.json").exists()


def test_cli_bad_censor_date(files, tmp_path, capsys):
    table, _ = files
    assert run_cli(["survival", str(table), "--out", str(tmp_path / "o"), "--censor-date", "31/12/2020"]) == 2
    assert "--censor-date '31/12/2020' is not a date; write it as YYYY-MM-DD" in capsys.readouterr().err


def test_censor_date_needs_dates(tmp_path):
    with pytest.raises(ClinicalTableError, match="a censor date needs dates"):
        run_survival(_table(), tmp_path / "o", censor_date="2020-12-31")


def test_bad_group_columns(tmp_path):
    with pytest.raises(ClinicalTableError, match="--group column 'nope' is not in the table"):
        run_survival(_table(), tmp_path / "o", groups=["nope"])
    with pytest.raises(StatisticsError, match="has 17 different values.*Dichotomise"):
        run_survival(_table(), tmp_path / "o", groups=["os_months"])


def test_bad_predictions(tmp_path):
    preds = pd.DataFrame({"patient_id": ["001", "001"], "dl_mvi": [0, 1]})
    with pytest.raises(ClinicalTableError, match=r"more than once: row 2 \(patient 001\), row 3"):
        run_survival(_table(), tmp_path / "o", predictions=preds)
    preds = pd.DataFrame({"patient_id": IDS, "dl_mvi": [2] + [0] * 59})
    with pytest.raises(ClinicalTableError, match=r"dl_mvi must be 0 .* row 2 \(patient 001\)"):
        run_survival(_table(), tmp_path / "o", predictions=preds)
    assert not (tmp_path / "o").exists()


def test_missing_survival_time_leaves_the_patient_out_of_that_analysis_only(tmp_path, capsys):
    """Complete cases per analysis, as R. Reference (R 4, survival)::

        d <- data.frame(time, event, mvi)   # the 60 patients above, OS
        d$time[4] <- NA                     # patient 004: os_months empty
        survdiff(Surv(time, event) ~ mvi, data = d)    # n=59: chisq 18.3719819676775
        exp(coef(coxph(Surv(time, event) ~ mvi, data = d, ties = "efron")))  # 5.98318768724557
        survfit(Surv(time, event) ~ mvi, data = d)     # absent 24 / 6 events; present 35 / 28
    """
    frame = _table()
    frame["os_months"] = frame["os_months"].astype(object)
    frame.loc[3, "os_months"] = ""  # patient 004
    path = tmp_path / "clinical.csv"
    frame.to_csv(path, index=False)
    assert run_cli(["survival", str(path), "--out", str(tmp_path / "out")]) == 0
    doc = json.loads((tmp_path / "out" / "survival.json").read_text())
    os_mvi = doc["os_by_mvi"]
    assert os_mvi["n"] == 59 and os_mvi["excluded"] == ["004"]
    assert os_mvi["left_out"] == [{"patient_id": "004", "reason": "no os_months or os_event"}]
    assert (os_mvi["groups"]["absent"]["n"], os_mvi["groups"]["absent"]["events"]) == (24, 6)
    assert (os_mvi["groups"]["present"]["n"], os_mvi["groups"]["present"]["events"]) == (35, 28)
    assert os_mvi["logrank"]["chi2"] == pytest.approx(18.3719819676775, rel=1e-6)
    assert os_mvi["cox"]["hr"] == pytest.approx(5.98318768724557, rel=1e-6)
    assert doc["rfs_by_mvi"]["n"] == 60 and doc["rfs_by_mvi"]["excluded"] == []  # RFS is complete
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", dtype=str)
    assert skipped.to_dict("records") == [{"patient_id": "004", "reason": "no os_months or os_event",
                                          "analysis": "os_by_mvi"}]
    err = capsys.readouterr().err
    assert "1 patients without os_months or os_event left out (complete cases): 004" in err
    assert "full list in" in err and "skipped.csv" in err


def test_group_without_patients_gives_null_tests_but_the_rest_goes_on(tmp_path):
    frame = _table(mvi_grade="M0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_survival(frame, tmp_path / "o", groups=["edmondson"])
    entry = result["os_by_mvi"]
    assert entry["groups"]["present"]["n"] == 0
    assert entry["logrank"] is None and entry["cox"] is None
    assert result["os_by_edmondson"]["logrank"] is not None
    assert any("group 'present' has no patients" in str(w.message) for w in caught)


def test_survival_reads_the_table_with_the_column_map(tmp_path):
    """`dlmvi survival --columns`: own names, ';' and decimal commas give the plain numbers."""
    frame = _table().rename(columns={"patient_id": "ID", "os_months": "OS (mo)", "mvi_grade": "grade"})
    frame["OS (mo)"] = [f"{t},0" for t in TIME]
    frame["rfs_months"] = [repr(t * 0.5).replace(".", ",") for t in TIME]
    frame.to_csv(tmp_path / "clinical.csv", sep=";", index=False)
    (tmp_path / "map.toml").write_text('[columns]\nID = "patient_id"\n"OS (mo)" = "os_months"\ngrade = "mvi_grade"\n')
    assert run_cli(["survival", str(tmp_path / "clinical.csv"), "--out", str(tmp_path / "out"),
                    "--columns", str(tmp_path / "map.toml")]) == 0
    doc = json.loads((tmp_path / "out" / "survival.json").read_text())
    assert doc["os_by_mvi"]["logrank"]["chi2"] == pytest.approx(17.2014886842827, rel=1e-6)  # R, as above
    assert doc["os_by_mvi"]["excluded"] == []
