"""Tests of src/dlmvi/stats/agreement.py: box overlap by hand, Bland-Altman and the ICC against R."""

from __future__ import annotations

import numpy as np
import pytest

from dlmvi.errors import StatisticsError
from dlmvi.stats.agreement import BlandAltmanDisplay, bland_altman, box_agreement, boxes_table, summarise_boxes
from dlmvi.stats.icc import icc

A = [0.62, 0.41, 0.88, 0.15, 0.53, 0.71, 0.34, 0.97, 0.22, 0.60]
B = [0.58, 0.47, 0.81, 0.19, 0.49, 0.77, 0.30, 0.93, 0.31, 0.52]


def test_box_overlap_counts_voxels_of_both_readers():
    # A: 3 slices of 11 x 11 voxels (363); B: slices 11-13, shifted by 5 voxels in x (6 x 11 overlap on 2 slices)
    a = [(10, 0, 0, 10, 10), (11, 0, 0, 10, 10), (12, 0, 0, 10, 10)]
    b = [(11, 5, 0, 15, 10), (12, 5, 0, 15, 10), (13, 5, 0, 15, 10)]
    r = box_agreement(a, b)
    assert (r["voxels_a"], r["voxels_b"], r["voxels_both"]) == (363, 363, 132)
    assert r["iou"] == pytest.approx(132 / (726 - 132))
    assert r["dice"] == pytest.approx(2 * 132 / 726)
    assert (r["common_slices"], r["same_key_slices"], r["centre_offset_slices"]) == (2, False, -1.0)
    same = box_agreement(a, a)
    assert (same["iou"], same["dice"], same["same_key_slices"]) == (1.0, 1.0, True)
    apart = box_agreement(a, [(11, 20, 20, 25, 25), (12, 20, 20, 25, 25), (13, 20, 20, 25, 25)])
    assert apart["iou"] == 0.0


def test_the_table_pairs_sequences_and_names_those_one_reader_boxed():
    a = {("P1", "T1"): ((1, 0, 0, 3, 3),), ("P1", "T1V"): ((1, 0, 0, 3, 3),), ("P2", "T1"): ((2, 0, 0, 1, 1),)}
    b = {("P1", "T1"): ((1, 0, 0, 1, 3),), ("P2", "T1"): ((2, 0, 0, 1, 1),), ("P3", "T1"): ((2, 0, 0, 1, 1),)}
    table, single = boxes_table(a, b)
    assert table[["patient_id", "sequence"]].values.tolist() == [["P1", "T1"], ["P2", "T1"]]
    assert table["iou"].tolist() == [0.5, 1.0]
    assert single == [("P1", "T1V", "boxed by reader A only"), ("P3", "T1", "boxed by reader B only")]
    s = summarise_boxes(table).set_index("sequence")
    assert s.loc["all", "n"] == 2 and s.loc["all", "iou_median"] == 0.75 and s.loc["T1", "same_key_slices"] == 1.0


def test_bland_altman_against_R():
    """R 4.x:

        a <- c(0.62, 0.41, 0.88, 0.15, 0.53, 0.71, 0.34, 0.97, 0.22, 0.60)
        b <- c(0.58, 0.47, 0.81, 0.19, 0.49, 0.77, 0.30, 0.93, 0.31, 0.52)
        d <- a - b; n <- length(d); m <- mean(d); s <- sd(d); t <- qt(0.975, n - 1)
        c(m, s, m - t*s/sqrt(n), m + t*s/sqrt(n), m - 1.96*s, m + 1.96*s,
          m - 1.96*s - t*s*sqrt(3/n), m - 1.96*s + t*s*sqrt(3/n),
          m + 1.96*s - t*s*sqrt(3/n), m + 1.96*s + t*s*sqrt(3/n))
    """
    r = bland_altman(A, B)
    got = [r.bias, r.sd, *r.bias_ci, r.loa_low, r.loa_high, *r.loa_low_ci, *r.loa_high_ci]
    ref = [0.0060000000, 0.0616801787, -0.0381233418, 0.0501233418, -0.1148931503, 0.1268931503,
           -0.1913170200, -0.0384692805, 0.0504692805, 0.2033170200]
    np.testing.assert_allclose(got, ref, atol=1e-9)
    with pytest.raises(StatisticsError, match="at least 2 complete pairs"):
        bland_altman([0.1, np.nan], [0.2, 0.3])


def test_icc_of_two_readers_probabilities_against_R_psych():
    """R psych 2.x, a and b as in test_bland_altman_against_R (ANOVA estimates, as dlmvi.stats.icc):
    ``ICC(cbind(a, b), lmer = FALSE)$results[2, ]`` (Single_random_raters):
    ICC 0.9733372149, lower bound 0.8976272202, upper bound 0.9932971477."""
    r = icc(np.column_stack([A, B]), "ICC2")
    np.testing.assert_allclose([r.icc, r.ci_low, r.ci_high], [0.9733372149, 0.8976272202, 0.9932971477], atol=1e-9)


def test_the_plot_draws_bias_and_limits_and_keeps_its_numbers():
    d = BlandAltmanDisplay.from_pairs(A, B, "A", "B").plot()
    lines = sorted(round(float(l.get_ydata()[0]), 6) for l in d.ax_.get_lines())
    assert lines == [-0.114893, 0.0, 0.006, 0.126893]
    frame = d.to_frame()
    assert frame["difference"].round(6).tolist() == [round(x - y, 6) for x, y in zip(A, B)]
