"""Tests of src/dlmvi/train/inputs.py: each model's input, harmonised on its own training patients."""

import numpy as np
import pytest

from dlmvi.errors import ConfigError, DlmviWarning
from dlmvi.preprocess.cache import PatchCache
from dlmvi.preprocess.patches import load_patches
from dlmvi.train.inputs import TrainingInputs


def test_a_fitted_harmonisation_needs_a_raw_cache(tiny_cache):
    cache = PatchCache(tiny_cache)  # z-scored
    with pytest.raises(ConfigError, match="--harmonization nyul fits the harmonisation inside each fold"):
        TrainingInputs(cache, cache.patient_ids()[:5], cache.sequences, 32, "nyul")
    plain = TrainingInputs(cache, cache.patient_ids()[:5], cache.sequences, 32)
    x, doc = plain.for_unit(cache.patient_ids()[:3])
    assert doc is None and np.array_equal(x, load_patches(cache, cache.patient_ids()[:5], cache.sequences, 32))


def test_each_unit_is_harmonised_on_its_own_patients_as_a_harmonised_cache_would_be(make_cache, tmp_path):
    from dlmvi.preprocess.harmonize import harmonize_cache

    cache = PatchCache(make_cache(tmp_path / "raw", normalization="none"))
    ids = cache.patient_ids()
    fit = ids[:12]
    x, doc = TrainingInputs(cache, ids, cache.sequences, 32, "global").for_unit(fit)
    assert doc["fit_patients"] == fit and doc["fit_on"] == "12 training patients of this model"
    # the same values as the cache harmonised with these parameters, read the usual way
    h = harmonize_cache(cache, tmp_path / "h", method="global", params=doc)
    np.testing.assert_array_equal(x, load_patches(h, ids, cache.sequences, 32))
    other, doc2 = TrainingInputs(cache, ids, cache.sequences, 32, "global").for_unit(ids[12:])
    assert doc2["scales"] != doc["scales"] and not np.array_equal(x, other)


def test_cross_validating_a_cache_harmonised_beforehand_warns(make_cache, tmp_path):
    from dlmvi.preprocess.harmonize import harmonize_cache
    from dlmvi.train.run import warn_harmonised_once

    raw = PatchCache(make_cache(tmp_path / "raw", normalization="none"))
    with pytest.warns(DlmviWarning, match="harmonised \\(nyul\\) once, on every development patient"):
        warn_harmonised_once(harmonize_cache(raw, tmp_path / "nyul", method="nyul", develop_cohort="2015"))
