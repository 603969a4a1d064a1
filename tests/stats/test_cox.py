"""Tests of dlmvi.stats.cox against R's survival 3.5-3 (coxph, concordance, cox.zph).

The data (tests/r_reference.py) have tied event times, patients censored at another's event
time and missing tumour sizes. Reference fits use
``control = coxph.control(eps = 1e-12, iter.max = 100)``.
"""

import numpy as np
import pandas as pd
import pytest

from dlmvi.errors import StatisticsError
from dlmvi.stats.cox import concordance, cox_tests, cox_zph, efron_loglik, fit_cox, multivariable_cox
from r_reference import survival_frame

RTOL = 1e-6


@pytest.fixture
def d():
    return survival_frame()


def test_one_group_against_R(d):
    """f1 <- coxph(Surv(time, status) ~ g, d, control = ctl); s <- summary(f1)
    coef 0.995495764776998 se 0.334127603566529
    s$logtest  9.89695254413129533 1 0.00165552699946173
    s$sctest   9.55868522904176210 1 0.00199005590807143
    cf <- concordance(f1); cf$concordance, sqrt(cf$var), cf$count
    # 0.599865047233468 0.0408527476537531; 515 219 748 16 27
    cox.zph(f1, transform = "km")$table   # g 0.95522445904213 1 0.328393011903322 (= GLOBAL)
    rtol 1e-6 (R's coxph converges to ~1e-9 here).
    """
    t, e, g = d["time"].to_numpy(), d["status"].to_numpy(), d["g"].to_numpy()
    fit = fit_cox(t, e, d[["g"]])
    b = fit.params_.to_numpy()
    assert b[0] == pytest.approx(0.995495764776998, rel=RTOL)
    assert fit.standard_errors_.iloc[0] == pytest.approx(0.334127603566529, rel=RTOL)
    tests = cox_tests(t, e, g[:, None], b)
    assert [tests["lr_test"]["chi2"], tests["lr_test"]["p"]] == pytest.approx(
        [9.89695254413129533, 0.00165552699946173], rel=RTOL)
    assert [tests["score_test"]["chi2"], tests["score_test"]["p"]] == pytest.approx(
        [9.55868522904176210, 0.00199005590807143], rel=RTOL)
    c = concordance(t, e, g * b[0])
    assert [c["c"], c["se"]] == pytest.approx([0.599865047233468, 0.0408527476537531], rel=RTOL)
    assert [c[k] for k in ("concordant", "discordant", "tied_x", "tied_y", "tied_xy")] == [515, 219, 748, 16, 27]
    z = cox_zph(t, e, g[:, None], b, ["g"])
    assert [z["terms"]["g"]["chisq"], z["terms"]["g"]["p"]] == pytest.approx(
        [0.95522445904213, 0.328393011903322], rel=RTOL)
    assert z["global"] == z["terms"]["g"] and z["transform"] == "km"
    # the log partial likelihood is shift-invariant and 2 (l(b) - l(0)) is the LR statistic
    assert 2 * (efron_loglik(t, e, g * b[0] + 3.0) - efron_loglik(t, e, np.zeros(60))) == pytest.approx(
        9.89695254413129533, rel=RTOL)


def test_multivariable_against_R(d):
    """fm <- coxph(Surv(time, status) ~ g + afp + size + ed, d, control = ctl)  # na.omit
    fm$n 58, fm$nevent 46; summary(fm):
                coef                se                 Pr(>|z|)     lower .95         upper .95
    g     1.3214869585366120 0.3871231817928110 0.000641086414500781 1.755474980820025 8.00634580150455
    afp   0.9220607074819825 0.3251200689053602 0.004567356328884785 1.329545403300448 4.75541673310034
    size -0.0750859423368936 0.0885616649179481 0.396528212968992211 0.779842255735942 1.10350527981711
    ed   -0.6397150280145708 0.3357963089538364 0.056771145202906617 0.273114625114224 1.01860459207109
    logtest 23.0230620174444 4 1.25289899613532e-04; sctest 21.6344878870204 4 2.36944617012695e-04
    waldtest 20.06 (rounded by R) 4 4.86121456215943e-04
    concordance(fm): 0.69768283852281, se 0.0449950143029823
    cox.zph(fm, transform = "km")$table
    # g 2.7001615874424791 0.100338076620454; afp 0.0787625775928642 0.778981383388338
    # size 0.1560021731852148 0.692864213326663; ed 0.9324994749534522 0.334214279221463
    # GLOBAL 4.2152391787701982 4 0.377659394770165
    rtol 1e-6.
    """
    d.insert(0, "patient_id", [f"P{i + 1:02d}" for i in range(60)])
    m = multivariable_cox(d, "time", "status", {k: d[k] for k in ("g", "afp", "size", "ed")})
    assert (m["n"], m["events"], m["excluded"]) == (58, 46, ["P05", "P17"])
    want = {"g": (1.3214869585366120, 0.3871231817928110, 0.000641086414500781, 1.755474980820025, 8.00634580150455),
            "afp": (0.9220607074819825, 0.3251200689053602, 0.004567356328884785, 1.329545403300448, 4.75541673310034),
            "size": (-0.0750859423368936, 0.0885616649179481, 0.396528212968992211, 0.779842255735942, 1.10350527981711),
            "ed": (-0.6397150280145708, 0.3357963089538364, 0.056771145202906617, 0.273114625114224, 1.01860459207109)}
    for k, (coef, se, p, lo, hi) in want.items():
        r = m["terms"][k]
        assert [r["coef"], r["se"], r["p"], *r["ci"]] == pytest.approx([coef, se, p, lo, hi], rel=RTOL), k
        assert r["hr"] == pytest.approx(np.exp(coef), rel=RTOL)
    assert [m["lr_test"]["chi2"], m["lr_test"]["p"]] == pytest.approx([23.0230620174444, 1.25289899613532e-04], rel=RTOL)
    assert [m["score_test"]["chi2"], m["score_test"]["p"]] == pytest.approx(
        [21.6344878870204, 2.36944617012695e-04], rel=RTOL)
    assert m["wald_test"]["p"] == pytest.approx(4.86121456215943e-04, rel=1e-3)  # R rounds the statistic
    assert [m["concordance"]["c"], m["concordance"]["se"]] == pytest.approx(
        [0.69768283852281, 0.0449950143029823], rel=RTOL)
    zph = m["ph_test"]
    for k, (chisq, p) in {"g": (2.7001615874424791, 0.100338076620454), "afp": (0.0787625775928642, 0.778981383388338),
                          "size": (0.1560021731852148, 0.692864213326663), "ed": (0.9324994749534522, 0.334214279221463)}.items():
        assert [zph["terms"][k]["chisq"], zph["terms"][k]["p"]] == pytest.approx([chisq, p], rel=RTOL), k
    assert zph["global"]["df"] == 4
    assert [zph["global"]["chisq"], zph["global"]["p"]] == pytest.approx([4.2152391787701982, 0.377659394770165], rel=RTOL)


def test_multivariable_refuses_constant_or_eventless(d):
    d.insert(0, "patient_id", [f"P{i + 1:02d}" for i in range(60)])
    with pytest.raises(StatisticsError, match=r"\['afp'\] are constant"):
        multivariable_cox(d, "time", "status", {"g": d["g"], "afp": pd.Series(1.0, index=d.index)})
    with pytest.raises(StatisticsError, match="no events"):
        multivariable_cox(d.assign(status=0), "time", "status", {"g": d["g"]})
