"""Tests of dlmvi.evaluate.classification against R (pROC's Youden threshold, binom.test)."""

import numpy as np
import pytest

from dlmvi.errors import StatisticsError
from dlmvi.evaluate.classification import classification_metrics, exact_ci, youden_threshold
from r_reference import Y

# the 60 predictions of tests/stats/test_calibration.py
P = np.array("""0.375 0.324 0.489 0.497 0.274 0.614 0.303 0.477 0.366 0.595 0.343 0.458 0.465 0.391
0.613 0.751 0.656 0.369 0.404 0.194 0.665 0.401 0.77 0.714 0.449 0.528 0.633 0.358 0.596 0.643
0.454 0.599 0.73 0.457 0.506 0.412 0.692 0.308 0.785 0.428 0.397 0.573 0.568 0.563 0.526 0.328
0.643 0.441 0.564 0.885 0.338 0.743 0.123 0.382 0.795 0.817 0.877 0.516 0.522 0.592""".split(), dtype=float)
y = np.array(Y.split(), dtype=float)


def test_youden_threshold_against_pROC():
    """pROC 1.18: the first row of coords(..., "best") (the lowest threshold when J ties).

        r <- roc(y, p, direction = "<")
        coords(r, "best", best.method = "youden", ret = c("threshold", "sensitivity",
               "specificity"), transpose = FALSE)
        # 0.5935 0.533333 0.833333 (and 0.6135 0.466667 0.9: J ties at 1.366667)
        q <- rep(c(0.1, 0.3, 0.6, 0.8), each = 10)   # four risks, as a two-input nomogram
        z <- c(rep(0, 8), rep(1, 2), rep(0, 5), rep(1, 5), rep(0, 5), rep(1, 5), rep(0, 2), rep(1, 8))
        coords(roc(z, q, direction = "<"), "best", best.method = "youden", transpose = FALSE)
        # thresholds 0.20, 0.45, 0.70 (J = 1.3 each)
    """
    assert youden_threshold(y, P) == pytest.approx(0.5935, abs=1e-12)
    q = np.repeat([0.1, 0.3, 0.6, 0.8], 10)
    z = np.concatenate([np.zeros(8), np.ones(2), np.zeros(5), np.ones(5), np.zeros(5), np.ones(5),
                        np.zeros(2), np.ones(8)])
    assert youden_threshold(z, q) == pytest.approx(0.2, abs=1e-12)
    with pytest.raises(StatisticsError, match="with and without MVI"):
        youden_threshold(np.ones(5), np.arange(5.0))


def test_classification_metrics_against_binom_test():
    """p >= 0.5: TP 19, FP 12, TN 18, FN 11; CIs = binom.test(k, n)$conf.int; rtol 1e-9.

        binom.test(19, 30)   # sensitivity 0.438559849011957 0.800701374987965
        binom.test(18, 30)   # specificity 0.406034930051819 0.773442351171406
        binom.test(19, 31)   # PPV 0.421869589134041 0.781500401501431
        binom.test(18, 29)   # NPV 0.422604640664401 0.793131300513493
        binom.test(37, 60)   # accuracy 0.482114951431161 0.739292941984001
    """
    m = classification_metrics(y, P >= 0.5)
    assert [m[k] for k in ("n", "tp", "fp", "tn", "fn")] == [60, 19, 12, 18, 11]
    expected = {"sensitivity": (19 / 30, 0.438559849011957, 0.800701374987965),
                "specificity": (18 / 30, 0.406034930051819, 0.773442351171406),
                "ppv": (19 / 31, 0.421869589134041, 0.781500401501431),
                "npv": (18 / 29, 0.422604640664401, 0.793131300513493),
                "accuracy": (37 / 60, 0.482114951431161, 0.739292941984001)}
    for k, (v, lo, hi) in expected.items():
        assert [m[k], m[f"{k}_ci_low"], m[f"{k}_ci_high"]] == pytest.approx([v, lo, hi], rel=1e-9), k
    none = classification_metrics(y, np.zeros_like(y))  # nobody positive: PPV undefined
    assert np.isnan(none["ppv"]) and np.isnan(none["ppv_ci_low"]) and none["specificity"] == 1.0
    assert exact_ci(0, 7) == pytest.approx((0.0, 0.409616397225003), rel=1e-9)  # binom.test(0, 7)
