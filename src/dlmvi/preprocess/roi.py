"""Key slices and the tumour crop: the study's region of interest.

Per sequence the study took the 3 consecutive axial slices where the tumour diameter is
largest, and a rectangle around the tumour enlarged by 5-10 pixels on every side.

Definitions used here:
* tumour diameter on a slice = maximum Feret (caliper) diameter of the mask in mm;
* key slices = the ``n`` consecutive slices whose summed diameters are largest (ties: the
  window with the larger tumour area, then the lower slice index);
* box = the bounding box of the mask over the key slices, enlarged by ``margin`` pixels and
  clipped to the image, then its shorter side extended (centred, shifted inside the image)
  to make it square where the image allows, so that resizing keeps the aspect ratio.
"""

from __future__ import annotations

import numpy as np


def slice_diameters(mask: np.ndarray, spacing_xy: tuple[float, float]) -> np.ndarray:
    """Maximum Feret diameter (mm) of ``mask`` (z, y, x) on each axial slice; 0 if empty.

    Pixels are squares, so the diameter is the largest distance between pixel corners. The
    convex hull of a slice's pixels is the hull of each row's leftmost and rightmost pixel, so
    only their four outer corners per row are candidates: exact, and cheap for large tumours.
    """
    out = np.zeros(mask.shape[0])
    sx, sy = spacing_xy
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        m = mask[z]
        rows = np.flatnonzero(m.any(axis=1))
        left = m[rows].argmax(axis=1)
        right = m.shape[1] - m[rows][:, ::-1].argmax(axis=1)  # one past the rightmost pixel
        xs = np.concatenate([left, left, right, right]) * sx
        ys = np.concatenate([rows, rows + 1, rows, rows + 1]) * sy
        d2 = (xs[:, None] - xs[None, :]) ** 2 + (ys[:, None] - ys[None, :]) ** 2
        out[z] = float(np.sqrt(d2.max()))
    return out


def key_slices(mask: np.ndarray, spacing_xy: tuple[float, float], n: int = 3) -> list[int]:
    """Indices of the ``n`` consecutive axial slices with the largest tumour diameter."""
    nz = mask.shape[0]
    n = min(n, nz)
    diam = slice_diameters(mask, spacing_xy)
    area = mask.sum(axis=(1, 2)).astype(float)
    best, best_key = 0, None
    for z0 in range(nz - n + 1):
        key = (diam[z0 : z0 + n].sum(), area[z0 : z0 + n].sum(), -z0)
        if best_key is None or key > best_key:
            best, best_key = z0, key
    return list(range(best, best + n))


def crop_box(
    mask: np.ndarray, slices: list[int], margin: int, square: bool = True
) -> tuple[int, int, int, int]:
    """Box (y0, x0, y1, x1), end exclusive, around the tumour on ``slices``.

    The box contains the mask's bounding box on those slices plus ``margin`` pixels on every
    side, clipped to the image; with ``square`` its shorter side is then extended
    symmetrically (shifted inward at the border) to make it square where the image allows.
    """
    ny, nx = mask.shape[1:]
    m = mask[slices].any(axis=0)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        raise ValueError("mask is empty on the key slices")
    y0, y1 = int(ys.min()) - margin, int(ys.max()) + 1 + margin
    x0, x1 = int(xs.min()) - margin, int(xs.max()) + 1 + margin
    y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, ny), min(x1, nx)
    if square:
        side = max(y1 - y0, x1 - x0)
        y0, y1 = _grow(y0, y1, min(side, ny), ny)
        x0, x1 = _grow(x0, x1, min(side, nx), nx)
    return y0, x0, y1, x1


def _grow(a: int, b: int, side: int, n: int) -> tuple[int, int]:
    """Extend [a, b) to length >= side, centred, shifted to stay inside [0, n) if possible."""
    extra = side - (b - a)
    if extra > 0:
        a -= extra // 2
        b += extra - extra // 2
        if a < 0:
            b, a = min(b - a, n), 0
        if b > n:
            a, b = max(a - (b - n), 0), n
    return a, b


def extract_patch(
    image: np.ndarray,
    slices: list[int],
    box: tuple[int, int, int, int],
    size: int,
    normalization: str = "zscore",
) -> np.ndarray:
    """Crop ``box`` from ``slices`` of ``image`` (z, y, x), resize to size x size, normalise.

    Resizing is bilinear with anti-aliasing (torch). ``"zscore"``: the per-image z-score of
    :mod:`dlmvi.preprocess.normalize`; ``"none"``: raw intensities.

    Returns:
        float32 array (len(slices), size, size).
    """
    import torch
    import torch.nn.functional as F

    y0, x0, y1, x1 = box
    crop = np.ascontiguousarray(image[slices, y0:y1, x0:x1], dtype=np.float32)
    t = torch.from_numpy(crop)[None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    out = t.numpy()
    if normalization == "zscore":
        from dlmvi.preprocess.normalize import zscore_images

        return zscore_images(out)
    if normalization != "none":
        raise ValueError(f"unknown normalization {normalization!r}")
    return out.astype(np.float32, copy=False)
