"""Property tests (hypothesis) of src/dlmvi/preprocess/roi.py: crop_box, key_slices, slice_diameters.

For random masks, margins and image sizes:
* the box lies within the image and contains the mask's bounding box on the key slices plus
  the margin, clipped to the image;
* it is square with side max(height, width) of that clipped box whenever the image allows,
  and otherwise spans the whole image along the short axis;
* the key slices are ``n`` consecutive in-range slices whose summed diameter is the largest
  of all windows (checked against a brute force), touching the tumour;
* a slice's Feret diameter lies between the longer side and the diagonal of the mask's
  pixel-corner bounding box.
"""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dlmvi.preprocess.roi import crop_box, key_slices, slice_diameters

SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def masks(draw, max_z=6, max_yx=48):
    """A (z, y, x) mask with at least one voxel, made of 1-3 random boxes plus random speckle."""
    nz = draw(st.integers(1, max_z))
    ny = draw(st.integers(1, max_yx))
    nx = draw(st.integers(1, max_yx))
    m = np.zeros((nz, ny, nx), bool)
    for _ in range(draw(st.integers(1, 3))):
        z0 = draw(st.integers(0, nz - 1))
        z1 = draw(st.integers(z0 + 1, nz))
        y0 = draw(st.integers(0, ny - 1))
        y1 = draw(st.integers(y0 + 1, ny))
        x0 = draw(st.integers(0, nx - 1))
        x1 = draw(st.integers(x0 + 1, nx))
        m[z0:z1, y0:y1, x0:x1] = True
    seed = draw(st.integers(0, 2**16))
    speckle = np.random.default_rng(seed).random(m.shape) < draw(st.sampled_from([0.0, 0.01]))
    return m | speckle


@SETTINGS
@given(mask=masks(), margin=st.integers(0, 20), n=st.integers(1, 4), square=st.booleans())
def test_crop_box_contains_tumour_plus_margin_within_image(mask, margin, n, square):
    nz, ny, nx = mask.shape
    slices = key_slices(mask, (0.8, 0.8), n)
    assert mask[slices].any()
    y0, x0, y1, x1 = crop_box(mask, slices, margin, square=square)
    assert 0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx
    ys, xs = np.nonzero(mask[slices].any(axis=0))
    by0, by1 = max(ys.min() - margin, 0), min(ys.max() + 1 + margin, ny)
    bx0, bx1 = max(xs.min() - margin, 0), min(xs.max() + 1 + margin, nx)
    assert y0 <= by0 and y1 >= by1 and x0 <= bx0 and x1 >= bx1
    h, w = by1 - by0, bx1 - bx0
    if not square:
        assert (y0, x0, y1, x1) == (by0, bx0, by1, bx1)
        return
    side = max(h, w)
    assert y1 - y0 == min(side, ny) and x1 - x0 == min(side, nx)
    if side <= min(ny, nx):
        assert y1 - y0 == x1 - x0  # square where the image allows
    # growing is centred unless the border forces a shift: the box never grows by more than
    # one pixel more on one side than on the other, except against the image edge
    for a, b, ba, bb, lim in ((y0, y1, by0, by1, ny), (x0, x1, bx0, bx1, nx)):
        lo, hi = ba - a, b - bb
        assert lo >= 0 and hi >= 0
        if a > 0 and b < lim:
            assert abs(lo - hi) <= 1


@SETTINGS
@given(mask=masks(), n=st.integers(1, 4), sx=st.floats(0.3, 3.0), sy=st.floats(0.3, 3.0))
def test_key_slices_are_the_best_consecutive_window(mask, n, sx, sy):
    nz = mask.shape[0]
    ks = key_slices(mask, (sx, sy), n)
    k = min(n, nz)
    assert len(ks) == k and ks == list(range(ks[0], ks[0] + k)) and 0 <= ks[0] and ks[-1] < nz
    d = slice_diameters(mask, (sx, sy))
    best = max(d[z : z + k].sum() for z in range(nz - k + 1))
    assert math.isclose(d[ks].sum(), best, rel_tol=1e-12, abs_tol=1e-9)
    assert mask[ks].any()


@SETTINGS
@given(mask=masks(max_z=2), sx=st.floats(0.3, 3.0), sy=st.floats(0.3, 3.0))
def test_diameter_between_longer_side_and_diagonal_of_bounding_box(mask, sx, sy):
    d = slice_diameters(mask, (sx, sy))
    for z in range(mask.shape[0]):
        if not mask[z].any():
            assert d[z] == 0
            continue
        ys, xs = np.nonzero(mask[z])
        w = (xs.max() - xs.min() + 1) * sx
        h = (ys.max() - ys.min() + 1) * sy
        assert max(w, h) - 1e-9 <= d[z] <= math.hypot(w, h) + 1e-9
