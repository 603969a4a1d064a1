"""Tests of the Kaplan-Meier figure (dlmvi.stats.survival_plot)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlmvi.stats.survival import compare_survival, km_curve  # noqa: E402
from dlmvi.stats.survival_plot import KaplanMeierDisplay, at_risk_counts, format_p  # noqa: E402

TIME = [2, 3, 3, 5, 7, 8, 8, 10, 1, 4, 6, 9, 12, 12]
EVENT = [1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 0, 0, 1]
GROUP = ["a"] * 8 + ["b"] * 6


@pytest.fixture
def comparison():
    return compare_survival(TIME, EVENT, GROUP)


def test_at_risk_counts_closed_form():
    curve = km_curve(np.array(TIME[:8], float), np.array(EVENT[:8]))
    # a: times 2 3 3 5 7 8 8 10 -> at risk (time >= t) at t = 0, 3, 4, 8, 10, 11
    np.testing.assert_array_equal(at_risk_counts(curve, np.array([0, 3, 4, 8, 10, 11.0])),
                                  [8, 7, 5, 3, 1, 0])


def test_format_p():
    assert format_p(0.0123) == "p = 0.012"
    assert format_p(0.0004) == "p < 0.001"
    assert format_p(None) == "p = n/a"


def test_display_draws_curves_bands_censor_marks_medians_and_risk_table(comparison):
    display = KaplanMeierDisplay.from_comparison(comparison, title="OS", legend_title="group").plot()
    ax = display.ax_
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["a (n = 8)", "b (n = 6)"]
    # Step curve starts at (0, 1) and ends at the last KM value of group a (0.0 at t = 10).
    step = ax.get_lines()[0]
    assert step.get_xdata()[0] == 0 and step.get_ydata()[0] == 1
    np.testing.assert_allclose(step.get_ydata()[-1], comparison.groups[0].curve["survival"].iloc[-1])
    assert len(ax.collections) == 2  # one confidence band per group
    # Censor marks of group a at t = 3 and 8.
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "+"]
    np.testing.assert_array_equal(marks[0].get_xdata(), [3, 8])
    # Median line of group a: vertical dashed line at its median.
    median_a = comparison.groups[0].median
    verticals = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"
                 and list(ln.get_xdata()) == [median_a, median_a]]
    assert verticals and list(verticals[0].get_ydata()) == [0, 0.5]
    texts = [t.get_text() for t in ax.texts]
    assert f"Log-rank {format_p(comparison.logrank['p'])}" in texts
    # Risk table: counts under the plot equal at_risk_counts at the x ticks.
    risk = display.risk_ax_
    ticks = risk.get_xticks()
    expected = at_risk_counts(comparison.groups[0].curve, ticks)
    row_a = [int(t.get_text()) for t in risk.texts if t.get_position()[1] == 1]
    assert row_a == list(expected)
    assert [t.get_text() for t in risk.get_yticklabels()] == ["b", "a"]
    plt.close(display.figure_)


def test_display_on_given_axes_without_risk_table(comparison):
    fig, ax = plt.subplots()
    display = KaplanMeierDisplay.from_comparison(comparison).plot(ax=ax, risk_table=False, ci=False)
    assert display.ax_ is ax and display.risk_ax_ is None
    assert len(ax.collections) == 0
    plt.close(fig)


def test_empty_group_is_drawn_in_the_legend_only():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = compare_survival([1, 2, 3], [1, 0, 1], ["b"] * 3, levels=["a", "b"])
    display = KaplanMeierDisplay.from_comparison(res).plot()
    legend = [t.get_text() for t in display.ax_.get_legend().get_texts()]
    assert legend == ["a (n = 0)", "b (n = 3)"]
    assert "Log-rank p = n/a" in [t.get_text() for t in display.ax_.texts]
    plt.close(display.figure_)
