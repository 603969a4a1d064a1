"""Tests of src/dlmvi/preprocess/patches.py, normalize.py and patches.load_patches: the one path
from a patient's images (or the cache) to the network's input."""

import numpy as np

from dlmvi.preprocess.cache import PatchCache
from dlmvi.preprocess.patches import load_patches
from dlmvi.preprocess.normalize import zscore_images

SEQ = ("T1", "T1V", "T1D")


def test_load_patches_resizes_and_normalises(tiny_cache, make_cache, tmp_path):
    cache = PatchCache(tiny_cache)
    ids = cache.patient_ids()[:3]
    p = load_patches(cache, ids, ("T1D", "T1"), 16)
    assert p.shape == (3, 2, 3, 16, 16) and p.dtype == np.float32
    raw = PatchCache(make_cache(tmp_path / "raw", n_patients=4, normalization="none"))
    z = load_patches(raw, raw.patient_ids(), SEQ, 32)
    # the one normalisation: per image = one sequence's key slices together (clipping at 5 sd)
    np.testing.assert_allclose(z.mean(axis=(-3, -2, -1)), 0, atol=2e-3)
    np.testing.assert_allclose(z.std(axis=(-3, -2, -1)), 1, atol=1e-2)
    assert np.array_equal(zscore_images(np.ones((1, 1, 3, 4, 4), np.float32)), np.zeros((1, 1, 3, 4, 4)))


def test_harmonised_cache_is_not_zscored_again(tmp_path):
    import json

    from cachefactory import write_cache

    root = write_cache(tmp_path / "c", n_patients=6, normalization="none", seed=1)
    meta = json.loads((root / "cache.json").read_text())
    raw = load_patches(PatchCache(root), ["P000"], SEQ, 32)
    assert abs(float(raw.mean())) < 1e-3  # raw cache: z-scored here
    meta["harmonization"] = {"method": "global", "scales": {}}
    (root / "cache.json").write_text(json.dumps(meta))
    kept = load_patches(PatchCache(root), ["P000"], SEQ, 32)
    np.testing.assert_allclose(kept, PatchCache(root).stack(["P000"], SEQ), rtol=1e-5)


def test_zscore_images_is_per_image_and_matches_the_crop_normalisation():
    """One image = the key slices of one sequence; a batch normalises each image on its own."""
    rng = np.random.default_rng(0)
    a = (rng.normal(size=(3, 20, 20)) * 40 + 300).astype(np.float32)
    b = (rng.normal(size=(3, 20, 20)) * 2 - 7).astype(np.float32)
    mu, sd = float(a.mean()), float(a.std())
    ref = np.clip((a - mu) / sd, -5, 5).astype(np.float32)  # the formula, written out
    assert np.array_equal(zscore_images(a), ref)
    both = zscore_images(np.stack([a, b])[None])  # (1, 2, 3, 20, 20)
    assert np.array_equal(both[0, 0], ref) and np.array_equal(both[0, 1], zscore_images(b))
    spike = a.copy()
    spike[0, 0, 0] = 1e6  # one bright vessel is clipped at 5 sd
    assert zscore_images(spike).max() == 5.0


def test_prepare_and_patient_input_give_the_same_network_input(small_cohort, tmp_path):
    """The cache path (prepare -> load_patches) and the new-patient path (patient_input) agree."""
    from dlmvi.cohort.cohort import Cohort
    from dlmvi.preprocess.cache import PrepareConfig
    from dlmvi.preprocess.patches import patient_input
    from dlmvi.preprocess.prepare import prepare_cohort

    for norm in ("zscore", "none"):
        cfg = PrepareConfig(sequences=SEQ, size=24, margin=2, normalization=norm)
        cache = prepare_cohort(small_cohort, tmp_path / f"c_{norm}", cfg, progress=False)
        pid = cache.patient_ids()[0]
        via_cache = load_patches(cache, [pid], SEQ, 16)[0]
        patient = Cohort.from_folder(small_cohort).patients[pid]
        patches, x = patient_input(patient, SEQ, cfg, None, 16)
        assert x.shape == (3, 3, 16, 16)
        assert np.array_equal(x, via_cache)
        assert [list(p.slices) for p in patches] == [
            [int(v) for v in cache.index.set_index(["patient_id", "sequence"]).loc[(pid, s), "slices"].split(";")]
            for s in SEQ]
