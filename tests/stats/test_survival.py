"""Tests of dlmvi.stats.survival against R's survival package (3.5.3).

The reference data set (60 patients, times in months rounded up to multiples of 3 so that
there are many ties, 25 censored) is written out below; the R code that produced each number
is in the docstring of the test that uses it. Tolerance: 1e-6 relative (1e-9 absolute for
exact values such as medians).
"""

import numpy as np
import pandas as pd
import pytest

from dlmvi.errors import ClinicalTableError, StatisticsError, StatisticsWarning
from dlmvi.stats.survival import (
    DAYS_PER_MONTH,
    compare_survival,
    cox_hazard_ratios,
    durations_from_dates,
    km_curve,
    logrank,
    summarize_group,
)

# R: source("data.R") defines these three vectors exactly as here.
TIME = np.array([
    12, 18, 21, 21, 54, 18, 24, 3, 21, 33, 69, 45, 33, 27, 24, 12, 36, 15, 27, 3, 33, 45,
    27, 6, 36, 18, 15, 18, 33, 15, 3, 60, 51, 54, 6, 69, 3, 36, 3, 15, 24, 54, 24, 18, 39,
    18, 48, 51, 12, 15, 39, 39, 12, 24, 3, 36, 27, 36, 15, 15], dtype=float)
EVENT = np.array([
    0, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1,
    1, 1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1,
    1, 1])
GRADE = np.array([
    "M1", "M2", "M2", "M0", "M0", "M2", "M0", "M2", "M2", "M1", "M0", "M0", "M0", "M1",
    "M1", "M1", "M2", "M2", "M1", "M2", "M0", "M0", "M1", "M0", "M0", "M1", "M1", "M2",
    "M1", "M1", "M1", "M0", "M0", "M0", "M1", "M0", "M0", "M0", "M2", "M0", "M0", "M2",
    "M1", "M2", "M1", "M1", "M0", "M1", "M1", "M2", "M0", "M1", "M0", "M0", "M0", "M0",
    "M2", "M0", "M2", "M1"])
MVI = np.where(GRADE == "M0", "absent", "present")
REL = 1e-6


def test_reference_data_is_the_r_data():
    assert len(TIME) == len(EVENT) == len(GRADE) == 60
    assert EVENT.sum() == 35 and (GRADE == "M0").sum() == 25


def test_km_medians_against_r():
    """R:
    d <- data.frame(time, event, grade, mvi = as.integer(grade != "M0"))
    print(survfit(Surv(time, event) ~ mvi, data = d))
    #        n events median 0.95LCL 0.95UCL
    # mvi=0 25      7     NA      NA      NA
    # mvi=1 35     28     18      18      33
    print(survfit(Surv(time, event) ~ 1, data = d))      # 60 35 33 21 NA
    print(survfit(Surv(time, event) ~ grade, data = d))
    # grade=M0 25  7 NA NA NA;  grade=M1 20 15 24 18 NA;  grade=M2 15 13 18 15 NA
    """
    res = compare_survival(TIME, EVENT, MVI, levels=["absent", "present"])
    absent, present = res.groups
    assert (absent.n, absent.events, absent.median, absent.median_ci) == (25, 7, None, (None, None))
    assert (present.n, present.events) == (35, 28)
    assert present.median == pytest.approx(18, abs=1e-9)
    assert present.median_ci == pytest.approx((18, 33), abs=1e-9)
    assert res.overall.median == 33 and res.overall.median_ci == (21, None)

    res3 = compare_survival(TIME, EVENT, GRADE)
    got = {g.label: (g.n, g.events, g.median, g.median_ci) for g in res3.groups}
    assert got == {
        "M0": (25, 7, None, (None, None)),
        "M1": (20, 15, 24, (18, None)),   # upper limit not reached
        "M2": (15, 13, 18, (15, None)),
    }


