"""float16 patch storage (`dlmvi prepare --dtype float16`): src/dlmvi/preprocess/cache.py, prepare.py."""

import json
from dataclasses import replace

import numpy as np
import pytest

from dlmvi.cli import run_cli
from dlmvi.errors import CacheError, ConfigError
from dlmvi.preprocess.cache import PatchCache, PrepareConfig
from dlmvi.preprocess.patches import load_patches
from dlmvi.preprocess.prepare import _stored, fingerprint, prepare_cohort

CFG = PrepareConfig(sequences=("T1", "T1V", "T1D"), size=32, margin=4)


def test_float16_cache_halves_the_files_and_keeps_the_values(small_cohort, tmp_path):
    """Tolerance 0.0025: z-scores lie within +-5, where float16 rounds by at most 5 * 2^-11."""
    c32 = prepare_cohort(small_cohort, tmp_path / "c32", CFG, progress=False)
    assert run_cli(["prepare", str(small_cohort), "--out", str(tmp_path / "c16"), "--size", "32", "--margin", "4",
                    "--dtype", "float16"]) == 0
    c16 = PatchCache(tmp_path / "c16")
    assert c16.dtype == np.float16 and c32.dtype == np.float32
    assert c16.load("P000", "T1").dtype == np.float16
    b32 = sum(p.stat().st_size for p in (tmp_path / "c32" / "patches").rglob("*.npy"))
    b16 = sum(p.stat().st_size for p in (tmp_path / "c16" / "patches").rglob("*.npy"))
    # 3 x 32 x 32 values per file: 12 288 bytes (float32) or 6 144 (float16) + the 128-byte .npy header
    assert b32 == 18 * (12288 + 128) and b16 == 18 * (6144 + 128)
    ids = c32.patient_ids()
    x32 = load_patches(c32, ids, CFG.sequences, 32)
    x16 = load_patches(c16, ids, CFG.sequences, 32, dtype=np.float16)
    assert x16.dtype == np.float16 and x16.nbytes * 2 == x32.nbytes
    assert np.abs(x16.astype(np.float32) - x32).max() <= 0.0025
    # read as float32 (the default), a float16 cache gives its values exactly
    assert np.array_equal(load_patches(c16, ids, CFG.sequences, 32), x16.astype(np.float32))
    assert json.loads((tmp_path / "c16" / "cache.json").read_text())["params"]["dtype"] == "float16"


def test_float32_parameters_and_fingerprints_are_unchanged(small_cohort, tmp_path):
    """Caches written before the option keep their parameters, so nothing is rebuilt."""
    d = CFG.to_dict()
    assert "dtype" not in d and PrepareConfig.from_dict(d) == CFG
    assert replace(CFG, dtype="float16").to_dict()["dtype"] == "float16"
    files = sorted((small_cohort / "images" / "P000").glob("T1*.nii.gz"))
    legacy = {"sequences": ["T1", "T1V", "T1D"], "size": 32, "margin": 4, "n_slices": 3, "normalization": "zscore"}
    assert json.dumps(CFG.to_dict(), sort_keys=True) == json.dumps(legacy, sort_keys=True)
    assert fingerprint(files, CFG) == fingerprint(files, PrepareConfig.from_dict(legacy))
    with pytest.raises(ConfigError, match="--dtype 'float64' unknown"):
        PrepareConfig(dtype="float64")


def test_float16_refuses_intensities_beyond_its_range():
    raw = np.array([[[70000.0, 1.0]]], dtype=np.float32)
    with pytest.raises(CacheError, match="patient P007, T1D: intensities up to 70000 exceed float16's range"):
        _stored(raw, "float16", "P007", "T1D")
    assert _stored(raw / 10, "float16", "P007", "T1D").dtype == np.float16
