import json
import os

import numpy as np
import pytest

from dlmvi.cli import run_cli
from dlmvi.errors import CacheError, CohortError
from dlmvi.preprocess.cache import PatchCache, PrepareConfig
from dlmvi.preprocess.prepare import prepare_cohort
from factories import write_nifti

CFG = PrepareConfig(sequences=("T1", "T1V", "T1D"), size=32, margin=4)


def test_prepare_writes_expected_patches(small_cohort, tmp_path):
    cache = prepare_cohort(small_cohort, tmp_path / "cache", CFG, progress=False)
    assert cache.patient_ids() == [f"P{i:03d}" for i in range(6)]
    idx = cache.index.set_index(["patient_id", "sequence"])
    # The ellipsoid is largest at slice 6 (radius 2.5 slices): key slices 5, 6, 7.
    assert idx.loc[("P000", "T1"), "slices"] == "5;6;7"
    # Tumour rows 12..24, cols 18..34 (radii 6, 8 around (18, 26)) plus 4 px, squared: LPS flips y and x.
    y0, x0, y1, x1 = map(int, idx.loc[("P000", "T1"), "box"].split(";"))
    assert y1 - y0 == x1 - x0 == 25
    x = cache.stack(["P000", "P001"])
    assert x.shape == (2, 3, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=(2, 3, 4)), 0, atol=1e-4)
    assert cache.labels(["P000", "P001", "P002"]).tolist() == [0, 1, 1]
    assert cache.labels(["P000", "P001", "P002"], classes=3).tolist() == [0, 1, 2]
    meta = json.loads((tmp_path / "cache" / "cache.json").read_text())
    assert meta["complete"] and meta["params"]["size"] == 32 and meta["synthetic"] is False


def test_patch_centre_is_tumour(small_cohort, tmp_path):
    cache = prepare_cohort(small_cohort, tmp_path / "cache", CFG, progress=False)
    p = cache.load("P000", "T1")
    # tumour is +300 over background: the centre of the crop is brighter than its corners
    assert p[1, 14:18, 14:18].mean() > 1.0 > p[1, :3, :3].mean()


def test_rerun_is_incremental_and_source_change_rebuilds(small_cohort, tmp_path):
    out = tmp_path / "cache"
    prepare_cohort(small_cohort, out, CFG, progress=False)
    f0 = out / "patches" / "P000" / "T1.npy"
    f1 = out / "patches" / "P001" / "T1.npy"
    m0, m1 = f0.stat().st_mtime_ns, f1.stat().st_mtime_ns
    # Change P001's T1 source (new content, new mtime).
    img = np.full((12, 40, 48), 5, np.int16)
    img[4:9, 10:30, 10:30] = 50
    write_nifti(small_cohort / "images" / "P001" / "T1.nii.gz", img)
    os.utime(small_cohort / "images" / "P001" / "T1.nii.gz", ns=(m1 + 10**9, m1 + 10**9))
    prepare_cohort(small_cohort, out, CFG, progress=False)
    assert f0.stat().st_mtime_ns == m0  # untouched
    assert f1.stat().st_mtime_ns != m1  # rebuilt
    # Parameters change: everything is rebuilt with the new size.
    cache = prepare_cohort(small_cohort, out, PrepareConfig(sequences=CFG.sequences, size=16, margin=4), progress=False)
    assert cache.load("P000", "T1").shape == (3, 16, 16)


def test_unusable_patient_is_excluded_with_reason(small_cohort, tmp_path):
    (small_cohort / "images" / "P002" / "T1D_roi.nii.gz").unlink()
    cache = prepare_cohort(small_cohort, tmp_path / "cache", CFG, progress=False)
    assert "P002" not in cache.patient_ids()
    row = cache.patients.set_index("patient_id").loc["P002"]
    assert row["included"] == 0 and "T1D: no tumour mask" in row["exclusion_reason"]
    with pytest.raises(CohortError, match="patient P002: T1D: no tumour mask"):
        prepare_cohort(small_cohort, tmp_path / "cache2", CFG, strict=True, progress=False)


def test_rois_csv_boxes_replace_masks(small_cohort, tmp_path):
    for seq in CFG.sequences:
        (small_cohort / "images" / "P004" / f"{seq}_roi.nii.gz").unlink()
    # Boxes in the file's own grid (x, y as stored): slices 5-7, x 18..34, y 12..24.
    rows = [f"P004,{s},{z},18,12,34,24" for s in CFG.sequences for z in (5, 6, 7)]
    (small_cohort / "rois.csv").write_text("patient_id,sequence,slice,x0,y0,x1,y1\n" + "\n".join(rows) + "\n")
    cache = prepare_cohort(small_cohort, tmp_path / "cache", CFG, progress=False)
    idx = cache.index.set_index(["patient_id", "sequence"])
    assert idx.loc[("P004", "T1"), "slices"] == "5;6;7"
    assert idx.loc[("P004", "T1"), "source"] == "rois.csv"
    y0, x0, y1, x1 = map(int, idx.loc[("P004", "T1"), "box"].split(";"))
    # LPS flips x and y: file x 18..34 of 48 -> 13..29; y 12..24 of 40 -> 15..27; +4 margin, squared.
    assert (x0, x1) == (13 - 4, 29 + 1 + 4)
    assert y1 - y0 == x1 - x0


def test_incomplete_cache_is_refused(small_cohort, tmp_path):
    out = tmp_path / "cache"
    prepare_cohort(small_cohort, out, CFG, progress=False)
    meta = json.loads((out / "cache.json").read_text())
    meta["complete"] = False  # what an interrupted prepare leaves
    (out / "cache.json").write_text(json.dumps(meta))
    with pytest.raises(CacheError, match="incomplete"):
        PatchCache(out)


def test_concurrent_prepare_fails_cleanly(small_cohort, tmp_path):
    from filelock import FileLock

    out = tmp_path / "cache"
    out.mkdir()
    with FileLock(str(out / ".lock")):
        with pytest.raises(CacheError, match="being prepared by another dlmvi process"):
            prepare_cohort(small_cohort, out, CFG, progress=False)


def test_missing_sequence_in_cache_is_named(small_cohort, tmp_path):
    cache = prepare_cohort(small_cohort, tmp_path / "cache", CFG, progress=False)
    with pytest.raises(CacheError, match=r"sequence\(s\) \['T2'\] are not in the cache"):
        cache.stack(["P000"], ("T1", "T2"))


def test_cli_prepare(small_cohort, tmp_path, capsys):
    rc = run_cli(["prepare", str(small_cohort), "--out", str(tmp_path / "c"), "--size", "24", "--sequences", "T1,t1v"])
    assert rc == 0
    assert "6 patient(s) prepared, 0 excluded" in capsys.readouterr().out
    assert PatchCache(tmp_path / "c").load("P005", "T1V").shape == (3, 24, 24)
    assert run_cli(["prepare", str(small_cohort), "--out", str(tmp_path / "c"), "--sequences", "T9"]) == 2
    assert "unknown sequence(s) T9" in capsys.readouterr().err
