"""The one intensity normalisation of dlmvi: a per-image z-score.

"Image" means one sequence's tumour crop over all its key slices (``(n_slices, S, S)``): the
mean and standard deviation are taken over every voxel of the crop (the tumour and its
surroundings on the 3 slices together), then intensities are clipped to +-5 sd so that a few
bright vessels cannot dominate. It is used by ``dlmvi prepare --normalization zscore``, by
the ``zscore`` harmonisation of a raw cache, and on the fly for a raw
(``--normalization none``), unharmonised cache before the network sees it.
"""

from __future__ import annotations

import numpy as np

#: Clip after normalisation, in standard deviations.
CLIP_SD = 5.0

#: Standard deviation below which an image counts as constant (left centred, not scaled).
MIN_SD = 1e-6

#: How the normalisation is recorded in run.json, model.json and the report.
DESCRIPTION = "per-image z-score over the crop's key slices, clipped to +-5 sd"


def zscore_images(x: np.ndarray, image_ndim: int = 3) -> np.ndarray:
    """Z-score every image of ``x``; the last ``image_ndim`` axes form one image.

    Args:
        x: intensities, e.g. one patch ``(n_slices, S, S)`` or a batch
            ``(N, k, n_slices, S, S)``.
        image_ndim: trailing axes that make one image (3: the key slices of a crop).

    Returns:
        float32 array of ``x``'s shape, mean 0 and sd 1 per image, clipped to +-5.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    lead = x.shape[: x.ndim - image_ndim]
    flat = x.reshape(*lead, -1) if lead else x.reshape(1, -1)
    mu = flat.mean(axis=-1, keepdims=True)
    sd = flat.std(axis=-1, keepdims=True)
    out = np.clip((flat - mu) / np.where(sd > MIN_SD, sd, np.float32(1.0)), -CLIP_SD, CLIP_SD)
    return out.reshape(x.shape).astype(np.float32, copy=False)


__all__ = ["zscore_images", "CLIP_SD", "DESCRIPTION"]
