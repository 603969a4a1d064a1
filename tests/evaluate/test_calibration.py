"""Tests of dlmvi.evaluate.calibration against R's rms::val.prob, glm and lowess."""

import numpy as np
import pytest

from dlmvi.errors import StatisticsError, StatisticsWarning
from dlmvi.evaluate.calibration import brier_score, lowess_smooth, recalibration, spiegelhalter, val_prob
from dlmvi.stats.calibration import CalibrationDisplay
from r_reference import P, Y

y = np.array(Y.split(), dtype=float)
p = np.array(P.split(), dtype=float)
RTOL = 1e-6


def test_val_prob_against_R():
    """rms 6.5.0 ``val.prob(p, y, pl = FALSE)``; rtol 1e-6 (Eavg/E90/Emax via lowess: 1e-6).

        v <- val.prob(d$p, d$y, pl = FALSE)
        # C (ROC) 0.6611111111111111  Brier 0.2302367166666667
        # Intercept -0.0832031543590094  Slope 0.8469213819841027
        # Emax 0.2856956716659825  E90 0.1573436876487892  Eavg 0.0766332837505452
        # S:z 0.4785882769545390  S:p 0.6322315598136317
    """
    v = val_prob(y, p)
    expected = {
        "c_index": 0.6611111111111111, "brier": 0.2302367166666667,
        "calibration_intercept": -0.0832031543590094, "calibration_slope": 0.8469213819841027,
        "emax": 0.2856956716659825, "e90": 0.1573436876487892, "eavg": 0.0766332837505452,
        "spiegelhalter_z": 0.4785882769545390, "spiegelhalter_p": 0.6322315598136317,
    }
    for k, want in expected.items():
        assert v[k] == pytest.approx(want, rel=RTOL), k
    assert v["n"] == 60
    assert brier_score(y, p) == pytest.approx(0.2302367166666667, rel=1e-12)
    assert spiegelhalter(y, p)[0] == pytest.approx(0.4785882769545390, rel=RTOL)


def test_lowess_against_R():
    """``lw <- lowess(d$p, d$y, iter = 0)``: lw$x[c(1, 10, 30, 60)] = 0.123 0.358 0.506 0.885,
    lw$y[c(1, 10, 30, 60)] = 0.408695671665983 0.417787786744889 0.342538546217926
    0.948635775866041; rtol 1e-6."""
    x, s = lowess_smooth(p, y)
    idx = [0, 9, 29, 59]
    np.testing.assert_allclose(x[idx], [0.123, 0.358, 0.506, 0.885])
    np.testing.assert_allclose(
        s[idx], [0.408695671665983, 0.417787786744889, 0.342538546217926, 0.948635775866041],
        rtol=RTOL)


def test_val_prob_constant_prediction_like_R():
    """R's val.prob with a single distinct p: Intercept = qlogis(mean(y)), Slope = 0."""
    v = val_prob(y, np.full_like(y, 0.4))
    assert v["calibration_intercept"] == pytest.approx(np.log(0.5 / 0.5), abs=1e-12)
    assert v["calibration_slope"] == 0.0
    assert v["eavg"] == pytest.approx(0.1)


def test_bad_probabilities():
    with pytest.raises(StatisticsError, match=r"\[0, 1\]; rows \[1\]"):
        val_prob([0, 1, 1], [0.2, 1.3, 0.5])
    with pytest.raises(StatisticsError, match="with and without MVI"):
        val_prob([1, 1, 1], [0.2, 0.3, 0.5])


def test_zero_one_predictions_left_out_with_warning():
    pp = p.copy()
    pp[0] = 0.0
    with pytest.warns(StatisticsWarning, match="exactly 0 or 1"):
        v = val_prob(y, pp)
    assert np.isfinite(v["calibration_slope"])


# survival::pbc, 407 patients with a platelet count; y = death (status == 2), code = edema > 0
# + 2 * (platelet < 150). R: cat(paste(y, collapse = "")); cat(paste(code, collapse = ""))
PBC_DEATH = (
    "10110011111011011010111011101101010111010010100111111111100111011010000111110111"
    "00111011110110100100110101010111001110101001011101000010001110001100101010010011"
    "11011000000100000001011000101000000000011001000001101001011000101010000000100011"
    "00000000000000000000001100000000000010000000100000000001000000000000010001001000"
    "11111001100100010011001010001000101011110000101100100000000001000000010000100000"
    "0010000"
)
PBC_CODE = (
    "10112000102010001100012003302000000300000010000020001001000010020010000011300000"
    "30000100130010100202300200020200010000103000020200000002000010110300003100000000"
    "30000000000200002000010000000022000000002010002000020000001000003200000001000000"
    "00000000200000000010001300000002100030000201100030000000000000000000010000112200"
    "00320002002000010000002212000000200002010000001102030001202201300000020000001000"
    "0000200"
)


