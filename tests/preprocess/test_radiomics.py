"""``dlmvi radiomics``: MIRP features of tumour and ring, box masks flagged, bad input named, cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factories import write_cohort, write_nifti
from dlmvi.preprocess.radiomics import RadiomicsConfig, extract_cohort
from dlmvi.preprocess.radiomics_masks import perturb_roi, perturbations, tumour_and_ring

CFG = RadiomicsConfig(sequences=("T1V",), families=("statistics",), readers=2, seed=0)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dlmvi.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """Five patients: P000 fine (with a liver mask), P001 an ROI of 3 voxels, P002 no mask, P003 a
    tumour at the image border, P004 boxes from rois.csv; extracted by the CLI."""
    root = tmp_path_factory.mktemp("rad")
    cohort = write_cohort(root / "cohort", n=5, sequences=("T1V",))
    img = root / "cohort" / "images"
    tiny = np.zeros((12, 40, 48), np.uint8)
    tiny[6, 18, 26:29] = 1
    write_nifti(img / "P001" / "T1V_roi.nii.gz", tiny)
    (img / "P002" / "T1V_roi.nii.gz").unlink()
    edge = np.zeros((12, 40, 48), np.uint8)
    edge[5:8, 0:6, 0:6] = 1
    write_nifti(img / "P003" / "T1V_roi.nii.gz", edge)
    liver = np.zeros((12, 40, 48), np.uint8)
    liver[:, :, :26] = 1
    write_nifti(img / "P000" / "T1V_liver.nii.gz", liver)
    (img / "P004" / "T1V_roi.nii.gz").unlink()
    pd.DataFrame([{"patient_id": "P004", "sequence": "T1V", "slice": s, "x0": 20, "y0": 12, "x1": 32, "y1": 24}
                  for s in (5, 6, 7)]).to_csv(root / "cohort" / "rois.csv", index=False)
    out = root / "features"
    r = _cli("radiomics", root / "cohort", "--out", out, "--sequences", "T1V", "--families", "statistics",
             "--readers", "2")
    return root, out, r


def test_features_tumour_ring_and_box_flag(extracted):
    root, out, r = extracted
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC" not in r.stdout and "2 patients" in r.stdout
    f = pd.read_csv(out / "features.csv", dtype={"patient_id": str})
    assert f["patient_id"].tolist() == ["P000", "P004"]
    assert {"T1V.tumour.stat_mean", "T1V.ring.stat_mean"} <= set(f.columns)
    # the tumour is 300 brighter than its surroundings; the ring is the surroundings
    diff = f["T1V.tumour.stat_mean"] - f["T1V.ring.stat_mean"]
    assert diff.iloc[0] > 200
    rois = pd.read_csv(out / "rois.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert rois.loc["P004", "roi"] == "box" and rois.loc["P000", "roi"] == "mask"
    assert 0.3 < rois.loc["P000", "ring_removed_by_liver"] < 0.7  # the liver mask covers the left half
    meta = json.loads((out / "radiomics.json").read_text())
    assert meta["library"] == "MIRP" and meta["mirp_version"] == "2.5.0"
    assert meta["discretisation"] == "fixed bin number, 32 bins" and "5 mm" in meta["ring"]
    rep = pd.read_csv(out / "reproducibility.csv", dtype={"patient_id": str})
    assert sorted(rep.loc[rep["patient_id"] == "P000", "reader"]) == [0, 1, 2]


def test_bad_input_named_and_left_out(extracted):
    _, out, r = extracted
    sk = pd.read_csv(out / "skipped.csv", dtype={"patient_id": str}).set_index("patient_id")["reason"]
    assert sorted(sk.index) == ["P001", "P002", "P003"]
    assert "patient P001, T1V" in sk["P001"] and "T1V_roi.nii.gz" in sk["P001"] and "3 voxel(s)" in sk["P001"]
    assert "patient P002, T1V" in sk["P002"] and "no tumour mask" in sk["P002"]
    assert "patient P003, T1V" in sk["P003"] and "outside the image" in sk["P003"]
    assert "3 patients left out of radiomics" in r.stderr and "Traceback" not in r.stderr


def test_rerun_reads_the_cache_and_follows_changed_files(extracted):
    root, out, _ = extracted
    before = pd.read_csv(out / "features.csv", dtype={"patient_id": str, "cohort": str, "mvi_grade": str})
    res = extract_cohort(root / "cohort", out, RadiomicsConfig(sequences=("T1V",), families=("statistics",),
                                                               readers=2), progress=False)
    assert res.computed == 0
    pd.testing.assert_frame_equal(res.features.reset_index(drop=True), before, check_dtype=False)
    os.utime(root / "cohort" / "images" / "P004" / "T1V.nii.gz", ns=(1, 1))
    res = extract_cohort(root / "cohort", out, RadiomicsConfig(sequences=("T1V",), families=("statistics",),
                                                               readers=2), progress=False)
    assert res.computed == 1


def test_compare_on_a_run_without_radiomics(tmp_path):
    r = _cli("compare", tmp_path)
    assert r.returncode == 2
    assert "has no radiomics features" in r.stderr and "dlmvi radiomics" in r.stderr and "Traceback" not in r.stderr


def test_ring_and_perturbations():
    mask = np.zeros((3, 20, 20), bool)
    mask[1, 8:12, 8:12] = True
    reg = tumour_and_ring(mask, (1.0, 1.0, 5.0), 2.0, where="patient X, T1V: f", min_voxels=16)
    assert not (reg.ring & reg.tumour).any() and reg.ring[1].sum() == 36  # 2 px per side, one diagonal pixel per corner
    assert not reg.ring[0].any()  # in-plane: thick slices
    readers = perturbations(2, seed=1)
    assert readers == perturbations(2, seed=1)
    img = np.zeros((3, 20, 20), np.float32)
    _, grown = perturb_roi(img, mask, readers[0], box=True)
    ys, xs = np.nonzero(grown[1])
    assert grown.sum() == 36 and (ys.max() - ys.min(), xs.max() - xs.min()) == (5, 5)  # a box stays a box
    _, shrunk = perturb_roi(img, mask, readers[1], box=True)
    assert shrunk.sum() == 4
