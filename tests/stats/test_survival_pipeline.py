"""Tests of dlmvi.stats.survival_pipeline's additions to survival.json (issue 16.5), against R.

Data: tests/r_reference.py (ties, censoring at event times, two missing tumour sizes), with
dl_mvi = g, AFP 30 ng/mL where afp = 1 (else 10), Edmondson grade = ed. R code in each docstring
(survival 3.5-3).
"""

import json
import warnings

import numpy as np
import pytest

from dlmvi.errors import ClinicalTableError, StatisticsWarning
from dlmvi.stats.survival_pipeline import SurvivalResult, analyse_survival
from r_reference import survival_frame


@pytest.fixture
def table():
    d = survival_frame()
    return d.assign(patient_id=[f"P{i + 1:02d}" for i in range(60)],
                    mvi_grade=np.where(d["ed"] == 1, "M1", "M0"), os_months=d["time"],
                    os_event=d["status"].astype(int), rfs_months=d["time"],
                    rfs_event=d["status"].astype(int), dl_mvi=d["g"].astype(int),
                    afp=np.where(d["afp"] == 1, 30.0, 10.0), tumor_size_cm=d["size"],
                    edmondson=d["ed"].astype(int)).drop(columns=["time", "status", "g", "size", "ed"])


def test_multivariable_cox_and_per_analysis_keys_against_R(table, tmp_path):
    """coxph(Surv(time, status) ~ g + afp + size + ed, d) on 58 complete cases, 46 events:
    HR g 3.748991830123758 (1.755474980820025-8.00634580150455) p 0.000641086414500781;
    afp 2.514466634948969 (1.329545403300448-4.75541673310034) p 0.004567356328884785;
    size 0.927663757311398; ed 0.527442709024518 (see tests/stats/test_cox.py).
    os_by_dl = coxph(Surv(time, status) ~ g): summary()$sctest 9.55868522904176210;
    concordance 0.599865047233468 (se 0.0408527476537531); cox.zph chisq 0.95522445904213;
    summary(survfit(...), times = 12)$surv for g = 1: 0.453781512605042. rtol 1e-6.
    """
    with pytest.warns(StatisticsWarning, match="2 patients without complete covariates left out: P05, P17"):
        res = analyse_survival(table)
    m = res.doc["multivariable_cox_os"]
    assert list(m["terms"]) == ["dl_mvi", "afp > 20", "tumor_size_cm", "edmondson"]
    assert (m["n"], m["events"], m["excluded"], m["missing"]) == (58, 46, ["P05", "P17"], {"tumor_size_cm": 2})
    assert m["terms"]["dl_mvi"]["hr"] == pytest.approx(3.748991830123758, rel=1e-6)
    assert m["terms"]["dl_mvi"]["ci"] == pytest.approx([1.755474980820025, 8.00634580150455], rel=1e-6)
    assert m["terms"]["dl_mvi"]["p"] == pytest.approx(0.000641086414500781, rel=1e-6)
    assert m["terms"]["afp > 20"]["hr"] == pytest.approx(2.514466634948969, rel=1e-6)
    assert m["terms"]["tumor_size_cm"]["hr"] == pytest.approx(0.927663757311398, rel=1e-6)
    assert m["terms"]["edmondson"]["hr"] == pytest.approx(0.527442709024518, rel=1e-6)
    assert res.doc["multivariable_cox_rfs"]["terms"]["dl_mvi"]["hr"] == pytest.approx(3.748991830123758, rel=1e-6)
    a = res.doc["os_by_dl"]
    assert a["cox"]["score_test"]["chi2"] == pytest.approx(9.55868522904176210, rel=1e-6)
    assert a["concordance"] == pytest.approx({"c": 0.599865047233468, "se": 0.0408527476537531}, rel=1e-6)
    assert a["ph_test"]["global"]["chisq"] == pytest.approx(0.95522445904213, rel=1e-6)
    assert a["rates"]["times"] == [12.0, 36.0, 60.0]
    assert a["rates"]["groups"]["present"][0]["survival"] == pytest.approx(0.453781512605042, rel=1e-9)
    assert a["rates"]["groups"]["present"][1] is None
    assert a["median_follow_up"]["median"] == 55.0
    # the JSON keeps every earlier key (backward compatible) and reads back
    for key in ("n", "events", "overall", "reference", "groups", "logrank", "cox", "notes"):
        assert key in a
    for key in ("reference", "comparison", "hr", "ci", "p", "p_test", "ties", "conf_level"):
        assert key in a["cox"]
    res.write(tmp_path)
    doc = SurvivalResult.read(tmp_path).doc
    assert doc["multivariable_cox_os"]["excluded"] == ["P05", "P17"]
    assert json.loads((tmp_path / "survival.json").read_text())["os_by_mvi"]["rates"]["overall"][0]["n_risk"] == 33


def test_multivariable_configurable_and_reasons(table):
    """adjust_for picks the covariates; without DL-MVI the model is null with the reason."""
    res = analyse_survival(table, adjust_for=["afp"])
    assert list(res.doc["multivariable_cox_os"]["terms"]) == ["dl_mvi", "afp > 20"]
    assert res.doc["multivariable_cox_os"]["n"] == 60
    with pytest.raises(ClinicalTableError, match=r"covariates \['ggt'\]"):
        analyse_survival(table, adjust_for=["ggt"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = analyse_survival(table.drop(columns="dl_mvi"))
    assert any("multivariable_cox_os: no DL-MVI predictions" in str(w.message) for w in caught)
    assert res.doc["multivariable_cox_os"] is None
    assert "no DL-MVI" in res.doc["notes"]["multivariable_cox_os"]
    # only the covariates present are used by default
    res = analyse_survival(table.drop(columns=["tumor_size_cm", "edmondson"]))
    assert list(res.doc["multivariable_cox_os"]["terms"]) == ["dl_mvi", "afp > 20"]
