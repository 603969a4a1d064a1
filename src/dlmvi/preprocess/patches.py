"""From a patient's images to the network's input: the one path every command shares.

Two steps, with the patch cache between them:

1. :func:`sequence_patch`: one loaded sequence -> its key slices, tumour box and the cropped,
   resized, normalised patch ``(n_slices, size, size)``. ``dlmvi prepare`` stores it in the
   cache (and ``dlmvi harmonize`` maps it with :func:`~dlmvi.preprocess.harmonize.apply_harmonization`).
2. :func:`network_input`: a stack of such patches ``(N, k, n_slices, S, S)`` -> the network's
   input at its own input size (the per-image z-score when the patches hold raw, unharmonised
   intensities, then resizing).

Training reads step 1 from the cache (:func:`dlmvi.preprocess.patches.load_patches`); a new
patient goes through both steps at once with :func:`patient_input` (``predict-patient``, the
web server). Both end in :func:`network_input`, so a patient is seen exactly as in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dlmvi.errors import CacheError, CohortError

if TYPE_CHECKING:
    from dlmvi.preprocess.cache import PatchCache


@dataclass(frozen=True)
class SequencePatch:
    """One sequence of one patient, cropped as the study did.

    Attributes:
        sequence: T1, T1A, ...
        slices: axial key slices (LPS, 0-based).
        box: (y0, x0, y1, x1) crop box in LPS voxels, end exclusive, margin included.
        spacing: voxel size (x, y, z) in mm.
        patch: (n_slices, size, size) float32, normalised as the PrepareConfig says.
    """

    sequence: str
    slices: tuple[int, ...]
    box: tuple[int, int, int, int]
    spacing: tuple[float, float, float]
    patch: np.ndarray


def sequence_patch(loaded, config, patient_id: str, sequence: str) -> SequencePatch:
    """Key slices, tumour box and patch of one loaded sequence.

    Args:
        loaded: a :class:`~dlmvi.cohort.patient.LoadedSequence` (LPS image and mask).
        config: the :class:`~dlmvi.preprocess.cache.PrepareConfig`.
        patient_id, sequence: named in errors.

    Raises:
        CohortError: fewer key slices than the configuration needs (e.g. two boxed slices).
    """
    from dlmvi.preprocess.roi import crop_box, extract_patch, key_slices

    slices = loaded.fixed_slices or key_slices(loaded.mask, loaded.spacing[:2], config.n_slices)
    if len(slices) != config.n_slices:
        where = "boxed in rois.csv" if loaded.fixed_slices else "in the image"
        raise CohortError(
            f"patient {patient_id}, {sequence}: {len(slices)} slice(s) {where}, "
            f"{config.n_slices} consecutive key slices needed"
        )
    box = crop_box(loaded.mask, slices, config.margin)
    patch = extract_patch(loaded.image, slices, box, config.size, config.normalization)
    return SequencePatch(sequence, tuple(int(s) for s in slices), tuple(int(b) for b in box),
                         tuple(float(v) for v in loaded.spacing), patch)


def resize_patches(patches: np.ndarray, size: int) -> np.ndarray:
    """Resize (N, k, n_slices, S, S) patches to (N, k, n_slices, size, size) (area/bilinear)."""
    import torch

    if patches.shape[-1] == size and patches.shape[-2] == size:
        return np.ascontiguousarray(patches, dtype=np.float32)
    n, k, s = patches.shape[:3]
    t = torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32)).reshape(n * k * s, 1, *patches.shape[-2:])
    mode = "area" if size < patches.shape[-1] else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    out = torch.nn.functional.interpolate(t, size=(size, size), mode=mode, **kw)
    return out.reshape(n, k, s, size, size).numpy()


def network_input(patches: np.ndarray, normalization: str, harmonized: bool, size: int) -> np.ndarray:
    """Cached patches -> network input.

    Args:
        patches: (N, k, n_slices, S, S) as stored in the cache (or just computed).
        normalization: the PrepareConfig's normalisation (``"zscore"`` or ``"none"``).
        harmonized: the patches went through a fitted harmonisation (already on its scale).
        size: the network's input size.

    Returns:
        (N, k, n_slices, size, size) float32: raw, unharmonised intensities are z-scored per
        image (:mod:`dlmvi.preprocess.normalize`), then every patch is resized.
    """
    if normalization == "none" and not harmonized:
        from dlmvi.preprocess.normalize import zscore_images

        patches = zscore_images(patches)
    return resize_patches(patches, size)


def input_normalization(normalization: str, harmonization: dict | None) -> dict:
    """How the network's input was normalised, as recorded in run.json and model.json."""
    from dlmvi.preprocess.normalize import DESCRIPTION

    if harmonization:
        how = f"harmonised: {harmonization.get('method')} ({harmonization.get('description', '')})"
    elif normalization == "zscore":
        how = f"{DESCRIPTION} (in dlmvi prepare)"
    else:
        how = f"{DESCRIPTION} (raw cache, before the network)"
    return {"cache": normalization, "harmonization": (harmonization or {}).get("method"), "input": how}


