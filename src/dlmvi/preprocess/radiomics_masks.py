"""The regions radiomics reads, and how a second reader would have drawn them.

* :func:`tumour_and_ring`: the tumour ROI (a mask, or rois.csv boxes rasterised as a box
  mask) and a peritumoural ring of ``ring_mm`` around it (in-plane, in mm, from the voxel
  spacing; at least one pixel), clipped to the image and to the liver mask when one is given; the share of the
  ring that fell outside the image is measured, not hidden.
* :func:`perturb_roi`: one perturbed reader: in-plane translation by a share of the ROI's
  extent, growing or shrinking by one pixel, contour randomisation (masks only: a box reader
  draws boxes) and image noise; seeded, so the same perturbation is applied to the radiomics
  ROI and to DL-MVI's crop (:mod:`dlmvi.evaluate.roi_perturbation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dlmvi.errors import ImageError

__all__ = ["Regions", "tumour_and_ring", "Perturbation", "perturbations", "perturb_roi"]


@dataclass(frozen=True)
class Regions:
    """The tumour and its ring on one sequence's LPS grid (z, y, x bool arrays)."""

    tumour: np.ndarray
    ring: np.ndarray
    ring_outside: float   # share of the full ring that lies outside the image
    ring_liver_removed: float  # share of the in-image ring removed by the liver mask (0 without one)


def tumour_and_ring(mask: np.ndarray, spacing_xyz, ring_mm: float, liver: np.ndarray | None = None,
                    *, where: str = "", min_voxels: int = 27, max_outside: float = 0.5) -> Regions:
    """Tumour and peritumoural ring.

    Args:
        mask: tumour mask (z, y, x).
        spacing_xyz: voxel size (x, y, z) in mm.
        ring_mm: ring width in mm: pixels whose centre lies within ``ring_mm`` (at least one
            pixel) of the tumour on the same axial slice (in-plane: MRI slices are thick).
        liver: liver mask on the same grid, or None.
        where: "patient P, T1V: FILE" for messages.
        min_voxels: fewest tumour voxels texture features are computed on.
        max_outside: largest share of the ring that may lie outside the image.

    Raises:
        ImageError: an ROI of fewer than ``min_voxels`` voxels; a ring that leaves the image
            (more than ``max_outside`` of it outside); a ring the liver mask removes entirely.
    """
    tumour = np.asarray(mask, dtype=bool)
    n = int(tumour.sum())
    if n < min_voxels:
        raise ImageError(f"{where}: the ROI has {n} voxel(s), fewer than the {min_voxels} radiomics needs; "
                         "draw the tumour (or its box) larger, or leave the patient out")
    sx, sy, _ = (float(v) for v in spacing_xyz)
    width = max(float(ring_mm), sx, sy)  # at least one pixel
    pad = (0, int(np.ceil(width / sy)) + 1, int(np.ceil(width / sx)) + 1)
    padded = np.pad(tumour, [(p, p) for p in pad])
    # in-plane distance (thick MRI slices): the ring lies on the tumour's own slices
    dist = ndimage.distance_transform_edt(~padded, sampling=(1e9, sy, sx))
    full = (dist > 0) & (dist <= width)
    inside = full[tuple(slice(p, p + s) for p, s in zip(pad, tumour.shape))]
    n_full, n_in = int(full.sum()), int(inside.sum())
    outside = 1 - n_in / n_full if n_full else 1.0
    if outside > max_outside:
        raise ImageError(f"{where}: {outside:.0%} of the {ring_mm:g} mm ring around the ROI lies outside the image "
                         f"(more than {max_outside:.0%}); the tumour touches the image border. Use a narrower "
                         "--ring-mm or leave the patient out")
    removed = 0.0
    if liver is not None:
        kept = inside & np.asarray(liver, dtype=bool)
        removed = 1 - kept.sum() / n_in if n_in else 1.0
        inside = kept
    if not inside.any():
        raise ImageError(f"{where}: the {ring_mm:g} mm ring lies entirely outside the liver mask; check that the "
                         "liver mask covers the tumour's surroundings")
    return Regions(tumour, inside, float(outside), float(removed))


