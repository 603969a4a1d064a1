"""Intensity harmonisation of a patch cache across cohorts (scanners, protocols).

Two methods, both writing a derived cache in the format of :mod:`dlmvi.preprocess.cache`:

- ``"nyul"``: Nyúl-Udupa histogram standardisation (Nyúl & Udupa 1999; Nyúl, Udupa & Zhang
  2000). For every image (one patient's patch of one sequence, all its key slices) the
  landmarks are the percentiles 1, 10, 20, ..., 90, 99 of its intensities. The *standard
  landmarks* of a sequence are fitted on the development cohort only: each development image
  is mapped linearly so that its 1st and 99th percentiles fall on 0 and 100, the mapped
  landmarks are averaged, and the scale is then shifted and divided so that the mapped
  development images have mean 0 and standard deviation 1 on average (a z-score-like scale
  the network is used to). Every image of every cohort is then mapped piecewise linearly
  from its own landmarks onto the standard landmarks (the first/last segment extended beyond
  the 1st/99th percentile) and clipped to +-5, with the standard landmarks left unchanged
  for the other cohorts. Because percentiles follow any increasing transform, an image
  whose intensities went through ``a * x + b`` (``a > 0``, another scanner's gain and
  offset) lands on the same values as the original, and a monotone non-linear change
  (contrast, gamma) is corrected up to the piecewise-linear approximation.
- ``"zscore"``: per-image z-score of the crop (the ROI and its surroundings, all key slices
  together), clipped to +-5 sd. Nothing is fitted.
- ``"global"``: one linear scale per sequence (mean and sd of the development cohort's
  patches), applied unchanged to every cohort, with no per-image correction: the baseline
  under which a scanner's gain and offset reach the network ("no harmonisation").

The source cache should be prepared with ``dlmvi prepare --normalization none`` (raw
intensities); on an already z-scored cache Nyúl still works (it is invariant to per-image
affine changes) but the +-5 sd clipping of the source is kept.

``cache.json`` of the derived cache keeps the source's ``params`` (the
:class:`~dlmvi.preprocess.cache.PrepareConfig`) and adds ``"harmonization"``: the method,
the development cohort, the percentiles and the fitted landmarks per sequence, so that
:func:`apply_harmonization` can standardise a new patient's patch with exactly the same map.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np

from dlmvi.errors import CacheError, ConfigError, DlmviWarning
from dlmvi.preprocess.normalize import CLIP_SD, DESCRIPTION, zscore_images

METHODS = ("nyul", "zscore", "global")
NYUL_PERCENTILES: tuple[float, ...] = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99)
HARMONIZATION_FORMAT = "dlmvi-harmonization/1"
CLIP = CLIP_SD
#: scale of the intermediate Nyúl mapping: 1st -> 0, 99th percentile -> 100
_S_MIN, _S_MAX = 0.0, 100.0


def image_landmarks(patch: np.ndarray, percentiles=NYUL_PERCENTILES) -> np.ndarray:
    """Percentile landmarks of one image (all slices of a patch together), strictly increasing.

    Ties (flat regions, e.g. a constant background) are spread by a negligible amount so the
    piecewise-linear map stays invertible.
    """
    lm = np.percentile(np.asarray(patch, dtype=np.float64), percentiles)
    return _increasing(lm)


def _increasing(lm: np.ndarray) -> np.ndarray:
    lm = np.maximum.accumulate(np.asarray(lm, dtype=np.float64))
    span = max(lm[-1] - lm[0], abs(lm[-1]), 1.0)
    eps = 1e-6 * span
    for i in range(1, lm.size):
        if lm[i] <= lm[i - 1]:
            lm[i] = lm[i - 1] + eps
    return lm


def piecewise_linear(x: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Map ``x`` by the increasing piecewise-linear function through (src[i], dst[i]).

    Beyond the first/last landmark the first/last segment is extended (not clamped), as in
    Nyúl's method.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.interp(x, src, dst)
    lo_slope = (dst[1] - dst[0]) / (src[1] - src[0])
    hi_slope = (dst[-1] - dst[-2]) / (src[-1] - src[-2])
    y = np.where(x < src[0], dst[0] + (x - src[0]) * lo_slope, y)
    y = np.where(x > src[-1], dst[-1] + (x - src[-1]) * hi_slope, y)
    return y


def nyul_mapped_landmarks(images, percentiles=NYUL_PERCENTILES) -> np.ndarray:
    """Each image's landmarks mapped linearly so that its 1st/99th percentiles fall on 0 and 100.

    The first step of the Nyúl fit: the standard scale is their mean. Returns an array
    (n_images, n_percentiles). A federation's sites send only its column sums (and the number of
    images), from which :func:`standard_scale` gives the same scale as a pooled fit.
    """
    out = []
    for img in images:
        lm = image_landmarks(np.asarray(img, dtype=np.float64), percentiles)
        out.append(_S_MIN + (lm - lm[0]) * ((_S_MAX - _S_MIN) / (lm[-1] - lm[0])))
    return np.asarray(out, dtype=np.float64).reshape(len(out), len(tuple(percentiles)))


def standard_scale(landmark_sum, n_images: int) -> np.ndarray:
    """The intermediate standard scale: the mean of ``n_images`` mapped landmark vectors whose
    sum is ``landmark_sum`` (made strictly increasing)."""
    return _increasing(np.asarray(landmark_sum, dtype=np.float64) / int(n_images))


def nyul_image_moments(images, scale, percentiles=NYUL_PERCENTILES) -> tuple[np.ndarray, np.ndarray]:
    """Per-image mean and mean square of the images once mapped onto ``scale`` (the second step
    of the fit; sites of a federation send their sums)."""
    means, second = [], []
    scale = np.asarray(scale, dtype=np.float64)
    for img in images:
        a = np.asarray(img, dtype=np.float64)
        m = piecewise_linear(a, image_landmarks(a, percentiles), scale)
        means.append(m.mean())
        second.append((m**2).mean())
    return np.asarray(means), np.asarray(second)


def standard_landmarks(scale, sum_means: float, sum_second: float, n_images: int) -> np.ndarray:
    """The standard landmarks: ``scale`` shifted and divided so that the mapped images have mean
    0 and standard deviation 1 on average (from the sums of their means and mean squares)."""
    center = sum_means / int(n_images)
    spread = float(np.sqrt(max(sum_second / int(n_images) - center**2, 1e-12)))
    return (np.asarray(scale, dtype=np.float64) - center) / spread


class NyulStandardizer:
    """Nyúl-Udupa standardisation of one sequence, fitted on development images.

    Args:
        percentiles: landmark percentiles (default 1, 10, ..., 90, 99).

    Attributes:
        landmarks_: standard landmarks (output scale, z-score-like), one per percentile.
        n_images_: number of images it was fitted on.
    """

    def __init__(self, percentiles=NYUL_PERCENTILES):
        self.percentiles = tuple(float(p) for p in percentiles)

    def fit(self, images) -> "NyulStandardizer":
        """Fit the standard landmarks on an iterable of images (arrays of any shape)."""
        images = list(images)
        if not images:
            raise CacheError("Nyúl standardisation needs at least one development image")
        mu = standard_scale(np.sum(nyul_mapped_landmarks(images, self.percentiles), axis=0), len(images))
        means, second = nyul_image_moments(images, mu, self.percentiles)
        self.landmarks_ = standard_landmarks(mu, float(np.sum(means)), float(np.sum(second)), len(images))
        self.n_images_ = len(images)
        return self

    def transform(self, image) -> np.ndarray:
        """Standardise one image (float32, same shape), clipped to +-5."""
        return apply_nyul(image, self.landmarks_, self.percentiles)

    def to_dict(self) -> dict:
        return {"landmarks": [float(v) for v in self.landmarks_], "n_images": int(self.n_images_)}


def apply_nyul(image, landmarks, percentiles=NYUL_PERCENTILES) -> np.ndarray:
    """Map an image's own percentile landmarks onto ``landmarks``; clip to +-5."""
    a = np.asarray(image, dtype=np.float64)
    lm_img = image_landmarks(a, percentiles)
    out = piecewise_linear(a, lm_img, np.asarray(landmarks, dtype=np.float64))
    return np.clip(out, -CLIP, CLIP).astype(np.float32)


