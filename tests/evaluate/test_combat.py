"""Tests of src/dlmvi/evaluate/combat.py: reference-batch ComBat against R's sva::ComBat."""

from __future__ import annotations

import numpy as np
import pytest

from dlmvi.errors import StatisticsError
from dlmvi.evaluate.combat import ComBat, classify_features, harmonize_features

# R 4.2.2, sva 3.46.0:
#   set.seed(7); n1 <- 12; n2 <- 9; g <- 6
#   d1 <- matrix(rnorm(g*n1, 0, 1), g, n1); d2 <- matrix(rnorm(g*n2, 0.8, 1.6), g, n2)
#   dat <- round(cbind(d1, d2), 3); batch <- c(rep("dev", n1), rep("new", n2))
#   adj <- ComBat(dat, batch, ref.batch = "dev")                        # ADJ: adj[, 13:21]
#   adj2 <- ComBat(dat, batch, ref.batch = "dev", mean.only = TRUE)     # MEAN_ONLY: adj2[1, 13:21]
DAT = """2.287 0.748 2.281 -0.005 1.273 -0.871 0.998 -0.285 0.101 0.724 0.076 0.769 -0.185 0.7 -0.468 3.417 2.589 0.673 2.144 -0.623 -1.688
-1.197 -0.117 0.324 0.988 0.184 0.719 -1.105 -1.312 0.931 0.481 0.159 1.153 -0.587 4.676 0.301 -0.233 -1.664 -1.079 0.992 3.27 3.312
-0.694 0.153 1.896 0.84 0.752 0.111 -0.142 -0.391 -0.263 -1.568 0.544 1.261 -1.823 1.348 0.246 1.79 0.099 1.294 0.118 -1.187 1.902
-0.412 2.19 0.468 0.705 0.592 -0.078 0.315 -0.402 -0.008 0.318 0.705 0.701 -1.321 0.807 0.313 1.178 0.559 -1.766 1.534 2.566 0.516
-0.971 0.357 -0.894 1.306 -0.983 -0.42 1.219 1.351 0.367 0.166 0.319 0.433 -0.622 0.847 -2.057 2.154 1.63 2.386 1.832 2.372 1.967
-0.947 2.717 -0.307 -1.388 -0.276 -0.562 -0.699 0.591 1.707 -0.9 1.109 -0.923 -0.092 0.171 1.74 -0.118 1.74 2.437 1.778 1.287 3.253"""
ADJ = """0.013214323423 0.500897815518 -0.142734183089 1.998113688989 1.541840320114 0.486019336098 1.296620937083 -0.228147676055 -0.815021030949
-0.492928175448 1.832300762448 -0.100603779314 -0.336528585098 -0.968754047786 -0.710297097630 0.204684686596 1.211120468569 1.229676352170
-1.266940264508 0.669675720041 -0.003345665949 0.939617147090 -0.093122565895 0.636696450673 -0.081518748895 -0.878517758619 1.008018594667
-0.626038461225 0.485907850134 0.227777456426 0.679766910996 0.356320122119 -0.858564828027 0.865788004438 1.405040162954 0.333851282181
-0.647981042362 0.151985521314 -1.429432382644 0.863732491174 0.578380224758 0.990071662565 0.688382434331 0.982447747050 0.761898762510
-0.811277752161 -0.630068819155 0.450983712732 -0.829191943256 0.450983712732 0.931221835565 0.477165992026 0.138863383258 1.493451833029"""
MEAN_ONLY = ("-0.641646535319 0.243353464681 -0.924646535319 2.960353464681 2.132353464681 0.216353464681 "
             "1.687353464681 -1.079646535319 -2.144646535319")
X = np.array([r.split() for r in DAT.splitlines()], dtype=float).T  # (21 samples, 6 features)
BATCH = np.array(["dev"] * 12 + ["new"] * 9)


