"""Tests of dlmvi.stats.decision (closed-form net benefit)."""

import numpy as np
import pytest

from dlmvi.errors import StatisticsError
from dlmvi.stats.decision import DEFAULT_THRESHOLDS, DecisionCurveDisplay, decision_curve

Y = np.array([1, 1, 1, 0, 1, 0, 0, 1, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.2, 0.1])


def test_net_benefit_by_hand():
    """10 patients, 5 with MVI. At pt = 0.5 the model treats p >= 0.5: 4 TP, 1 FP.
    NB = 4/10 - 1/10 * 1 = 0.3; treat all = 0.5 - 0.5 * 1 = 0; avoided = (0.3 - 0) / 1 * 100.
    At pt = 0.25: treats p >= 0.25 -> 7 patients, 4 TP, 3 FP; odds 1/3:
    NB = 0.4 - 0.3 / 3 = 0.3; treat all = 0.5 - 0.5 / 3; avoided = (0.3 - 1/3) * 3 * 100 = -10.
    """
    d = decision_curve(Y, P, thresholds=[0.25, 0.5, 0.2]).set_index("threshold")
    assert d.loc[0.5, "net_benefit"] == pytest.approx(0.3)
    assert d.loc[0.5, "treat_all"] == pytest.approx(0.0)
    assert d.loc[0.5, "interventions_avoided_per_100"] == pytest.approx(30.0)
    assert (d.loc[0.5, "true_positives"], d.loc[0.5, "false_positives"]) == (4, 1)
    assert d.loc[0.25, "net_benefit"] == pytest.approx(0.4 - 0.3 / 3)
    assert d.loc[0.25, "treat_all"] == pytest.approx(0.5 - 0.5 / 3)
    assert d.loc[0.25, "interventions_avoided_per_100"] == pytest.approx(-10.0)
    # p >= threshold counts as treated: both 0.2 patients are treated at pt = 0.2
    assert (d.loc[0.2, "true_positives"], d.loc[0.2, "false_positives"]) == (5, 4)
    assert d["treat_none"].eq(0).all()


def test_matches_brute_force_on_default_grid():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300), 2)  # ties at grid points
    d = decision_curve(y, p)
    assert np.array_equal(d["threshold"], DEFAULT_THRESHOLDS) and len(d) == 99
    for _, r in d.iloc[::7].iterrows():
        pt = r["threshold"]
        tp = np.sum((p >= pt) & (y == 1))
        fp = np.sum((p >= pt) & (y == 0))
        assert r["net_benefit"] == pytest.approx(tp / 300 - fp / 300 * pt / (1 - pt), abs=1e-12)


def test_perfect_model_net_benefit_is_prevalence():
    d = decision_curve(Y, Y * 0.98 + 0.01)
    np.testing.assert_allclose(d["net_benefit"].iloc[1:], 0.5)  # pt = 0.01 treats everyone
    assert d["net_benefit"].iloc[0] == pytest.approx(d["treat_all"].iloc[0])


def test_bad_input():
    with pytest.raises(StatisticsError, match="strictly between 0 and 1"):
        decision_curve(Y, P, thresholds=[0.0, 0.5])
    with pytest.raises(StatisticsError, match=r"rows \[2\]"):
        decision_curve(Y, np.where(np.arange(10) == 2, np.nan, P))


def test_display():
    import matplotlib

    matplotlib.use("Agg")
    d = DecisionCurveDisplay.from_predictions(Y, {"model": P}).plot()
    labels = [t.get_text() for t in d.ax_.get_legend().get_texts()]
    assert labels == ["Treat all", "Treat none", "model"]