def test_km_log_band_against_r():
    """R (conf.type = "log", the default):
    s <- summary(survfit(Surv(time, event) ~ 1, data = d[d$mvi == 1, ]), censored = TRUE)
    cbind(s$time, s$n.risk, s$n.event, s$surv, s$lower, s$upper); s$n.censor
    """
    r = np.array([
        [3, 35, 4, 0.8857142857142857, 0.7863405494156190, 0.997646371538862],
        [6, 31, 1, 0.8571428571428571, 0.7487118786614555, 0.981277175493066],
        [12, 30, 2, 0.7999999999999999, 0.6778761065924116, 0.944125325816823],
        [15, 27, 5, 0.6518518518518518, 0.5104685690546190, 0.832393731017794],
        [18, 21, 5, 0.4966490299823633, 0.3528066064929674, 0.699137301974925],
        [21, 15, 1, 0.4635390946502057, 0.3209072231021356, 0.669565771041389],
        [24, 13, 2, 0.3922253877809433, 0.2539514626774176, 0.605788024207318],
        [27, 11, 3, 0.2852548274770497, 0.1620282386798799, 0.502198365309180],
        [33, 7, 1, 0.2445041378374711, 0.1287461558550795, 0.464342201307648],
        [36, 5, 1, 0.1956033102699769, 0.0899510818705463, 0.425349581049352],
        [39, 4, 2, 0.0978016551349885, 0.0280058755969041, 0.341541321000533],
        [51, 2, 0, 0.0978016551349885, 0.0280058755969041, 0.341541321000533],
        [54, 1, 1, 0.0, np.nan, np.nan],
    ])
    curve = km_curve(TIME[MVI == "present"], EVENT[MVI == "present"])
    np.testing.assert_array_equal(curve["time"], r[:, 0])
    np.testing.assert_array_equal(curve["n_risk"], r[:, 1])
    np.testing.assert_array_equal(curve["n_event"], r[:, 2])
    np.testing.assert_allclose(curve["survival"], r[:, 3], rtol=1e-12)
    np.testing.assert_allclose(curve["ci_lower"], r[:, 4], rtol=1e-12)  # NaN where S = 0, as R's NA
    np.testing.assert_allclose(curve["ci_upper"], r[:, 5], rtol=1e-12)
    assert curve["n_censor"].tolist() == [0, 0, 1, 1, 1, 1, 0, 1, 1, 0, 0, 1, 0]  # s$n.censor


def test_median_on_a_flat_half_is_the_midpoint_like_r():
    """R: print(survfit(Surv(1:6, rep(1, 6)) ~ 1))   # median 3.5, 0.95LCL 2, 0.95UCL NA"""
    g = summarize_group(np.arange(1, 7.0), np.ones(6, dtype=int))
    assert g.median == 3.5
    assert g.median_ci == (2.0, None)


def test_logrank_against_r():
    """R:
    sd <- survdiff(Surv(time, event) ~ mvi, data = d)
    sd$chisq; pchisq(sd$chisq, 1, lower.tail = FALSE)   # 17.2014886842827  3.3617281461824e-05
    sd3 <- survdiff(Surv(time, event) ~ grade, data = d)
    sd3$chisq; pchisq(sd3$chisq, 2, lower.tail = FALSE) # 18.3863383545456  0.000101731946712289
    """
    two = logrank(TIME, EVENT, MVI)
    assert two["chi2"] == pytest.approx(17.2014886842827, rel=REL)
    assert two["p"] == pytest.approx(3.3617281461824e-05, rel=REL)
    assert two["df"] == 1
    three = logrank(TIME, EVENT, GRADE)
    assert three["chi2"] == pytest.approx(18.3863383545456, rel=REL)
    assert three["p"] == pytest.approx(0.000101731946712289, rel=REL)
    assert three["df"] == 2


def test_cox_against_r_efron():
    """R (ties = "efron" is coxph's default; p is the Wald Pr(>|z|) of summary(coxph)):
    cx <- coxph(Surv(time, event) ~ mvi, data = d)
    exp(coef(cx)); exp(confint(cx)); summary(cx)$coefficients[, "Pr(>|z|)"]
    # 5.21062522310991   2.22329123019817 12.2119022676526   0.00014551432147882
    """
    cox = cox_hazard_ratios(TIME, EVENT, MVI, ["absent", "present"])
    assert cox["reference"] == "absent" and cox["comparison"] == "present"
    assert cox["hr"] == pytest.approx(5.21062522310991, rel=REL)
    assert cox["ci"] == pytest.approx([2.22329123019817, 12.2119022676526], rel=REL)
    assert cox["p"] == pytest.approx(0.00014551432147882, rel=REL)
    assert cox["ties"] == "efron" and cox["p_test"] == "wald"


