"""What leaves a site: weights, counts and landmark sums only - checked, logged, counted.

Every message a site sends passes :func:`check_outgoing` first and is kept, exactly as sent,
in the site's outbox (``SITE_OUT/outbox/NNNN_<task>.{json,safetensors}``), so that the site's
data protection officer - and a test - can read everything that ever left the hospital.

A message is ``params`` (named numeric arrays) plus ``meta`` (a small JSON document):

* ``params``: the network's tensors (names and shapes of the state dict), or statistics whose
  names start with one of :data:`STAT_PREFIXES` and hold at most :data:`MAX_STAT_VALUES`
  numbers (a histogram's landmarks, sums, counts) - an image patch (``size x size`` values)
  cannot pass;
* ``meta``: keys and text values from a fixed vocabulary (:func:`vocabulary`: task names, site
  names, sequences, metric names), numbers and booleans. A patient ID, a file path or any
  other free text is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dlmvi.constants import SEQUENCES
from dlmvi.errors import DlmviError

#: Name prefixes of the statistics a site may send (besides the network's weights).
STAT_PREFIXES = ("table1", "events", "nyul_sum/", "global_sum/", "moments/")
#: Largest statistic a site may send, in numbers (a 32 x 32 patch has 1024).
MAX_STAT_VALUES = 512
#: Text a message may contain besides site names and sequences.
WORDS = frozenset({
    # tasks and fields
    "summary", "landmarks", "moments", "train", "train_local", "evaluate", "site", "task", "round", "model",
    "global", "status", "ok", "excluded", "reason", "n", "n_labelled", "n_train", "n_test", "n_val",
    "per_class", "per_class_test", "missing_sequences", "input_size", "n_slices", "n_images", "n_samples",
    "loss", "epochs", "metrics", "n_events", "auc", "auc_ci_low", "auc_ci_high", "brier", "calibration_intercept",
    "calibration_slope", "calibration_in_the_large", "accuracy", "sensitivity", "specificity", "level",
    "one_class", "no_labelled", "sequences", "prepare", "size", "margin", "normalization", "none", "zscore",
    "dtype", "float32", "float16", "dlmvi_version", "bytes", "seconds", "synthetic", "min_cell", "suppressed",
})


class PayloadError(DlmviError):
    """A message that may not leave the site (an identifier, a path, voxels)."""


def vocabulary(sites) -> frozenset:
    """Every text a message may contain: :data:`WORDS`, the federation's site names, the sequences."""
    return WORDS | frozenset(map(str, sites)) | frozenset(SEQUENCES)


def _check_meta(value, vocab: frozenset, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or k not in vocab:
                raise PayloadError(f"{where}: key {k!r} is not part of what a site may send")
            _check_meta(v, vocab, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_meta(v, vocab, f"{where}[{i}]")
    elif isinstance(value, str):
        if value not in vocab:
            raise PayloadError(f"{where}: text {value!r} may not leave the site (only weights, counts and "
                               "histogram landmarks do; no identifier, path or free text)")
    elif not (value is None or isinstance(value, (bool, int, float))):
        raise PayloadError(f"{where}: a {type(value).__name__} may not leave the site")


def check_outgoing(params: dict, meta: dict, vocab: frozenset, weight_shapes: dict | None = None) -> int:
    """Refuse anything but weights, counts and landmark sums; return the message's size in bytes.

    Args:
        params: named arrays.
        meta: the JSON part.
        vocab: :func:`vocabulary` of the federation.
        weight_shapes: ``{name: shape}`` of the network's state dict (``None``: no weights allowed).

    Raises:
        PayloadError: naming the offending entry.
    """
    _check_meta(meta, vocab, "meta")
    total = len(json.dumps(meta).encode())
    for name, arr in params.items():
        a = np.asarray(arr)
        if a.dtype.kind not in "biuf":
            raise PayloadError(f"params[{name!r}]: only numbers may leave the site, not {a.dtype}")
        if weight_shapes is not None and name in weight_shapes:
            if tuple(a.shape) != tuple(weight_shapes[name]):
                raise PayloadError(f"params[{name!r}]: shape {a.shape} is not the network's {weight_shapes[name]}")
        elif not name.startswith(STAT_PREFIXES):
            raise PayloadError(f"params[{name!r}]: neither a network weight nor a statistic a site may send")
        elif a.size > MAX_STAT_VALUES or a.ndim > 3:
            raise PayloadError(f"params[{name!r}]: {a.size} values in shape {a.shape} - more than a statistic "
                               f"({MAX_STAT_VALUES} at most); image data may not leave the site")
        total += int(a.nbytes)
    return total


class Outbox:
    """The site's record of every message it sent (JSON + safetensors, numbered)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def record(self, task: str, params: dict, meta: dict, nbytes: int) -> Path:
        """Write message number N of ``task`` as sent; returns its JSON file."""
        from safetensors.numpy import save_file

        from dlmvi.io.atomic import atomic_path, write_json

        self.folder.mkdir(parents=True, exist_ok=True)
        n = len(list(self.folder.glob("*.json"))) + 1
        stem = self.folder / f"{n:04d}_{task}"
        arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in params.items()}
        if arrays:
            with atomic_path(stem.with_suffix(".safetensors")) as tmp:
                save_file(arrays, str(tmp))
        write_json(stem.with_suffix(".json"), {"task": task, "bytes": nbytes, "meta": meta,
                                               "params": {k: list(v.shape) for k, v in arrays.items()}})
        return stem.with_suffix(".json")


__all__ = ["PayloadError", "check_outgoing", "vocabulary", "Outbox", "STAT_PREFIXES", "MAX_STAT_VALUES", "WORDS"]
