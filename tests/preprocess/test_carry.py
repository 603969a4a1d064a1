"""Tests of src/dlmvi/preprocess/carry.py: a box carried between sequences of one frame of
reference lands where the same physical region lies.

The reference is independent of the carrying code: the box's region is rasterised on the
source grid and resampled onto the target grid by SimpleITK (nearest neighbour, identity
transform: the same patient coordinates); the carried rectangle must hold that region's
voxels, within one voxel on every side, and the carried key slices must be centred within one
slice of it. Real geometry: two Canon series of one session (one double-oblique, one
sagittal-oblique) in ../shared/dicom_real; phantom sequences resampled to other grids
(spacing, rotation, axis order and direction).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from dlmvi.io.images import read_volume, write_nifti
from dlmvi.preprocess.carry import CarryError, Grid, carry_boxes, carry_to_all, frame_of_reference

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "dicom_real"
CANON = ("canon_b0_double_oblique", "canon_b0_sag_oblique")


def region_on(source_img, rows, target_img) -> np.ndarray:
    """The boxes' region rasterised on the source and resampled onto the target (z, y, x)."""
    nx, ny, nz = source_img.GetSize()
    m = np.zeros((nz, ny, nx), np.uint8)
    for s, x0, y0, x1, y1 in rows:
        m[s, y0:y1 + 1, x0:x1 + 1] = 1
    mask = sitk.GetImageFromArray(m)
    mask.CopyInformation(source_img)
    out = sitk.Resample(mask, target_img, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out)


def assert_lands_on_region(rows, source_img, target_img, carried):
    on = region_on(source_img, rows, target_img)
    z, y, x = np.nonzero(on)
    assert z.size > 0, "the region does not reach the target volume"
    (s0, x0, y0, x1, y1) = carried[0]
    assert all(r[1:] == (x0, y0, x1, y1) for r in carried)
    slices = [r[0] for r in carried]
    assert slices == list(range(slices[0], slices[0] + 3))
    nx, ny, nz = target_img.GetSize()
    # the carried rectangle holds the region, at most one voxel larger on each side (clipped at the border)
    assert x0 <= x.min() <= x0 + 1 or x0 == 0 and x.min() <= 1
    assert x1 - 1 <= x.max() <= x1
    assert y0 <= y.min() <= y0 + 1
    assert y1 - 1 <= y.max() <= y1
    # the key slices are centred on the region (within one slice)
    assert abs(np.mean(slices) - (z.min() + z.max()) / 2) <= 1.0


@pytest.fixture(scope="module")
def canon(tmp_path_factory):
    if not (REAL / "manifest.json").is_file():
        pytest.skip(f"real scanner cases not found at {REAL} (../shared/dicom_real beside the repository)")
    root = tmp_path_factory.mktemp("canon")
    out = {}
    for case in CANON:
        with tarfile.open(REAL / "cases" / f"{case}.tar.xz") as tar:
            tar.extractall(root, filter="data")
        folder = next(p for p in root.rglob("*") if p.is_dir() and p.name == case)
        out[case] = (read_volume(folder, reorient=False), frame_of_reference(folder))
    return out


def test_the_canon_series_share_one_frame_of_reference_but_not_a_grid(canon):
    (a, fa), (b, fb) = canon[CANON[0]], canon[CANON[1]]
    assert fa == fb == "1.2.392.200036.9116.4.2.9143.2234.9.1.2.2"
    # double-oblique vs sagittal-oblique: slice normals 43 degrees apart
    na, nb = np.reshape(a.GetDirection(), (3, 3))[:, 2], np.reshape(b.GetDirection(), (3, 3))[:, 2]
    assert 40 < np.degrees(np.arccos(abs(na @ nb))) < 46


@pytest.mark.parametrize("src,dst", [(0, 1), (1, 0)])
@pytest.mark.parametrize("rows", [
    [(19, 30, 34, 44, 46), (20, 30, 34, 44, 46), (21, 30, 34, 44, 46)],
    [(12, 22, 40, 35, 52), (13, 21, 40, 35, 53), (14, 22, 41, 34, 52)],
])
def test_a_box_on_one_canon_series_lands_on_the_same_region_of_the_other(canon, src, dst, rows):
    (a, fa), (b, fb) = canon[CANON[src]], canon[CANON[dst]]
    carried = carry_boxes(rows, Grid.from_image(a, fa), Grid.from_image(b, fb))
    assert_lands_on_region(rows, a, b, carried)