def patient_input(patient, sequences, config, harmonization: dict | None, size: int, loaded: dict | None = None
                  ) -> tuple[list[SequencePatch], np.ndarray]:
    """A new patient's sequences straight to the network's input (no cache).

    Args:
        patient: :class:`~dlmvi.cohort.patient.Patient` with a source for every sequence.
        sequences: the model's sequences, in its input order.
        config: the training cache's :class:`~dlmvi.preprocess.cache.PrepareConfig`.
        harmonization: the training cache's harmonisation document, or None.
        size: the network's input size.
        loaded: {sequence: LoadedSequence} already read (e.g. by
            :func:`dlmvi.cohort.validate.check_patient`); others are read here.

    Returns:
        (the per-sequence patches, the (k, n_slices, size, size) network input).

    Raises:
        CohortError: a sequence cannot be read or cropped (names patient, sequence, file).
    """
    out = []
    for seq in sequences:
        ls = (loaded or {}).get(seq) or patient.load(seq)
        sp = sequence_patch(ls, config, patient.patient_id, seq)
        if harmonization:
            from dlmvi.preprocess.harmonize import apply_harmonization

            sp = SequencePatch(sp.sequence, sp.slices, sp.box, sp.spacing,
                               apply_harmonization(sp.patch, seq, harmonization))
        out.append(sp)
    x = np.stack([sp.patch for sp in out])[None]
    return out, network_input(x, config.normalization, bool(harmonization), size)[0]


__all__ = ["SequencePatch", "sequence_patch", "resize_patches", "network_input", "input_normalization",
           "patient_input"]


def load_patches(cache: PatchCache, patient_ids, sequences, size: int, dtype=np.float32,
                 chunk: int = 64, harmonization: dict | None = None) -> np.ndarray:
    """Patches of ``patient_ids`` ready for the network: (N, k, n_slices, size, size).

    Reads the cache and applies :func:`network_input` (the per-image
    z-score for a raw, unharmonised cache; resizing to the network's input size), ``chunk``
    patients at a time, into one array of ``dtype``: ``np.float16`` keeps a float16 cache at
    half the memory of float32 (the peak is the result plus one float32 chunk).

    Args:
        harmonization: a fitted harmonisation document (a model's, see
            :mod:`dlmvi.preprocess.harmonize`) to apply to a raw cache's patches first, each
            stored as a harmonised cache would store it (the cache's dtype).

    Raises:
        CacheError: ``harmonization`` given for a cache that is not raw.
    """
    ids, sequences = list(patient_ids), tuple(sequences)
    out = np.empty((len(ids), len(sequences), cache.config.n_slices, size, size), dtype)
    harmonized = bool(cache.meta.get("harmonization"))
    if harmonization is not None:
        if harmonized or cache.config.normalization != "none":
            raise CacheError(f"{cache.root}: the model's {harmonization.get('method')} harmonisation applies to raw "
                             "patches; predict from the raw cache (`dlmvi prepare --normalization none`)")
        from dlmvi.preprocess.harmonize import apply_harmonization
    for s in range(0, len(ids), chunk):
        x = cache.stack(ids[s:s + chunk], sequences)
        if harmonization is not None:
            for i in range(x.shape[0]):
                for j, seq in enumerate(sequences):
                    x[i, j] = apply_harmonization(x[i, j], seq, harmonization).astype(cache.dtype, copy=False)
        out[s:s + chunk] = network_input(x, cache.config.normalization, harmonized or harmonization is not None, size)
    return out