def apply_harmonization(patch, sequence: str, params: dict) -> np.ndarray:
    """Harmonise one patient's patch of one sequence with a cache's recorded harmonisation.

    Args:
        patch: (n_slices, size, size) intensities, prepared like the training cache's source
            (same ``dlmvi prepare`` settings, normally ``--normalization none``).
        sequence: its sequence name (``"T1"``, ...).
        params: the ``"harmonization"`` entry of the harmonised cache's ``cache.json`` (also
            copied into checkpoints trained on it).

    Returns:
        float32 array of the patch's shape.
    """
    method = params.get("method")
    if method == "zscore":
        return zscore_images(patch, image_ndim=np.ndim(patch))
    if method == "global":
        scales = params.get("scales", {})
        if sequence not in scales:
            raise CacheError(f"{sequence}: the global scale was fitted on {', '.join(scales) or 'no sequence'} only")
        mu, sd = scales[sequence]
        return np.clip((np.asarray(patch, np.float64) - mu) / sd, -CLIP, CLIP).astype(np.float32)
    if method == "nyul":
        seqs = params.get("landmarks", {})
        if sequence not in seqs:
            raise CacheError(
                f"{sequence}: the Nyúl harmonisation was fitted on {', '.join(seqs) or 'no sequence'} only; "
                f"rerun `dlmvi harmonize` on a cache that holds {sequence}"
            )
        return apply_nyul(patch, seqs[sequence], params.get("percentiles", NYUL_PERCENTILES))
    raise ConfigError(f"unknown harmonisation method {method!r}; use one of {', '.join(METHODS)}")