def test_reference_batch_combat_against_R_sva():
    """Empirical Bayes location/scale (and mean-only) adjustment equal sva's to 1e-9; the
    reference batch is returned unchanged."""
    out = ComBat().fit_transform(X, BATCH, "dev")
    np.testing.assert_allclose(out[12:], np.array([r.split() for r in ADJ.splitlines()], dtype=float).T, atol=1e-9)
    np.testing.assert_array_equal(out[:12], X[:12])
    mo = ComBat(mean_only=True).fit_transform(X, BATCH, "dev")
    np.testing.assert_allclose(mo[12:, 0], np.array(MEAN_ONLY.split(), dtype=float), atol=1e-9)


def test_constant_feature_is_left_unchanged_and_errors_name_the_fix():
    x = np.column_stack([X, np.zeros(21)])
    out = ComBat().fit_transform(x, BATCH, "dev")
    assert (out[:, -1] == 0).all()
    np.testing.assert_allclose(out[12:, :6], np.array([r.split() for r in ADJ.splitlines()], dtype=float).T,
                               atol=1e-9)
    with pytest.raises(StatisticsError, match="reference batch '2015' is not among"):
        ComBat().fit(X, BATCH, "2015")
    with pytest.raises(StatisticsError, match="at least 2 patients per batch"):
        ComBat().fit(X[:13], BATCH[:13], "dev")
    with pytest.raises(StatisticsError, match="were not seen by ComBat.fit"):
        ComBat().fit(X, BATCH, "dev").transform(X[:2], ["other", "other"])


def test_validation_patients_never_enter_the_fit():
    """Rows left out of the fit (the development cohort's validation patients) do not change
    the mapping of the other cohort; their own features stay unchanged (reference batch)."""
    rng = np.random.default_rng(0)
    f = rng.normal(size=(40, 2, 5))
    f[20:] = f[20:] * 1.7 + 0.9
    batch = np.array(["2015"] * 20 + ["2018"] * 20)
    fit_rows = np.ones(40, dtype=bool)
    fit_rows[:5] = False  # validation patients of the development cohort
    a, _ = harmonize_features(f, batch, "2015", fit_rows=fit_rows)
    g = f.copy()
    g[:5] += 100.0  # whatever the validation patients look like ...
    b, _ = harmonize_features(g, batch, "2015", fit_rows=fit_rows)
    np.testing.assert_allclose(a[20:], b[20:], atol=1e-5)  # ... the external mapping is the same
    np.testing.assert_allclose(b[:20], g[:20], atol=1e-4)


def test_combat_removes_a_scanner_shift_from_features():
    """Seeded synthetic features: the second cohort's scanner scales and shifts 64 features;
    the separability AUC (dlmvi.evaluate.shift) falls from 1.00 to under 0.65 after ComBat."""
    from dlmvi.evaluate.shift import separability_auc

    rng = np.random.default_rng(3)
    f = rng.normal(size=(80, 1, 64))
    f[40:] = f[40:] * rng.uniform(0.6, 1.6, 64) + rng.normal(0.8, 0.4, 64)
    batch = np.array(["2015"] * 40 + ["2018"] * 40)
    h, summary = harmonize_features(f, batch, "2015")
    assert separability_auc(f[:, 0], batch) > 0.99
    assert separability_auc(h[:, 0], batch) < 0.65
    assert summary[0]["adjusted"] == 64 and summary[0]["mean_abs_gamma"]["2015"] == 0.0


def test_classify_features_is_the_networks_fully_connected_layer():
    import torch

    from dlmvi.model.network import NetworkConfig, build_network

    torch.manual_seed(0)
    net = build_network(NetworkConfig(stem_width=4, widths=(4, 8), blocks=(1, 1), n_sequences=3, input_size=32)).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        logits, feats = net(x, return_features=True)
    np.testing.assert_allclose(classify_features(net, feats.numpy()), torch.softmax(logits, 1).numpy(), atol=1e-6)