def test_cox_three_levels_against_r():
    """R:
    cx3 <- coxph(Surv(time, event) ~ grade, data = d)
    exp(coef(cx3))       # M1 4.51498801507337  M2 6.34127853927881
    exp(confint(cx3))    # M1 1.80210178873403 11.3118564687607; M2 2.46908398746887 16.2861262382331
    summary(cx3)$coefficients[, "Pr(>|z|)"]   # 0.001296346895524432 0.000123996520734663
    w <- t(coef(cx3)) %*% solve(vcov(cx3)) %*% coef(cx3)   # 15.465662346507
    pchisq(w, 2, lower.tail = FALSE)                       # 0.000438201734201587
    """
    cox = cox_hazard_ratios(TIME, EVENT, GRADE, ["M0", "M1", "M2"])
    assert cox["hr"]["M1"] == pytest.approx(4.51498801507337, rel=REL)
    assert cox["hr"]["M2"] == pytest.approx(6.34127853927881, rel=REL)
    assert cox["ci"]["M1"] == pytest.approx([1.80210178873403, 11.3118564687607], rel=REL)
    assert cox["ci"]["M2"] == pytest.approx([2.46908398746887, 16.2861262382331], rel=REL)
    assert cox["p"]["M1"] == pytest.approx(0.001296346895524432, rel=REL)
    assert cox["p"]["M2"] == pytest.approx(0.000123996520734663, rel=REL)
    assert cox["overall_chi2"] == pytest.approx(15.465662346507, rel=REL)
    assert cox["overall_p"] == pytest.approx(0.000438201734201587, rel=REL)