#: What each fitted method is (recorded with its parameters).
_DESCRIPTIONS = {
    "global": "one linear scale per sequence fitted on the development cohort (mean 0, sd 1 there), applied "
              "unchanged to every cohort; no per-image correction",
    "nyul": "Nyúl-Udupa histogram standardisation: standard landmarks fitted on the development cohort only, "
            "scaled to mean 0 / sd 1 on it, applied unchanged to every cohort; clipped to +-5",
}


def harmonization_document(method: str, params: dict, counts: dict | None = None) -> dict:
    """The ``"harmonization"`` document of fitted parameters (what :func:`apply_harmonization`
    reads): ``params`` is ``{sequence: [mean, sd]}`` for ``"global"`` and ``{sequence:
    landmarks}`` for ``"nyul"``; ``counts`` the number of fit images per sequence (Nyúl)."""
    doc = {"format": HARMONIZATION_FORMAT, "method": method}
    if method == "global":
        doc.update({"scales": params, "description": _DESCRIPTIONS["global"]})
    else:
        doc.update({"percentiles": list(NYUL_PERCENTILES), "landmarks": params, "n_fit_images": counts or {},
                    "description": _DESCRIPTIONS["nyul"]})
    return doc


class Harmonizer:
    """A fitted image harmonisation (``"nyul"`` or ``"global"``), scikit-learn style.

    Fit it on the training patients of the model it serves - a fold's training patients for
    that fold's model, every development patient for the final model - and apply it to any
    patient: no patient a model is evaluated on shapes the harmonisation of its training data.

    Args:
        method: ``"nyul"`` (Nyúl-Udupa landmarks) or ``"global"`` (one linear scale per sequence).

    Attributes (after :meth:`fit`):
        document_: the ``"harmonization"`` document (method, fitted parameters per sequence,
            number of fit images; see the module docstring), as recorded in ``cache.json``,
            checkpoints and ``model.json``; :func:`apply_harmonization` applies it.
        fit_patients_: the patient ids it was fitted on (kept with a training run's checkpoints
            so that a leakage check can verify them; not exported with a model).
    """

    def __init__(self, method: str = "nyul"):
        if method not in ("nyul", "global"):
            raise ConfigError(f"a fitted harmonisation is 'nyul' or 'global', not {method!r}")
        self.method = method

    def fit(self, images_by_sequence, patient_ids=None) -> "Harmonizer":
        """Fit on ``{sequence: [patch, ...]}`` (each patch any shape; a patient's key slices).

        Args:
            images_by_sequence: the training patients' raw patches per sequence.
            patient_ids: who they are (recorded as :attr:`fit_patients_`).
        """
        params, counts = {}, {}
        for seq, images in images_by_sequence.items():
            images = list(images)
            if not images:
                continue
            if self.method == "global":
                vals = np.concatenate([np.asarray(im, np.float64).ravel() for im in images])
                params[seq] = [float(vals.mean()), float(vals.std()) or 1.0]
            else:
                st = NyulStandardizer().fit(images)
                params[seq] = st.to_dict()["landmarks"]
                counts[seq] = st.n_images_
        if not params:
            raise CacheError(f"no patch to fit the {self.method} harmonisation on")
        doc = harmonization_document(self.method, params, counts)
        self.document_ = doc
        self.fit_patients_ = None if patient_ids is None else [str(p) for p in patient_ids]
        return self

    def fit_patches(self, patches: np.ndarray, sequences, patient_ids=None) -> "Harmonizer":
        """Fit on a stack of raw patches ``(N, k, n_slices, S, S)`` whose axis 1 is ``sequences``."""
        x = np.asarray(patches)
        return self.fit({seq: [x[i, j] for i in range(x.shape[0])] for j, seq in enumerate(sequences)}, patient_ids)

    def transform_patches(self, patches: np.ndarray, sequences) -> np.ndarray:
        """Harmonise a stack ``(N, k, n_slices, S, S)`` (float32, same shape)."""
        x = np.asarray(patches)
        out = np.empty(x.shape, np.float32)
        for i in range(x.shape[0]):
            for j, seq in enumerate(sequences):
                out[i, j] = apply_harmonization(x[i, j], seq, self.document_)
        return out


