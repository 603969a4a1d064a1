"""Tests of src/dlmvi/stats/recalibration.py: updates against R's glm, honest CV, site files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlmvi.errors import ConfigError, StatisticsError
from dlmvi.stats.recalibration import (Recalibration, apply_site, cross_validated_update, expit, logit,
                                       read_site, site_document, write_site)
from r_reference import P, Y

y = np.array(Y.split(), dtype=float)
p = np.array(P.split(), dtype=float)


def test_updates_against_R_glm():
    """R 4.2.2, tolerance 1e-9 (estimates) and relative 1e-6 (standard errors: R's glm takes
    them at the weights of its last IRLS step, which stops at its 1e-8 deviance criterion)::

        lp <- qlogis(p)
        f1 <- glm(y ~ offset(lp), family = binomial)   # -0.096168119584657 (se 0.274194163811405)
        f2 <- glm(y ~ lp, family = binomial)           # -0.083203154359001, 0.846921381983898
                                                       # se 0.272305038233660, 0.390604614112891
    """
    r1 = Recalibration("intercept").fit(y, p)
    assert r1.intercept_ == pytest.approx(-0.096168119584657, abs=1e-9)
    assert r1.slope_ == 1.0
    assert r1.se_["intercept"] == pytest.approx(0.274194163811405, rel=1e-6)
    r2 = Recalibration("logistic").fit(y, p)
    assert (r2.intercept_, r2.slope_) == pytest.approx((-0.083203154359001, 0.846921381983898), abs=1e-9)
    assert (r2.se_["intercept"], r2.se_["slope"]) == pytest.approx((0.272305038233660, 0.390604614112891), rel=1e-6)
    # the update is the fitted glm's prediction
    np.testing.assert_allclose(r2.predict_proba(p), expit(-0.083203154359001 + 0.846921381983898 * logit(p)),
                               atol=1e-9)


def test_cross_validation_repairs_a_miscalibrated_model_without_touching_the_ranking():
    """A model whose log odds are 2.5 x too extreme and 1.5 too high (seeded, n = 400):
    logistic recalibration judged out of fold brings the calibration slope from 0.435 to
    0.976, the intercept from -0.712 to -0.005 and the Brier score from 0.229 to 0.189; the
    AUC stays 0.785 -> 0.782 (each fold's map is monotone; the folds' maps differ slightly)."""
    rng = np.random.default_rng(4)
    n = 400
    true_lp = rng.normal(-0.3, 1.2, n)
    yy = (rng.random(n) < expit(true_lp)).astype(int)
    bad = expit(1.5 + 2.5 * true_lp)
    res = cross_validated_update(yy, bad, method="logistic", folds=5, seed=0)
    b, a = res["before"], res["after"]
    assert (b["calibration_slope"], b["calibration_intercept"], b["brier"], b["auc"]) == pytest.approx(
        (0.4350, -0.7121, 0.2294, 0.7849), abs=5e-4)
    assert (a["calibration_slope"], a["calibration_intercept"], a["brier"], a["auc"]) == pytest.approx(
        (0.9760, -0.0046, 0.1890, 0.7820), abs=5e-4)
    again = cross_validated_update(yy, bad, method="logistic", folds=5, seed=0)
    assert again["cv_probabilities"] == res["cv_probabilities"]  # seeded
    # each patient's updated probability comes from an update that did not see it
    from sklearn.model_selection import StratifiedKFold

    tr, te = next(StratifiedKFold(5, shuffle=True, random_state=0).split(bad, yy))
    r = Recalibration("logistic").fit(yy[tr], bad[tr])
    np.testing.assert_allclose(np.asarray(res["cv_probabilities"])[te], r.predict_proba(bad[te]), atol=1e-12)


def test_intercept_update_matches_the_prevalence_shift():
    """Calibration-in-the-large on predictions that are right up to a constant log-odds shift
    of -1 recovers +1 (to the sampling error of n = 2000)."""
    rng = np.random.default_rng(1)
    lp = rng.normal(0, 1.5, 2000)
    yy = (rng.random(2000) < expit(lp)).astype(int)
    r = Recalibration("intercept").fit(yy, lp=lp - 1.0)
    assert r.intercept_ == pytest.approx(1.0, abs=2.5 * r.se_["intercept"])


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match="--method 'slope'"):
        Recalibration("slope")
    with pytest.raises(StatisticsError, match="patients with and without MVI"):
        Recalibration().fit(np.ones(5), np.full(5, 0.3))
    with pytest.raises(StatisticsError, match="at least 2 patients with and 2 without"):
        cross_validated_update(np.array([1, 0, 0, 0]), np.array([0.6, 0.2, 0.3, 0.4]))
    separated = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9])  # perfectly ranked: no finite slope
    with pytest.raises(StatisticsError, match="fold 1 of 2 cannot be fitted.*use --method intercept"):
        cross_validated_update(np.array([0, 0, 0, 0, 1, 1, 1, 1]), separated, folds=2)
    assert cross_validated_update(np.array([0, 0, 0, 0, 1, 1, 1, 1]), separated, method="intercept",
                                  folds=2)["after"]["n"] == 8


def test_site_file_round_trip_and_application(tmp_path):
    doc = site_document("hospital-B", y.astype(int), p, "logistic", nomogram_lp=logit(p) + 0.5, folds=5, seed=0, threshold=0.5,
                        source="preds.csv", synthetic=True)
    assert doc["format"] == "dlmvi-site/1" and doc["n"] == 60 and doc["n_events"] == int(y.sum())
    assert doc["dl"]["slope"] == pytest.approx(0.846921381983898, abs=1e-9)
    # the nomogram's lp shifted by 0.5: same slope, intercept shifted by -0.5 * slope
    assert doc["nomogram"]["intercept"] == pytest.approx(-0.083203154359001 - 0.5 * 0.846921381983898, abs=1e-8)
    assert set(doc["dl_cv"]) == {"before", "after", "folds", "seed"}
    path = write_site(tmp_path, doc)
    assert path == tmp_path / "sites" / "hospital-B.json"
    back = read_site(tmp_path, "hospital-B")
    assert json.loads(path.read_text()) == back
    np.testing.assert_allclose(apply_site(p, back, "dl"), Recalibration("logistic").fit(y, p).predict_proba(p),
                               atol=1e-12)
    assert read_site(tmp_path, str(path))["site"] == "hospital-B"  # a path works too
    with pytest.raises(ConfigError, match="calibrated sites: hospital-B"):
        read_site(tmp_path, "hospital-C")
    with pytest.raises(ConfigError, match="--site '../x'"):
        site_document("../x", y, p, "intercept", threshold=0.5)
    no_nom = dict(back, nomogram=None)
    with pytest.raises(ConfigError, match="no nomogram recalibration"):
        apply_site(p, no_nom, "nomogram")


def test_a_site_check_that_cannot_be_made_says_so_and_a_corrupt_site_file_is_named(tmp_path):
    from dlmvi.errors import StatisticsWarning
    from dlmvi.stats.recalibration import check_site_model, list_sites

    with pytest.warns(StatisticsWarning, match="records no weights identity, so it was NOT checked"):
        check_site_model({"site": "B"}, "abc123")
    with pytest.warns(StatisticsWarning, match="the model records no weights identity"):
        check_site_model({"site": "B", "model_weights_sha256": "abc123"}, None)
    check_site_model({"site": "B", "model_weights_sha256": "abc123"}, "abc123")  # checked: silent
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "broken.json").write_text("{not json")
    with pytest.warns(StatisticsWarning, match=r"site file .*broken.json left out: .*not valid JSON"):
        assert list_sites(tmp_path) == []


def test_a_prediction_of_exactly_zero_or_one_stays_out_of_the_fit_and_maps_to_itself():
    prob = np.r_[p[:50], 0.0, 1.0]
    yy = np.r_[y[:50], 0.0, 1.0]
    r = Recalibration("logistic").fit(yy, prob)
    ref = Recalibration("logistic").fit(y[:50], p[:50])
    assert (r.intercept_, r.slope_, r.n_, r.n_excluded_) == (ref.intercept_, ref.slope_, 50, 2)
    assert r.predict_proba(np.array([0.0, 1.0])).tolist() == [0.0, 1.0]
