"""Tests of src/dlmvi/stats/sites.py: figures per cohort and per scanner group."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlmvi.errors import ClinicalTableError, StatisticsWarning
from dlmvi.stats.sites import group_metrics, group_table, read_scanners, write_groups


def _scanners_csv(folder):
    rows = []
    for i in range(6):
        for seq in ("T1", "T1V", "T1D"):
            vendor = "GE" if i < 3 else "Siemens"
            if i == 0 and seq == "T1D":  # one sequence of P000 on another scanner: the majority wins
                vendor = "Siemens"
            rows.append({"patient_id": f"P{i:03d}", "sequence": seq, "vendor": vendor,
                         "model": "Signa" if vendor == "GE" else "Aera", "field_strength": 1.5 if i < 3 else 3,
                         "series_date": "20180101"})
    pd.DataFrame(rows).to_csv(folder / "scanners.csv", index=False)


def test_scanner_of_each_patient_from_scanners_csv_or_clinical_columns(tmp_path):
    _scanners_csv(tmp_path)
    sc = read_scanners(tmp_path)
    assert sc.set_index("patient_id")["scanner"].to_dict() == {
        "P000": "GE Signa 1.5 T", "P001": "GE Signa 1.5 T", "P002": "GE Signa 1.5 T",
        "P003": "Siemens Aera 3 T", "P004": "Siemens Aera 3 T", "P005": "Siemens Aera 3 T"}
    clin = pd.DataFrame({"patient_id": ["A", "B"], "scanner_vendor": ["Philips", None], "field_strength": [3.0, None]})
    assert read_scanners(None, clinical=clin)["scanner"].tolist() == ["Philips 3 T", "unknown scanner"]
    assert read_scanners(None, clinical=clin.drop(columns="field_strength")) is None
    (tmp_path / "scanners.csv").write_text("patient_id,sequence\nP1,T1\n")
    with pytest.raises(ClinicalTableError, match=r"scanners.csv: column\(s\) \['vendor', 'field_strength'\] missing"):
        read_scanners(tmp_path)


def test_group_figures_equal_the_single_group_functions():
    """Each group's AUC/CI is evaluate's DeLong, calibration is rms::val.prob's, and the
    classification counts are those at the threshold."""
    from dlmvi.evaluate.calibration import val_prob
    from dlmvi.evaluate.roc import delong_auc_ci

    rng = np.random.default_rng(2)
    n = 80
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, n), 0.01, 0.99)
    frame = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "cohort": ["2015"] * 50 + ["2018"] * 30,
                          "label": y, "dl_prob": p})
    scanners = pd.DataFrame({"patient_id": frame["patient_id"], "scanner": ["A"] * 20 + ["B"] * 60})
    with pytest.warns(StatisticsWarning, match=r"below 30 patients: scanner A \(n = 20\)"):
        t = group_table(frame, "dl_prob", scanners, threshold=0.5)
    assert t[["group_type", "group", "n", "small"]].values.tolist() == [
        ["cohort", "2015", 50, False], ["cohort", "2018", 30, False], ["scanner", "A", 20, True],
        ["scanner", "B", 60, False]]
    row = t.iloc[3]
    sel = slice(20, 80)
    ref = dict(zip(("auc", "auc_ci_low", "auc_ci_high"), delong_auc_ci(y[sel], p[sel])))
    v = val_prob(y[sel].astype(float), p[sel])
    assert (row["auc"], row["auc_ci_low"], row["auc_ci_high"]) == pytest.approx(
        (ref["auc"], ref["auc_ci_low"], ref["auc_ci_high"]), abs=1e-12)
    assert (row["calibration_intercept"], row["calibration_slope"], row["brier"]) == pytest.approx(
        (v["calibration_intercept"], v["calibration_slope"], v["brier"]), abs=1e-12)
    pred = p[sel] >= 0.5
    assert row["sensitivity"] == pytest.approx((pred & (y[sel] == 1)).sum() / (y[sel] == 1).sum())
    one_class = group_metrics([1, 1, 1], [0.2, 0.6, 0.9], threshold=0.5)
    assert one_class["n"] == 3 and np.isnan(one_class["auc"]) and np.isnan(one_class["calibration_slope"])


def test_written_groups(tmp_path):
    t = pd.DataFrame([{"group_type": "cohort", "group": "2015", "n": 10, "small": True}])
    doc = write_groups(t, tmp_path, scanner_source="scanners.csv", min_size=30, synthetic=True)
    assert json.loads((tmp_path / "groups.json").read_text())["groups"][0]["group"] == "2015"
    assert doc["min_group_size"] == 30 and (tmp_path / "groups.csv").is_file()


def test_cli_evaluate_per_scanner_and_its_wrong_inputs(tmp_path):
    """`dlmvi evaluate PRED --cohort COHORT` (a subprocess, as a user runs it): groups.csv per cohort
    and per scanner with the counts; a --cohort that is not a cohort folder and a scanners.csv
    without its columns stop with one message before anything is written; a cohort recording no
    scanner gives a warning and the per-cohort figures."""
    import subprocess
    import sys

    rng = np.random.default_rng(1)
    y = np.array([0, 1, 0, 1, 0, 1])
    pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(6)], "cohort": "2018",
                  "mvi_grade": np.where(y == 1, "M1", "M0"), "label": y,
                  "dl_prob": np.clip(0.3 + 0.3 * y + rng.normal(0, 0.2, 6), 0.01, 0.99)}).to_csv(tmp_path / "p.csv",
                                                                                                 index=False)
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    _scanners_csv(cohort)

    def evaluate(out, *extra):
        return subprocess.run([sys.executable, "-m", "dlmvi.cli", "evaluate", str(tmp_path / "p.csv"), "--out",
                               str(tmp_path / out), *extra], capture_output=True, text=True, timeout=300)

    r = evaluate("ev", "--cohort", str(cohort))
    assert r.returncode == 0, r.stderr
    g = pd.read_csv(tmp_path / "ev" / "groups.csv")
    assert g.set_index("group")["n"].to_dict() == {"2018": 6, "GE Signa 1.5 T": 3, "Siemens Aera 3 T": 3}
    assert "scanner GE Signa 1.5 T: n = 3 (small)" in r.stdout
    r = evaluate("ev2", "--cohort", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "not a cohort folder" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "ev2").exists()
    (cohort / "scanners.csv").write_text("patient_id,model\nP000,x\n")
    r = evaluate("ev3", "--cohort", str(cohort))
    assert r.returncode == 2 and "scanners.csv: column(s) ['vendor', 'field_strength'] missing" in r.stderr
    assert not (tmp_path / "ev3").exists()
    (cohort / "scanners.csv").unlink()
    (cohort / "clinical.csv").write_text("patient_id,cohort,mvi_grade\nP000,2018,M0\n")
    r = evaluate("ev4", "--cohort", str(cohort))
    assert r.returncode == 0 and "records no scanner" in r.stderr
    assert set(pd.read_csv(tmp_path / "ev4" / "groups.csv")["group_type"]) == {"cohort"}
