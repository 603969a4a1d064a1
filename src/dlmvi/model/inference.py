"""Predict MVI for the patients of a cache with a trained checkpoint.

Default input, as in the study: the first of the key slices of every sequence. With
``tta=True`` the class probabilities are averaged over all ``n_slices ** k`` slice
combinations (27 for 3 sequences). Because the encoder sees one sequence at a time, the
encoder runs once per (sequence, slice) and only the fully connected layer runs per
combination, so test-time augmentation costs ``n_slices`` forward passes, not ``n_slices ** k``.

Outputs follow the project's ``predictions.csv`` convention (patient_id, cohort, mvi_grade,
label, dl_prob, dl_mvi, and p_M0, p_M1, p_M2 for 3-class models); the per-sequence feature
vectors (512-d for the study's network) go to ``<name>.features.npz`` beside the CSV, with
the patient ids, for the cohort-shift analysis.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dlmvi.constants import DL_THRESHOLD, IN_SAMPLE
from dlmvi.errors import CacheError, DlmviWarning
from dlmvi.io.skipped import Skipped, skipped_path

#: Probability of MVI at or above which DL-MVI = 1 (the study's 0.5).
THRESHOLD = DL_THRESHOLD


def all_combinations(n_slices: int, k: int) -> np.ndarray:
    """All ``n_slices ** k`` slice combinations as (n_slices ** k, k) slice indices.

    The first row is all zeros: slice 0 of every sequence, the study's test-time input.
    """
    grids = np.meshgrid(*[np.arange(n_slices)] * k, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def slice_features(model, x: torch.Tensor, slices, memory_format=torch.contiguous_format,
                   encoder=None) -> torch.Tensor:
    """Per-sequence encoder features of chosen key slices.

    Args:
        model: a :class:`~dlmvi.model.network.MultiSequenceNet` in eval mode.
        x: (B, k, n_slices, S, S) network input.
        slices: key-slice indices to encode.
        memory_format: layout for the encoder (``torch.channels_last`` is oneDNN's fast
            layout on CPU for a single patient).
        encoder: the model's encoder compiled by :func:`inference_encoder` (same features to
            float precision, faster on CPU); None runs the model's own encoder.

    Returns:
        (B, k, len(slices), D) features: the encoder runs once per (sequence, slice).
    """
    if encoder is None:
        return torch.stack([model.sequence_features(x[:, :, s], memory_format=memory_format) for s in slices], dim=2)
    b, k = x.shape[:2]
    return torch.stack([encoder(x[:, :, s].reshape(b * k, 1, *x.shape[-2:])).view(b, k, -1) for s in slices], dim=2)


def inference_encoder(model, size: int):
    """The model's encoder compiled for inference on the CPU.

    TorchScript, frozen, then ``torch.jit.optimize_for_inference``: batch normalisation folded
    into the convolutions and oneDNN's layouts, about 2.4x less CPU time than the eager encoder
    for the paper network at 320 px on an AVX2 CPU (benchmarks/bench_patient_latency.py). The
    features agree with the eager encoder's to float precision (~1e-6 relative). For one
    patient at a time (``predict-patient``, ``dlmvi serve``); training and cohort inference use
    the eager model.

    Args:
        model: a :class:`~dlmvi.model.network.MultiSequenceNet` in eval mode, on the CPU.
        size: the input size (an example batch is traced).

    Returns:
        a callable (N, 1, size, size) -> (N, feature_dim).
    """
    import copy
    import warnings

    enc = copy.deepcopy(model.encoder).eval()
    example = torch.zeros(2, 1, size, size)
    with torch.inference_mode(), warnings.catch_warnings():
        # torch 2.13 marks TorchScript deprecated in favour of torch.compile, which needs a C++
        # toolchain at run time and minutes of compilation on a 2-core CPU; TorchScript's
        # oneDNN path is the one measured here (pinned torch, so it cannot vanish under us).
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(enc, example, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


def combination_probabilities(model, features: torch.Tensor, combos) -> torch.Tensor:
    """Class probabilities of slice combinations from per-slice features.

    Args:
        model: the network (only its fully connected fusion layer runs here).
        features: (B, k, n, D) from :func:`slice_features`.
        combos: (C, k) slice index per combination and sequence (indices into ``n``).

    Returns:
        (B, C, n_classes) probabilities, one row per combination.
    """
    k = features.shape[1]
    kk = torch.arange(k, device=features.device)
    return torch.stack([torch.softmax(model.classify(features[:, kk, torch.as_tensor(c, device=features.device)]), dim=1)
                        for c in np.asarray(combos)], dim=1)


@torch.no_grad()
def predict_arrays(model, patches: np.ndarray, tta: bool = False, batch_size: int = 32,
                   device: str | torch.device = "cpu", encoder=None) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and per-sequence features for prepared patches.

    Args:
        model: a :class:`~dlmvi.model.network.MultiSequenceNet` (a DDP wrapper is unwrapped).
        patches: (N, k, n_slices, S, S) float32, already at the network's input size.
        tta: average the probabilities over all slice combinations (else slice 0 only).
        batch_size: patients per forward pass.
        device: where to compute.
        encoder: another backend's encoder for the CPU (:mod:`dlmvi.model.backend`), or None.

    Returns:
        probs: (N, n_classes) class probabilities.
        features: (N, k, feature_dim); with ``tta`` the mean over the slices of each sequence.
    """
    model = getattr(model, "module", model)
    was_training = model.training
    model.eval()
    n, k, n_slices = patches.shape[:3]
    slices = range(n_slices) if tta else range(1)
    combos = all_combinations(n_slices, k) if tta else np.zeros((1, k), dtype=np.int64)
    probs_out, feats_out = [], []
    try:
        for start in range(0, n, batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(patches[start : start + batch_size])).to(device)
            f = slice_features(model, xb, slices, encoder=encoder)
            p = combination_probabilities(model, f, combos).mean(dim=1)
            probs_out.append(p.cpu().numpy())
            feats_out.append(f.mean(dim=2).cpu().numpy())
    finally:
        model.train(was_training)
    d = model.config.feature_dim
    if not probs_out:
        return np.zeros((0, model.config.n_classes), np.float32), np.zeros((0, k, d), np.float32)
    return np.concatenate(probs_out), np.concatenate(feats_out)