def fit_harmonization(cache, method: str = "nyul", develop_cohort: str | None = "2015", patient_ids=None) -> dict:
    """Fit the harmonisation parameters on the development cohort of ``cache`` (or on
    ``patient_ids``, e.g. the final model's training patients).

    ``develop_cohort=None`` without ``patient_ids`` fits on every included patient, every cohort
    included, and says so with a warning: no cohort is then external to the harmonisation.

    Returns:
        the ``"harmonization"`` document (see the module docstring).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown harmonisation method {method!r}; use one of {', '.join(METHODS)}")
    doc = {"format": HARMONIZATION_FORMAT, "method": method, "source": str(cache.root),
           "source_normalization": cache.config.normalization}
    if method == "zscore":
        doc["description"] = DESCRIPTION
        return doc
    develop_cohort = None if develop_cohort is None else str(develop_cohort)
    if develop_cohort is not None and develop_cohort not in cache.cohorts:
        raise CacheError(
            f"development cohort {develop_cohort!r} is not in the cache {cache.root} (its cohorts: "
            f"{', '.join(cache.cohorts) or 'none'}); pass --develop-cohort with one of them"
        )
    p = cache.patients[cache.patients["included"] == 1]
    if patient_ids is not None:
        p = p[p["patient_id"].isin({str(i) for i in patient_ids})]
    elif develop_cohort is not None:
        p = p[p["cohort"] == develop_cohort]
    else:
        warnings.warn(f"the {method} harmonisation of {cache.root} is fitted on every included patient of every "
                      f"cohort ({', '.join(cache.cohorts)}): no cohort is external to it; give --develop-cohort",
                      DlmviWarning, stacklevel=2)
    inc = set(p["patient_id"])
    images = {}
    for seq in cache.sequences:
        ids = [pid for pid in cache.index.loc[cache.index["sequence"] == seq, "patient_id"] if pid in inc]
        if ids:
            images[seq] = [cache.load(pid, seq) for pid in ids]
    if not images:
        raise CacheError(f"no patch of the development cohort {develop_cohort} in {cache.root} to fit "
                         f"{'Nyúl' if method == 'nyul' else 'the global scale'} on")
    fitted = Harmonizer(method).fit(images).document_
    if method == "global":
        doc.update({"develop_cohort": develop_cohort, "scales": fitted["scales"], "description": fitted["description"]})
    else:
        doc.update({"develop_cohort": develop_cohort, "percentiles": fitted["percentiles"],
                    "landmarks": fitted["landmarks"], "n_fit_images": fitted["n_fit_images"],
                    "description": fitted["description"]})
    if patient_ids is not None:
        doc["fit_on"] = f"{len(inc)} patients (the final model's training patients)"
    return doc


def harmonize_cache(src_cache, out_cache, method: str = "nyul", develop_cohort: str | None = "2015",
                    progress: bool = False, patient_ids=None, params: dict | None = None):
    """Write a harmonised copy of a patch cache.

    Args:
        src_cache: folder (or :class:`~dlmvi.preprocess.cache.PatchCache`) written by
            ``dlmvi prepare``, ideally with ``--normalization none``.
        out_cache: folder of the derived cache (created; an older harmonised cache there is
            replaced). Must differ from the source.
        method: ``"nyul"`` or ``"zscore"``.
        develop_cohort: cohort the Nyúl landmarks are fitted on (ignored for ``"zscore"``);
            ``None`` fits on every included patient (not recommended: it lets the test cohort
            into the fit; a warning says so).
        patient_ids: fit on these patients only (the final model's training patients).
        params: apply this fitted document (a trained model's ``harmonization``) instead of
            fitting one; ``method`` must be its method.

    Returns:
        the derived :class:`~dlmvi.preprocess.cache.PatchCache`.
    """
    from dlmvi.io.atomic import atomic_path, write_json
    from dlmvi.preprocess.cache import CACHE_JSON, INDEX_CSV, PATCHES, PATIENTS_CSV, PROBLEMS_CSV, PatchCache, patch_file

    src = src_cache if isinstance(src_cache, PatchCache) else PatchCache(src_cache)
    out = Path(out_cache)
    if out.resolve() == src.root.resolve():
        raise CacheError(f"--out {out} is the source cache; write the harmonised cache to another folder")
    if out.exists() and not (out / CACHE_JSON).is_file() and any(out.iterdir()):
        raise CacheError(f"{out} exists, is not empty and is not a dlmvi cache; choose an empty folder")
    if src.config.normalization != "none":
        warnings.warn(
            f"{src.root} was prepared with --normalization {src.config.normalization}; harmonisation is "
            "meant for raw intensities (`dlmvi prepare --normalization none`)",
            DlmviWarning, stacklevel=2,
        )
    if params is None:
        params = fit_harmonization(src, method, develop_cohort, patient_ids=patient_ids)
    else:
        if params.get("method") != method:
            raise ConfigError(f"harmonisation parameters of method {params.get('method')!r} given for {method!r}")
        params = {k: v for k, v in params.items() if k != "fit_patients"}
    meta = {k: v for k, v in src.meta.items() if k != "harmonization"}
    if "harmonization" in src.meta:
        params["previous"] = src.meta["harmonization"]
    meta.update(complete=False, harmonization=params)
    out.mkdir(parents=True, exist_ok=True)
    if (out / PATCHES).exists():
        shutil.rmtree(out / PATCHES)
    write_json(out / CACHE_JSON, meta)  # incomplete until every patch is written
    rows = src.index.to_dict("records")
    it = rows
    if progress:
        from rich.progress import track

        it = track(rows, description=f"harmonising ({method})")
    for r in it:
        pid, seq = str(r["patient_id"]), r["sequence"]
        patch = apply_harmonization(np.asarray(src.load(pid, seq)), seq, params)
        dest = out / patch_file(pid, seq)
        with atomic_path(dest, suffix=".npy") as tmp:
            np.save(tmp, patch.astype(src.dtype, copy=False), allow_pickle=False)  # the source's storage type
    for name in (PATIENTS_CSV, INDEX_CSV, PROBLEMS_CSV):
        if (src.root / name).is_file():
            with atomic_path(out / name) as tmp:
                shutil.copyfile(src.root / name, tmp)
    meta["complete"] = True
    write_json(out / CACHE_JSON, meta)
    return PatchCache(out)


def read_harmonization(cache_dir) -> dict | None:
    """The ``"harmonization"`` entry of a cache's cache.json (``None`` for a plain cache)."""
    from dlmvi.preprocess.cache import CACHE_JSON

    p = Path(cache_dir) / CACHE_JSON
    if not p.is_file():
        raise CacheError(f"{cache_dir} is not a dlmvi cache (no cache.json)")
    return json.loads(p.read_text()).get("harmonization")