def _pbc():
    yy = np.array(list(PBC_DEATH), dtype=float)
    code = np.array(list(PBC_CODE), dtype=int)
    # R: coef(glm(y ~ I(edema > 0) + I(platelet < 150), binomial, d,
    #             control = glm.control(epsilon = 1e-14, maxit = 100)))
    lp = -0.838929513555932 + 1.489044074638320 * (code % 2) + 0.747806271130202 * (code // 2)
    return yy, 1 / (1 + np.exp(-lp))


def test_lowess_and_val_prob_ties_pbc_against_R():
    """303 of 407 pbc patients share one risk; R averages the tied block (issue 16.1).

        library(survival); library(rms)
        d <- pbc; d$y <- as.integer(d$status == 2); d <- d[!is.na(d$platelet), ]
        p <- fitted(glm(y ~ I(edema > 0) + I(platelet < 150), binomial, d))
        unique(lowess(p, d$y, iter = 0)$y)
        # 0.300330033003301 0.487804878048781 0.658654594052961 0.788249994180631
        val.prob(p, d$y, pl = FALSE)[c("Eavg", "E90", "Emax")]
        # 0.0029101394236683 0.0105699384652519 0.0136037545457731

    Tolerance 1e-9 (the fitted risks come from R's coefficients printed to 15 digits).
    statsmodels' lowess returns 1.0 at the tied block here.
    """
    yy, pp = _pbc()
    assert np.bincount(np.unique(pp, return_inverse=True)[1]).max() == 303
    x, s = lowess_smooth(pp, yy)
    assert np.all(np.diff(x) >= 0)
    np.testing.assert_allclose(np.unique(s), [0.300330033003301, 0.487804878048781,
                                              0.658654594052961, 0.788249994180631], rtol=1e-9)
    v = val_prob(yy, pp)
    np.testing.assert_allclose([v["eavg"], v["e90"], v["emax"]],
                               [0.0029101394236683, 0.0105699384652519, 0.0136037545457731],
                               rtol=1e-6)


def test_val_prob_two_tied_risks_against_R():
    """80 patients at p = 0.2 (20 with MVI), 20 at 0.6 (12 with MVI) (issue 16.1).

        p <- rep(c(0.2, 0.6), c(80, 20))
        y <- c(rep(1, 20), rep(0, 60), rep(1, 12), rep(0, 8))
        unique(lowess(p, y, iter = 0)$y)   # 0.25 0.60
        val.prob(p, y, pl = FALSE)   # Emax 0.05 E90 0.05 Eavg 0.04 Brier 0.2
                                     # Intercept 0.0651008378137293 Slope 0.839441578296371
                                     # S:z 1.09544511501033 S:p 0.273321678292298
        ctl <- glm.control(epsilon = 1e-14, maxit = 100); lp <- qlogis(p)
        confint.default(glm(y ~ lp, binomial, control = ctl))
        # (Intercept) -0.636463669580087 0.766665345207562; lp 0.265807783028730 1.413075373564022
        f0 <- glm(y ~ offset(lp), binomial, control = ctl)
        coef(f0); confint.default(f0)   # 0.218357630224757; -0.231058055780475 0.667773316229989

    Tolerance 1e-9 (lowess, errors) and 1e-7 (glm).
    """
    pp = np.repeat([0.2, 0.6], [80, 20])
    yy = np.concatenate([np.ones(20), np.zeros(60), np.ones(12), np.zeros(8)])
    assert np.unique(lowess_smooth(pp, yy)[1]).tolist() == pytest.approx([0.25, 0.6], rel=1e-12)
    smooth = CalibrationDisplay.from_predictions(yy, pp).smooth  # calibration_smooth.csv rows
    np.testing.assert_allclose(smooth.to_numpy(), [[0.2, 0.25], [0.6, 0.6]], rtol=1e-12)
    v = val_prob(yy, pp)
    assert [v["emax"], v["e90"], v["eavg"]] == pytest.approx([0.05, 0.05, 0.04], rel=1e-9)
    assert v["brier"] == pytest.approx(0.2, rel=1e-12)
    assert v["brier_scaled"] == pytest.approx(1 - 0.2 / (0.32 * 0.68), rel=1e-12)
    assert v["calibration_intercept"] == pytest.approx(0.0651008378137293, rel=1e-7)
    assert v["calibration_slope"] == pytest.approx(0.839441578296371, rel=1e-7)
    assert v["calibration_intercept_ci"] == pytest.approx([-0.636463669580087, 0.766665345207562], rel=1e-7)
    assert v["calibration_slope_ci"] == pytest.approx([0.265807783028730, 1.413075373564022], rel=1e-7)
    assert v["calibration_in_the_large"] == pytest.approx(0.218357630224757, rel=1e-7)
    assert v["calibration_in_the_large_ci"] == pytest.approx([-0.231058055780475, 0.667773316229989],
                                                             rel=1e-7)
    assert v["spiegelhalter_z"] == pytest.approx(1.09544511501033, rel=1e-9)


def test_recalibration_cis_against_R():
    """Wald CIs of the recalibration (R ``confint.default``) on the 60-patient data; rtol 1e-7.

        ctl <- glm.control(epsilon = 1e-14, maxit = 100); lp <- qlogis(d$p)
        confint.default(glm(y ~ lp, binomial, control = ctl))
        # (Intercept) -0.6169112886495881 0.450504979931595; lp 0.0813500758223255 1.612492688146710
        f0 <- glm(y ~ offset(lp), binomial, control = ctl)
        coef(f0)              # -0.0961681195846575
        confint.default(f0)   # -0.633578806349582 0.441242567180267
        1 - mean((y - p)^2) / (mean(y) * (1 - mean(y)))   # 0.0790531333333333
    """
    v = val_prob(y, p)
    assert v["calibration_intercept_ci"] == pytest.approx([-0.6169112886495881, 0.450504979931595], rel=1e-7)
    assert v["calibration_slope_ci"] == pytest.approx([0.0813500758223255, 1.612492688146710], rel=1e-7)
    assert v["calibration_in_the_large"] == pytest.approx(-0.0961681195846575, rel=1e-7)
    assert v["calibration_in_the_large_ci"] == pytest.approx([-0.633578806349582, 0.441242567180267], rel=1e-7)
    assert v["brier_scaled"] == pytest.approx(0.0790531333333333, rel=1e-9)
    r = recalibration([1, 1, 1], [0.1, 0.2, 0.3])  # one class: nothing estimable
    assert np.isnan(r["calibration_slope"]) and np.isnan(r["calibration_in_the_large_ci"][0])