def blank_sequences(patches: np.ndarray, sequences, missing) -> np.ndarray:
    """The network input with the ``missing`` sequences' patches set to 0.

    0 is what a model trained with sequence dropout (:func:`dlmvi.train.data.drop_sequences`)
    saw for a dropped branch; a model trained without it has never seen it, so its
    predictions with a blank sequence are unreliable (the cost is measured at training time).

    Args:
        patches: (N, k, n_slices, S, S) or (k, n_slices, S, S) network input.
        sequences: names of the k sequences, in input order.
        missing: names of the sequences to blank.
    """
    seqs = list(sequences)
    unknown = [m for m in missing if m not in seqs]
    if unknown:
        raise CacheError(f"sequence(s) {unknown} are not inputs of the model ({', '.join(seqs)})")
    x = np.array(patches, dtype=np.float32, copy=True)
    for m in missing:
        x[..., seqs.index(m), :, :, :] = 0.0
    return x


def predictions_frame(patient_ids, cohorts, grades, probs: np.ndarray, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Build the predictions.csv table from class probabilities.

    ``label`` is the pathological MVI (1 = M1 or M2, 0 = M0, empty when the grade is unknown);
    ``dl_prob`` the predicted probability of MVI present (for 3 classes p_M1 + p_M2);
    ``dl_mvi`` = dl_prob >= ``threshold``.
    """
    from dlmvi.constants import GRADES

    probs = np.asarray(probs, dtype=float)
    grades = list(grades)
    label = [(int(g != "M0") if g in GRADES else pd.NA) for g in grades]
    dl_prob = probs[:, 1:].sum(axis=1)
    frame = pd.DataFrame(
        {
            "patient_id": [str(p) for p in patient_ids],
            "cohort": [str(c) for c in cohorts],
            "mvi_grade": grades,
            "label": pd.array(label, dtype="Int64"),
            "dl_prob": dl_prob,
            "dl_mvi": (dl_prob >= threshold).astype(int),
        }
    )
    if probs.shape[1] == 3:
        for j, g in enumerate(GRADES):
            frame[f"p_{g}"] = probs[:, j]
    return frame


@dataclass
class Prediction:
    """Predictions of one cache.

    Attributes:
        frame: the predictions.csv table.
        features: (N, k, feature_dim) per-sequence features, rows in ``frame`` order.
        sequences: names of the k sequences.
        meta: what produced it (checkpoint, tta, synthetic flag, ...).
        skipped: patients of the cache (of the chosen cohort) that were not predicted, and why.
    """

    frame: pd.DataFrame
    features: np.ndarray
    sequences: tuple[str, ...]
    meta: dict
    skipped: Skipped = field(default_factory=lambda: Skipped("the predictions"))


def predict_cache(checkpoint, cache, patient_ids=None, cohort: str | None = None, tta: bool = False,
                  batch_size: int = 32, device: str = "cpu") -> Prediction:
    """Predict every included patient of ``cache`` (or ``patient_ids``, or one ``cohort``).

    Args:
        checkpoint: a :class:`~dlmvi.model.checkpoint.Checkpoint` or a path accepted by
            :func:`~dlmvi.model.checkpoint.load_checkpoint` (a run folder uses ``final/``).
        cache: a :class:`~dlmvi.preprocess.cache.PatchCache` or its folder.
        tta: average over all slice combinations instead of the first slice only.
    """
    from dlmvi.model.checkpoint import Checkpoint, load_checkpoint
    from dlmvi.preprocess.cache import PatchCache
    from dlmvi.preprocess.patches import load_patches

    ck = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    cache = cache if isinstance(cache, PatchCache) else PatchCache(cache)
    sequences = ck.sequences
    missing = [s for s in sequences if s not in cache.sequences]
    if missing:
        raise CacheError(
            f"the model needs sequence(s) {missing} but the cache {cache.root} holds "
            f"{', '.join(cache.sequences)}; rerun `dlmvi prepare --sequences {','.join(sequences)}`"
        )
    trained = ck.prepare
    if trained is not None:
        if trained.n_slices != cache.config.n_slices:
            raise CacheError(
                f"the model was trained with {trained.n_slices} slices per sequence but the cache "
                f"{cache.root} has {cache.config.n_slices}; rerun `dlmvi prepare` with --slices {trained.n_slices}"
            )
        if trained.margin != cache.config.margin or trained.size != cache.config.size:
            warnings.warn(
                f"cache {cache.root} was prepared with margin {cache.config.margin} px / size "
                f"{cache.config.size} px but the model's training cache used margin {trained.margin} "
                f"px / size {trained.size} px; predictions may be less accurate",
                DlmviWarning,
                stacklevel=2,
            )
    skipped = Skipped("the predictions")
    if patient_ids is None:
        patient_ids = cache.patient_ids(cohort=cohort, sequences=sequences)
        skipped = unpredicted(cache, patient_ids, sequences, cohort)
    patient_ids = [str(p) for p in patient_ids]
    if not patient_ids:
        raise CacheError(
            f"no included patient of the cache {cache.root}"
            + (f" in cohort {cohort}" if cohort else "")
            + f" has all of {', '.join(sequences)}"
        )
    x = load_patches(cache, patient_ids, sequences, ck.network.input_size,
                     harmonization=model_harmonization(ck, cache))
    model = ck.model.to(device)
    probs, feats = predict_arrays(model, x, tta=tta, batch_size=batch_size, device=device)
    frame = predictions_frame(patient_ids, cache.cohort_of(patient_ids), cache.grades(patient_ids), probs)
    trained = trained_on(ck)
    name = f"{ck.path.parent.name} model"
    frame["source"] = [name + IN_SAMPLE if p in trained else name for p in patient_ids]
    meta = {
        "checkpoint": str(ck.path),
        "cache": str(cache.root),
        "tta": bool(tta),
        "input": "mean over all slice combinations" if tta else "first slice of each sequence",
        "sequences": list(sequences),
        "classes": ck.classes,
        "threshold": THRESHOLD,
        "synthetic": bool(cache.synthetic or ck.meta.get("synthetic", False)),
        "in_sample": int(frame["source"].str.endswith(IN_SAMPLE).sum()),
    }
    meta["n_skipped"] = len(skipped)
    return Prediction(frame=frame, features=feats.astype(np.float32), sequences=tuple(sequences), meta=meta,
                      skipped=skipped)


def trained_on(ck) -> set[str]:
    """The patients a checkpoint was trained on or chose its epoch on (its split's training and
    validation patients): its predictions of them are in-sample."""
    split = ck.meta.get("split") or {}
    return {str(p) for part in ("train", "val") for p in split.get(part, [])}


def model_harmonization(ck, cache) -> dict | None:
    """The harmonisation to apply to ``cache``'s patches for ``ck``: the checkpoint's own fitted
    one (``--harmonization``, fitted on its training patients) when the cache is raw; None when
    the model needs none or the cache already carries the same one.

    Raises:
        CacheError: the cache was harmonised with other parameters than the model's, or the
            model needs a harmonisation that a z-scored cache cannot take.
    """
    want = ck.meta.get("harmonization") or {}
    if want.get("method") not in ("nyul", "global"):
        return None
    have = cache.meta.get("harmonization") or {}
    keys = ("method", "landmarks", "scales", "percentiles")
    if have:
        if any(have.get(k) != want.get(k) for k in keys):
            raise CacheError(f"{cache.root} was harmonised ({have.get('method')}) with other parameters than the model "
                             f"{ck.path} was trained with ({want.get('method')}, fitted on its training patients); "
                             "predict from the raw cache (`dlmvi prepare --normalization none`)")
        return None
    if cache.config.normalization != "none":
        raise CacheError(f"the model {ck.path} needs its {want['method']} harmonisation of raw patches, but {cache.root} "
                         "is z-scored; prepare the patients with `dlmvi prepare --normalization none`")
    return want


def unpredicted(cache, predicted, sequences, cohort: str | None = None) -> Skipped:
    """Patients of ``cache`` (of ``cohort``) not in ``predicted``, with the reason."""
    skipped = Skipped("the predictions")
    done = set(map(str, predicted))
    have = cache.index.groupby("patient_id")["sequence"].apply(set)
    rows = cache.patients if cohort is None else cache.patients[cache.patients["cohort"] == str(cohort)]
    for row in rows.to_dict("records"):
        pid = str(row["patient_id"])
        if pid in done:
            continue
        if int(row["included"]) != 1:
            skipped.add(pid, f"excluded when prepared: {row.get('exclusion_reason') or 'see patients.csv'}")
        else:
            missing = [s for s in sequences if s not in have.get(pid, set())]
            skipped.add(pid, f"no patch of {', '.join(missing)} in the cache")
    return skipped


def features_path(csv_path) -> Path:
    """``predictions.csv`` -> ``predictions.features.npz``."""
    p = Path(csv_path)
    return p.with_name(p.stem + ".features.npz")


def write_prediction(pred: Prediction, csv_path) -> dict[str, Path]:
    """Write the CSV, the features (.npz, no pickle), the list of patients not predicted
    (``NAME.skipped.csv``) and a small JSON description beside it."""
    from dlmvi.constants import SYNTHETIC_NOTICE
    from dlmvi.io.atomic import atomic_path, write_csv, write_json

    csv_path = Path(csv_path)
    write_csv(csv_path, pred.frame)
    fpath = features_path(csv_path)
    with atomic_path(fpath) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                patient_id=np.asarray(pred.frame["patient_id"].tolist(), dtype=str),
                cohort=np.asarray(pred.frame["cohort"].tolist(), dtype=str),
                sequences=np.asarray(pred.sequences, dtype=str),
                features=pred.features,
            )
    spath = skipped_path(csv_path)
    pred.skipped.write(spath)
    meta = dict(pred.meta)
    meta["features"] = fpath.name
    meta["skipped"] = spath.name
    if meta.get("synthetic"):
        meta["notice"] = SYNTHETIC_NOTICE
    jpath = csv_path.with_name(csv_path.stem + ".json")
    write_json(jpath, meta)
    return {"csv": csv_path, "features": fpath, "json": jpath, "skipped": spath}


def load_features(path) -> dict[str, np.ndarray]:
    """Read a ``.features.npz`` written by :func:`write_prediction` (never unpickles)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
