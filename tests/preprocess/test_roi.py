import numpy as np
import pytest

from dlmvi.preprocess.roi import crop_box, extract_patch, key_slices, slice_diameters
from factories import tumour_volume


def test_slice_diameter_of_a_square_is_its_diagonal():
    mask = np.zeros((1, 20, 20), bool)
    mask[0, 5:15, 5:15] = True  # 10 x 10 pixels
    d = slice_diameters(mask, (1.0, 2.0))
    assert d[0] == pytest.approx(np.hypot(10 * 1.0, 10 * 2.0))


def test_key_slices_are_those_with_largest_tumour():
    _, mask = tumour_volume(centre_zyx=(6, 18, 26), radii_zyx=(2.5, 6, 8))
    assert key_slices(mask, (2.0, 2.0), 3) == [5, 6, 7]


def test_key_slices_prefer_larger_diameter_over_earlier_slice():
    mask = np.zeros((10, 30, 30), bool)
    mask[1:4, 10:13, 10:13] = True  # small tumour part
    mask[6:9, 5:25, 5:25] = True  # large cross-sections
    assert key_slices(mask, (1.0, 1.0), 3) == [6, 7, 8]


def test_key_slices_at_volume_edge():
    mask = np.zeros((5, 10, 10), bool)
    mask[0, 2:8, 2:8] = True
    assert key_slices(mask, (1.0, 1.0), 3) == [0, 1, 2]


def test_crop_contains_tumour_plus_margin():
    _, mask = tumour_volume()
    slices = [5, 6, 7]
    y0, x0, y1, x1 = crop_box(mask, slices, margin=4)
    ys, xs = np.nonzero(mask[slices].any(0))
    assert y0 <= ys.min() - 4 and y1 >= ys.max() + 1 + 4
    assert x0 <= xs.min() - 4 and x1 >= xs.max() + 1 + 4
    assert (y1 - y0) == (x1 - x0)  # square, aspect ratio kept


def test_crop_is_clipped_to_the_image():
    mask = np.zeros((3, 20, 30), bool)
    mask[:, 0:3, 25:30] = True  # tumour touching two borders
    y0, x0, y1, x1 = crop_box(mask, [0, 1, 2], margin=8)
    # margin box y [-8, 11) and x [17, 38) clipped to [0, 11) and [17, 30); then squared to 13
    assert (y0, x0, y1, x1) == (0, 17, 13, 30)


def test_extract_patch_shape_and_zscore():
    img, mask = tumour_volume()
    box = crop_box(mask, [5, 6, 7], 4)
    p = extract_patch(img.astype(np.float32), [5, 6, 7], box, 32)
    assert p.shape == (3, 32, 32) and p.dtype == np.float32
    assert abs(float(p.mean())) < 1e-4 and float(p.std()) == pytest.approx(1.0, rel=1e-3)


def test_extract_patch_raw_keeps_intensities():
    img = np.full((3, 16, 16), 7.0, np.float32)
    p = extract_patch(img, [0, 1, 2], (0, 0, 16, 16), 8, normalization="none")
    np.testing.assert_allclose(p, 7.0, rtol=1e-6)