def test_group_without_events_keeps_logrank_and_drops_cox():
    """R:
    t4 <- c(2, 3, 3, 5, 7, 8, 8, 10, 4, 6, 9, 12); e4 <- c(1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0)
    g4 <- c(rep("a", 8), rep("b", 4))
    sd4 <- survdiff(Surv(t4, e4) ~ g4)     # chisq 3.79540740018141, p 0.0513933649499889
    survfit(Surv(t4, e4) ~ g4)             # a: 8 6 7 5 NA;  b: 4 0 NA NA NA
    """
    t4 = [2, 3, 3, 5, 7, 8, 8, 10, 4, 6, 9, 12]
    e4 = [1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    g4 = ["a"] * 8 + ["b"] * 4
    with pytest.warns(StatisticsWarning, match="group 'b' has no events"):
        res = compare_survival(t4, e4, g4)
    assert res.logrank["chi2"] == pytest.approx(3.79540740018141, rel=REL)
    assert res.logrank["p"] == pytest.approx(0.0513933649499889, rel=REL)
    assert res.cox is None
    a, b = res.groups
    assert (a.n, a.events, a.median, a.median_ci) == (8, 6, 7, (5, None))
    assert (b.n, b.events, b.median, b.median_ci) == (4, 0, None, (None, None))
    with pytest.raises(StatisticsError, match="group 'b' has no events"):
        cox_hazard_ratios(np.array(t4, float), np.array(e4), g4, ["a", "b"])


def test_group_without_patients_gives_null_tests():
    with pytest.warns(StatisticsWarning, match="group 'absent' has no patients|fewer than two"):
        res = compare_survival([1, 2, 3], [1, 0, 1], ["present"] * 3, levels=["absent", "present"])
    assert res.groups[0].n == 0 and res.groups[0].median is None
    assert res.logrank is None and res.cox is None
    assert res.to_dict()["groups"]["absent"] == {"n": 0, "events": 0, "median": None,
                                                 "median_ci": [None, None]}


def test_no_events_at_all():
    with pytest.warns(StatisticsWarning) as record:
        res = compare_survival([1, 2, 3, 4], [0, 0, 0, 0], ["a", "a", "b", "b"])
    assert [str(w.message) for w in record] == [
        "group 'a' has no events", "group 'b' has no events",
        "no events in any group: no log-rank test or Cox model",
    ]
    assert res.logrank is None and res.cox is None


@pytest.mark.parametrize(
    "times, events, message",
    [
        ([1.0, -2.0, 3.0], [1, 0, 1], r"time is negative for patient P2 \(row 2\)"),
        ([1.0, np.nan, 3.0], [1, 0, 1], r"time is missing for patient P2 \(row 2\)"),
        ([1.0, "abc", 3.0], [1, 0, 1], r"time is not a finite number for patient P2"),
        ([1.0, 2.0, 3.0], [1, 2, 1], r"event must be 0 \(censored\) or 1 \(event\) but is 2 for patient P2"),
        ([1.0, 2.0, 3.0], [1, "yes", np.nan], r"but is .*'yes'.* patient P2 \(row 2\), patient P3 \(row 3\)"),
    ],
)
def test_bad_times_and_events_name_the_rows(times, events, message):
    with pytest.raises(ClinicalTableError, match=message):
        compare_survival(times, events, ["a", "b", "a"], ids=["P1", "P2", "P3"])


def test_boolean_events_are_accepted():
    res = compare_survival([1, 2, 3, 4, 5, 6], [True, False, True, True, False, True], list("ababab"))
    assert res.overall.events == 4 and res.cox is not None


# --------------------------------------------------------------------------------------------
# Dates


def _dates_table():
    return pd.DataFrame({
        "patient_id": ["P1", "P2", "P3", "P4"],
        "surgery_date": ["2018-01-01", "2018-03-15", "2018-06-01", "2019-01-01"],
        "recurrence_date": ["2018-07-01", "", "2021-05-01", "2019-12-01"],
        "death_date": ["2019-01-01", "", "", "2022-01-01"],
        "last_followup_date": ["2018-12-01", "2020-06-30", "2021-06-01", "2021-01-01"],
    })


def test_days_per_month():
    assert DAYS_PER_MONTH == 365.25 / 12 == 30.4375


def test_durations_from_dates_closed_form():
    out = durations_from_dates(_dates_table())
    days_os = [365, (pd.Timestamp("2020-06-30") - pd.Timestamp("2018-03-15")).days, 1096, 1096]
    days_rfs = [181, days_os[1], 1065, 334]
    np.testing.assert_allclose(out["os_months"], np.array(days_os) / 30.4375, rtol=1e-12)
    np.testing.assert_allclose(out["rfs_months"], np.array(days_rfs) / 30.4375, rtol=1e-12)
    assert out["os_event"].tolist() == [1, 0, 0, 1]
    assert out["rfs_event"].tolist() == [1, 0, 1, 1]


def test_durations_from_dates_with_censor_date():
    out = durations_from_dates(_dates_table(), censor_date="2020-12-31")
    end = pd.Timestamp("2020-12-31")
    # P3: recurrence 2021-05-01 after the censor date -> censored at it; P4 dies 2022 -> censored.
    assert out["os_event"].tolist() == [1, 0, 0, 0]
    assert out["rfs_event"].tolist() == [1, 0, 0, 1]
    assert out.loc[2, "os_months"] == pytest.approx((end - pd.Timestamp("2018-06-01")).days / 30.4375)
    assert out.loc[3, "os_months"] == pytest.approx((end - pd.Timestamp("2019-01-01")).days / 30.4375)
    assert out.loc[2, "rfs_months"] == out.loc[2, "os_months"]


def test_death_without_recurrence_counts_for_rfs_unless_asked_not_to():
    table = pd.DataFrame({
        "patient_id": ["P1"], "surgery_date": ["2018-01-01"], "recurrence_date": [""],
        "death_date": ["2018-04-11"], "last_followup_date": ["2018-03-01"],
    })
    assert durations_from_dates(table)["rfs_event"].tolist() == [1]
    other = durations_from_dates(table, rfs_death_is_event=False)
    assert other["rfs_event"].tolist() == [0]
    assert other["rfs_months"].iloc[0] == pytest.approx(59 / 30.4375)


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("death_date", "2017-12-01", "death_date is before surgery_date for patient P1"),
        ("recurrence_date", "2017-12-31", "recurrence_date is before surgery_date for patient P1"),
        ("recurrence_date", "2019-02-01", "recurrence_date is after death_date for patient P1"),
        ("surgery_date", "", "surgery_date is missing for patient P1"),
        ("last_followup_date", "01/02/2018", "last_followup_date is not a date for patient P1.*YYYY-MM-DD"),
    ],
)
def test_bad_dates_name_the_patient(column, value, message):
    table = _dates_table()
    table.loc[0, column] = value
    with pytest.raises(ClinicalTableError, match=message):
        durations_from_dates(table)


def test_follow_up_without_end_and_surgery_after_censor_date():
    table = _dates_table()
    table.loc[1, "last_followup_date"] = ""
    with pytest.raises(ClinicalTableError, match="last_followup_date is missing.*patient P2"):
        durations_from_dates(table)
    with pytest.raises(ClinicalTableError, match="surgery_date is after the censor date 2018-12-31 for patient P4"):
        durations_from_dates(_dates_table(), censor_date="2018-12-31")