def test_series_of_different_frames_of_reference_are_not_carried(canon):
    (a, fa), (b, _) = canon[CANON[0]], canon[CANON[1]]
    rows = [(19, 30, 34, 44, 46), (20, 30, 34, 44, 46), (21, 30, 34, 44, 46)]
    with pytest.raises(CarryError, match="different frames of reference"):
        carry_boxes(rows, Grid.from_image(a, fa), Grid.from_image(b, "1.2.3.4"))
    far = sitk.Image(b)
    far.SetOrigin(tuple(v + 5000.0 for v in b.GetOrigin()))
    with pytest.raises(CarryError, match="do not overlap"):
        carry_boxes(rows, Grid.from_image(a, fa), Grid.from_image(far))


def _resampled(img, spacing, angles_deg, size, permute=None, flip=None):
    """``img`` resampled (linear) onto a new grid centred on it: spacing, rotation about z then x."""
    az, ax = np.radians(angles_deg)
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    d = rz @ rx @ np.reshape(img.GetDirection(), (3, 3))
    if permute is not None:
        d = d[:, list(permute)]
    if flip is not None:
        d = d * np.asarray(flip, float)[None, :]
    centre = np.asarray(img.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in img.GetSize()]))
    origin = centre - d @ (np.asarray(spacing) * (np.asarray(size) - 1) / 2)
    ref = sitk.Image([int(v) for v in size], sitk.sitkFloat32)
    ref.SetSpacing(spacing)
    ref.SetDirection(tuple(d.ravel()))
    ref.SetOrigin(tuple(origin))
    return sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


@pytest.fixture(scope="module")
def phantom_t1(tmp_path_factory):
    from dlmvi.datasets.phantom import make_phantom

    root = make_phantom(tmp_path_factory.mktemp("ph") / "c", n_patients=2, size=64, progress=False,
                        cohorts=(("2015", 2),))
    return root / "images" / "P0001" / "T1.nii.gz"


@pytest.mark.parametrize("spacing,angles,size,permute,flip", [
    ((4.1, 3.3, 2.5), (0, 0), (60, 70, 80), None, None),            # another axial grid
    ((5.0, 5.0, 4.0), (25, 10), (72, 72, 40), None, (1, -1, 1)),    # double-oblique, y flipped
    ((3.0, 3.0, 6.0), (5, 0), (64, 40, 50), (1, 2, 0), None),       # sagittal-like: axes permuted
])
def test_phantom_sequences_resampled_to_other_grids(phantom_t1, tmp_path, spacing, angles, size, permute, flip):
    src_img = read_volume(phantom_t1, reorient=False)
    target_file = write_nifti(_resampled(src_img, spacing, angles, size, permute, flip), tmp_path / "T2.nii.gz")
    dst_img = read_volume(target_file, reorient=False)  # the grid as dlmvi reads the file
    rows = [(10, 24, 20, 38, 33), (11, 24, 20, 38, 33), (12, 25, 21, 37, 32)]
    grids = {"T1": Grid.from_image(src_img), "T2": Grid.from_image(dst_img)}
    carried, refused = carry_to_all(rows, "T1", grids)
    assert refused == {}
    assert_lands_on_region(rows, src_img, dst_img, carried["T2"])


def test_on_the_same_grid_a_box_stays_where_it_is(phantom_t1):
    g = Grid.from_image(read_volume(phantom_t1, reorient=False))
    rows = [(10, 24, 20, 38, 33), (11, 24, 20, 38, 33), (12, 24, 20, 38, 33)]
    assert carry_boxes(rows, g, g) == tuple(rows)


def test_a_box_beyond_the_target_volume_is_refused(phantom_t1, tmp_path):
    src_img = read_volume(phantom_t1, reorient=False)
    small = _resampled(src_img, (2.0, 2.0, 2.0), (0, 0), (20, 20, 10))  # a small central block
    rows = [(0, 0, 0, 4, 4), (1, 0, 0, 4, 4), (2, 0, 0, 4, 4)]       # a corner of the source
    with pytest.raises(CarryError, match="outside this sequence's volume"):
        carry_boxes(rows, Grid.from_image(src_img), Grid.from_image(small))