@dataclass(frozen=True)
class Perturbation:
    """One perturbed reader (seeded).

    Attributes:
        reader: 1, 2, ... (0 is the original ROI).
        shift: in-plane translation (dy, dx) as shares of the ROI's extent.
        grow: +1 grows the ROI by one pixel in-plane, -1 shrinks it.
        contour: share of boundary pixels randomly flipped (masks only).
        noise: Gaussian image noise, SD as a share of the intensity SD inside the ROI.
        seed: seed of the contour and noise draws.
    """

    reader: int
    shift: tuple[float, float]
    grow: int
    contour: float
    noise: float
    seed: int

    def to_dict(self) -> dict:
        return {"reader": self.reader, "shift": list(self.shift), "grow": self.grow, "contour": self.contour,
                "noise": self.noise, "seed": self.seed}


def perturbations(n: int, seed: int, translation: float = 0.1, contour: float = 0.2,
                  noise: float = 0.05) -> list[Perturbation]:
    """``n`` readers: a random direction of translation each, growing and shrinking in turn."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        angle = rng.uniform(0, 2 * np.pi)
        out.append(Perturbation(i + 1, (float(translation * np.sin(angle)), float(translation * np.cos(angle))),
                                1 if i % 2 == 0 else -1, contour, noise, int(rng.integers(2**31))))
    return out


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(mask)
    ny, nx = mask.shape[1:]
    ys, yd = (slice(0, ny - dy), slice(dy, ny)) if dy >= 0 else (slice(-dy, ny), slice(0, ny + dy))
    xs, xd = (slice(0, nx - dx), slice(dx, nx)) if dx >= 0 else (slice(-dx, nx), slice(0, nx + dx))
    out[:, yd, xd] = mask[:, ys, xs]
    return out


def perturb_roi(image: np.ndarray, mask: np.ndarray, p: Perturbation, box: bool) -> tuple[np.ndarray, np.ndarray]:
    """The image and ROI as reader ``p`` would have had them.

    The translation moves the ROI by ``p.shift`` of its in-plane extent (at least one pixel
    where the share is not 0); growing/shrinking is a one-pixel in-plane dilation/erosion (a
    box stays a box); contour randomisation flips a share of the boundary pixels (not for
    boxes); noise is added to the image. The ROI never becomes empty (shrinking an ROI of one
    pixel's width leaves it as it is).
    """
    m = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(m.any(axis=0))
    ext_y, ext_x = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    dy = int(np.round(p.shift[0] * ext_y)) or int(np.sign(p.shift[0]))
    dx = int(np.round(p.shift[1] * ext_x)) or int(np.sign(p.shift[1]))
    m = _shift(m, dy, dx)
    plane = np.zeros((1, 3, 3), bool)
    plane[0] = True if box else ndimage.generate_binary_structure(2, 1)
    if p.grow > 0:
        m = ndimage.binary_dilation(m, plane)
    elif p.grow < 0:
        shrunk = ndimage.binary_erosion(m, plane)
        m = shrunk if shrunk.any() else m
    rng = np.random.default_rng(p.seed)
    if not box and p.contour > 0:
        edge = m ^ ndimage.binary_erosion(m, plane)
        outer = ndimage.binary_dilation(m, plane) & ~m
        m = m & ~(edge & (rng.random(m.shape) < p.contour / 2))
        m = m | (outer & (rng.random(m.shape) < p.contour / 2))
    if not m.any():
        m = np.asarray(mask, dtype=bool)
    img = np.asarray(image, dtype=np.float32)
    if p.noise > 0:
        sd = float(img[np.asarray(mask, dtype=bool)].std()) or 1.0
        img = img + rng.normal(0, p.noise * sd, img.shape).astype(np.float32)
    return img, m
