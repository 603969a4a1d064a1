"""Tests of dlmvi.preprocess.harmonize: Nyúl standardisation fitted on the development cohort only."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import cachefactory
from dlmvi.cli import run_cli
from dlmvi.errors import CacheError, ConfigError
from dlmvi.preprocess.cache import PatchCache
from dlmvi.preprocess.harmonize import (
    NYUL_PERCENTILES,
    NyulStandardizer,
    apply_harmonization,
    fit_harmonization,
    harmonize_cache,
    piecewise_linear,
)


A, B = 1.7, -40.0  # the 2018 "scanner": gain and offset


@pytest.fixture(scope="module")
def raw_cache(tmp_path_factory):
    """Raw-intensity cache; P003 (2018) is P000 (2015) seen through x -> 1.7 x - 40 on T1,
    P008 (2018) is P005 (2015) seen through a gamma (x -> 40 x^0.8) on T1D."""
    root = cachefactory.write_cache(tmp_path_factory.mktemp("raw") / "cache", n_patients=20,
                                    normalization="none", seed=4)
    c = PatchCache(root)
    assert c.cohort_of(["P000", "P003", "P005", "P008"]) == ["2015", "2018", "2015", "2018"]
    np.save(c.patch_path("P003", "T1"), (A * np.load(c.patch_path("P000", "T1")) + B).astype(np.float32))
    np.save(c.patch_path("P008", "T1D"), (40 * np.load(c.patch_path("P005", "T1D")) ** 0.8).astype(np.float32))
    return root


@pytest.fixture(scope="module")
def nyul_cache(raw_cache, tmp_path_factory):
    return harmonize_cache(raw_cache, tmp_path_factory.mktemp("nyul") / "cache", method="nyul", develop_cohort="2015")


def test_piecewise_linear_extends_end_segments():
    src, dst = np.array([0.0, 1.0, 3.0]), np.array([10.0, 20.0, 24.0])
    assert piecewise_linear(np.array([-1.0, 0.5, 2.0, 5.0]), src, dst) == pytest.approx([0.0, 15.0, 22.0, 28.0])


def test_affine_twin_maps_to_same_values(nyul_cache):
    a = nyul_cache.load("P000", "T1")
    b = nyul_cache.load("P003", "T1")
    assert np.abs(a - b).max() < 1e-4
    # the raw twins differ by hundreds of units
    raw = PatchCache(nyul_cache.meta["harmonization"]["source"])
    assert np.abs(raw.load("P000", "T1") - raw.load("P003", "T1")).mean() > 100


def test_gamma_twin_nearly_matches(nyul_cache):
    a = nyul_cache.load("P005", "T1D")
    b = nyul_cache.load("P008", "T1D")
    assert np.abs(a - b).mean() < 0.03


def test_dev_landmarks_map_to_standard_scale(nyul_cache):
    h = nyul_cache.meta["harmonization"]
    assert h["method"] == "nyul" and h["develop_cohort"] == "2015"
    assert h["percentiles"] == list(NYUL_PERCENTILES)
    dev = nyul_cache.patient_ids(cohort="2015")
    assert h["n_fit_images"] == {"T1": len(dev), "T1V": len(dev), "T1D": len(dev)} == {"T1": 12, "T1V": 12, "T1D": 12}
    for seq in ("T1", "T1V", "T1D"):
        lm = np.array(h["landmarks"][seq])
        assert np.all(np.diff(lm) > 0)
        for pid in dev[:4]:
            got = np.percentile(nyul_cache.load(pid, seq), NYUL_PERCENTILES)
            assert got == pytest.approx(lm, abs=0.02)
        # scaled so that the development images have mean 0 and sd 1 on average
        x = np.stack([nyul_cache.load(p, seq) for p in dev])
        assert float(x.mean()) == pytest.approx(0.0, abs=1e-3)
        assert float(np.sqrt((x**2).mean())) == pytest.approx(1.0, abs=1e-3)


def test_fit_ignores_other_cohorts(raw_cache, tmp_path):
    before = fit_harmonization(PatchCache(raw_cache), "nyul", "2015")["landmarks"]
    copy = Path(shutil.copytree(raw_cache, tmp_path / "copy"))
    c = PatchCache(copy)
    for pid in c.patient_ids(cohort="2018"):
        for seq in c.sequences:
            np.save(c.patch_path(pid, seq), (3 * np.load(c.patch_path(pid, seq)) ** 1.3).astype(np.float32))
    after = fit_harmonization(PatchCache(copy), "nyul", "2015")["landmarks"]
    assert after == before
    other = fit_harmonization(PatchCache(copy), "nyul", "2018")["landmarks"]
    assert other != before


def test_derived_cache_format(raw_cache, nyul_cache):
    src = PatchCache(raw_cache)
    assert nyul_cache.meta["params"] == src.meta["params"]
    assert nyul_cache.config == src.config
    assert nyul_cache.patient_ids() == src.patient_ids()
    assert nyul_cache.stack(["P001"]).shape == (1, 3, 3, 32, 32)
    # single-patient inference reproduces the cache's patch exactly
    p = apply_harmonization(src.load("P010", "T1V"), "T1V", nyul_cache.meta["harmonization"])
    assert np.array_equal(p, nyul_cache.load("P010", "T1V"))


def test_zscore_method(raw_cache, tmp_path):
    assert run_cli(["harmonize", str(raw_cache), "--out", str(tmp_path / "z"), "--method", "zscore",
                    "--no-progress"]) == 0
    z = PatchCache(tmp_path / "z")
    assert json.loads((tmp_path / "z" / "cache.json").read_text())["harmonization"]["method"] == "zscore"
    p = z.load("P002", "T1").astype(np.float64)
    assert p.mean() == pytest.approx(0.0, abs=1e-5) and p.std() == pytest.approx(1.0, abs=1e-3)
    # affine twins are equal after z-scoring too
    assert np.abs(z.load("P000", "T1") - z.load("P003", "T1")).max() < 1e-4


def test_standardizer_estimator():
    rng = np.random.default_rng(0)
    imgs = [rng.gamma(2.0, 50.0, size=(3, 16, 16)) for _ in range(5)]
    st = NyulStandardizer().fit(imgs)
    assert st.n_images_ == 5 and st.landmarks_.shape == (11,)
    assert st.transform(3 * imgs[0] + 7) == pytest.approx(st.transform(imgs[0]), abs=1e-4)


def test_errors(raw_cache, tmp_path):
    with pytest.raises(ConfigError, match="unknown harmonisation method"):
        harmonize_cache(raw_cache, tmp_path / "x", method="histmatch")
    with pytest.raises(CacheError, match="development cohort '2020'.*2015, 2018"):
        harmonize_cache(raw_cache, tmp_path / "x", develop_cohort="2020")
    with pytest.raises(CacheError, match="is the source cache"):
        harmonize_cache(raw_cache, raw_cache)
    with pytest.raises(CacheError, match="fitted on T1 only"):
        apply_harmonization(np.ones((3, 4, 4)), "T2", {"method": "nyul", "landmarks": {"T1": [0, 1]}})


def test_global_scale_is_fitted_on_development_cohort_only(raw_cache, tmp_path):
    """'global': one mean/sd per sequence from the development cohort; the 2018 gain survives it."""
    out = harmonize_cache(raw_cache, tmp_path / "global", method="global", develop_cohort="2015")
    params = out.meta["harmonization"]
    dev = np.stack([out.load(pid, "T1") for pid in out.patient_ids(cohort="2015")])
    assert abs(float(dev.mean())) < 1e-3 and float(dev.std()) == pytest.approx(1.0, rel=1e-3)
    a, b = out.load("P000", "T1"), out.load("P003", "T1")  # twins through 1.7 x - 40
    mu, sd = params["scales"]["T1"]
    raw = PatchCache(raw_cache).load("P000", "T1")
    np.testing.assert_allclose(b, np.clip((A * raw + B - mu) / sd, -5, 5), rtol=1e-4, atol=1e-4)
    assert np.abs(a - b).mean() > 0.1  # not harmonised away
    np.testing.assert_allclose(apply_harmonization(raw, "T1", params), a, atol=1e-5)


def test_a_fit_on_every_cohort_says_so_and_the_estimator_fits_given_patients(raw_cache):
    from dlmvi.errors import DlmviWarning
    from dlmvi.preprocess.harmonize import Harmonizer

    cache = PatchCache(raw_cache)
    with pytest.warns(DlmviWarning, match="fitted on every included patient of every cohort"):
        fit_harmonization(cache, "global", None)
    ids = cache.patient_ids(cohort="2015")
    doc = fit_harmonization(cache, "nyul", None, patient_ids=ids)
    assert doc["landmarks"] == fit_harmonization(cache, "nyul", "2015")["landmarks"]
    h = Harmonizer("nyul").fit_patches(cache.stack(ids, cache.sequences), cache.sequences, patient_ids=ids)
    assert h.fit_patients_ == list(ids)
    np.testing.assert_allclose(h.document_["landmarks"]["T1"], doc["landmarks"]["T1"], rtol=1e-12)