def test_rates_and_follow_up_against_R():
    """Survival at 12/36/60 months and reverse Kaplan-Meier follow-up (tests/r_reference.py data:
    ties, censoring at event times); rtol 1e-9.

        sf <- summary(survfit(Surv(time, status) ~ g, d), times = c(12, 36, 60))
        # g=0: n.risk 16 3 1; surv 0.709333333333333 0.263313131313131 0.175542087542087
        #      std.err 0.0930148640716719 0.1178437074320251 0.1063386071175207
        #      lower 0.5485703489761876 0.1095277094803987 0.0535484110033484
        #      upper 0.917209212486289 0.633025244943467 0.575461043964629
        # g=1: 12 only (36 and 60 are after its last follow-up: dropped, extend = FALSE)
        #      n.risk 17 surv 0.453781512605042 std.err 0.0846849974757780
        #      lower 0.3147712215604639 upper 0.654181980682010
        summary(survfit(Surv(time, 1 - status) ~ 1, d))$table[c("median", "0.95LCL", "0.95UCL")]
        # 55 26 NA
    """
    from dlmvi.stats.survival import compare_survival, median_follow_up, survival_at
    from r_reference import survival_frame

    d = survival_frame()
    g0 = d[d["g"] == 0]
    r = survival_at(g0["time"], g0["status"])
    assert [x["n_risk"] for x in r] == [16, 3, 1]
    np.testing.assert_allclose([x["survival"] for x in r], [0.709333333333333, 0.263313131313131,
                                                            0.175542087542087], rtol=1e-9)
    np.testing.assert_allclose([x["std_err"] for x in r], [0.0930148640716719, 0.1178437074320251,
                                                           0.1063386071175207], rtol=1e-9)
    np.testing.assert_allclose([x["ci"] for x in r], [[0.5485703489761876, 0.917209212486289],
                                                      [0.1095277094803987, 0.633025244943467],
                                                      [0.0535484110033484, 0.575461043964629]], rtol=1e-9)
    g1 = d[d["g"] == 1]
    r1 = survival_at(g1["time"], g1["status"])
    assert r1[1] is None and r1[2] is None and r1[0]["n_risk"] == 17
    assert [r1[0]["survival"], r1[0]["std_err"], *r1[0]["ci"]] == pytest.approx(
        [0.453781512605042, 0.0846849974757780, 0.3147712215604639, 0.654181980682010], rel=1e-9)
    assert survival_at([5.0, 20.0], [0, 1], (3.0,))[0] == {  # before any event: S = 1 exactly
        "time": 3.0, "survival": 1.0, "std_err": 0.0, "ci": [1.0, 1.0], "n_risk": 2}
    assert median_follow_up(d["time"], d["status"]) == {"median": 55.0, "ci": [26.0, None],
                                                        "method": "reverse Kaplan-Meier"}
    c = compare_survival(d["time"], d["status"], d["g"].astype(int))
    out = c.to_dict()
    assert out["rates"]["groups"]["0"][0]["survival"] == pytest.approx(0.709333333333333, rel=1e-9)
    assert out["median_follow_up"]["median"] == 55.0
    assert out["concordance"]["c"] == pytest.approx(0.599865047233468, rel=1e-6)
    assert out["ph_test"]["global"]["chisq"] == pytest.approx(0.95522445904213, rel=1e-6)
    assert out["cox"]["score_test"]["chi2"] == pytest.approx(9.55868522904176210, rel=1e-6)


def test_three_levels_tests_concordance_and_ph_against_r():
    """One grouping term with two df, as R (survival 3.5-3):
    cx3 <- coxph(Surv(time, event) ~ grade, d, control = coxph.control(eps = 1e-12))
    summary(cx3)$logtest   # 19.03068441357814322 2 0.00007371220219094
    summary(cx3)$sctest    # 18.6842920926786 2 8.76511307148836e-05
    cox.zph(cx3, transform = "km")$table   # grade 3.96675581984197 2 0.137603638682228 (= GLOBAL)
    cf <- concordance(cx3); cf$concordance; sqrt(cf$var)   # 0.668106834249804 0.0517365561070261
    """
    res = compare_survival(TIME, EVENT, GRADE, levels=["M0", "M1", "M2"]).to_dict()
    lr, sc = res["cox"]["lr_test"], res["cox"]["score_test"]
    assert [lr["chi2"], lr["df"], lr["p"]] == pytest.approx([19.03068441357814322, 2, 0.00007371220219094], rel=REL)
    assert [sc["chi2"], sc["df"], sc["p"]] == pytest.approx([18.6842920926786, 2, 8.76511307148836e-05], rel=REL)
    ph = res["ph_test"]
    assert list(ph["terms"]) == ["group"] and ph["terms"]["group"]["df"] == 2
    assert [ph["global"]["chisq"], ph["global"]["p"]] == pytest.approx([3.96675581984197, 0.137603638682228], rel=REL)
    assert ph["terms"]["group"] == ph["global"]
    assert [res["concordance"]["c"], res["concordance"]["se"]] == pytest.approx(
        [0.668106834249804, 0.0517365561070261], rel=REL)
