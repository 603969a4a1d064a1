"""A site's work on its own prepared cohort; nothing here sends anything.

``SITE_OUT/`` (the site's own folder, never sent)::

    cache/                 the site's patch cache (``dlmvi prepare`` of its cohort)
    site.json              the site's name, cohort folder and settings (local only)
    split.json             its patients per part: ``train`` (shape the global model) and ``test``
                           (held out: only ever scored)
    outbox/                every message sent, as sent (see :mod:`.payload`)
    predictions/           ``<model>.csv``: each model's predictions of the held-out patients
    local/                 the site's local-only model (checkpoint), for the cross-site comparison

Each site splits its labelled patients into ``folds`` stratified folds (by patient, seeded) and
holds fold ``fold`` out: its test patients never train, harmonise or select the global model
that scores them, nor its own local model.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlmvi.errors import CacheError, CohortError
from dlmvi.io.atomic import write_csv, write_json

#: The file in a FLARE site workspace's ``local/`` that names the site's folder.
SITE_CONFIG = "dlmvi_site.json"


@dataclass(frozen=True)
class SitePaths:
    """Where a site keeps its own files (see the module docstring)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    cache = property(lambda self: self.root / "cache")
    site_json = property(lambda self: self.root / "site.json")
    split_json = property(lambda self: self.root / "split.json")
    outbox = property(lambda self: self.root / "outbox")
    local = property(lambda self: self.root / "local")

    def predictions(self, model: str) -> Path:
        return self.root / "predictions" / f"{model}.csv"


def prepare_site(cohort, out, cfg, name: str, column_map=None, progress: bool = False):
    """Validate and prepare a site's cohort into ``out/cache`` (as ``dlmvi prepare`` does) and
    record the site (``out/site.json``, local only).

    Raises:
        CacheError, CohortError: no patient of the cohort has every configured sequence, or
            another problem of the cohort (the message names the site, patient, sequence, file).
    """
    from dlmvi.preprocess.prepare import prepare_cohort

    paths = SitePaths(out)
    try:
        cache = prepare_cohort(cohort, paths.cache, cfg.prepare_config(), column_map=column_map, progress=progress)
    except (CacheError, CohortError) as exc:  # the same message, naming the site
        raise type(exc)(f"site {name}: {exc}") from None
    if not cache.patient_ids(sequences=tuple(cfg.sequences)):
        raise CohortError(
            f"site {name}: no patient of {cohort} has all of the federation's sequences {', '.join(cfg.sequences)} "
            f"(the cache holds {', '.join(cache.sequences) or 'none'}); its images do not match the configured "
            "sequences: fix the cohort or the federation's sequences")
    write_json(paths.site_json, {"site": name, "cohort": str(Path(cohort).resolve()), "federation": cfg.to_dict()})
    return cache


def site_seed(name: str, seed: int) -> int:
    """A site's own seed (stable across runs and machines)."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(name).encode())) % (2**31)


class Site:
    """One site's patients, split, inputs and training; used by the FLARE executor.

    Args:
        name: the site's name in the federation.
        folder: ``SITE_OUT`` (with ``cache/`` prepared by :func:`prepare_site`).
        cfg: the federation's :class:`~dlmvi.workflow.federated.config.FedConfig`.
    """

    def __init__(self, name: str, folder, cfg):
        from dlmvi.preprocess.cache import PatchCache
        from dlmvi.train.run import training_patients

        self.name, self.cfg, self.paths = str(name), cfg, SitePaths(folder)
        self.cache = PatchCache(self.paths.cache)
        self.sequences = tuple(cfg.sequences)
        self.net = cfg.network_config()
        self.ids = training_patients(self.cache, None, self.sequences)
        self.labels = self.cache.labels(self.ids, cfg.classes) if self.ids else np.zeros(0, np.int64)
        self.problem = self._problem()
        self.train_ids, self.test_ids = ([], []) if self.problem else self._split()
        self._x, self._doc = None, None

    # ---- who trains, who is held out
    def _problem(self) -> str | None:
        if not self.ids:
            return "no_labelled"
        counts = np.bincount(self.labels, minlength=self.cfg.classes)
        if (counts < self.cfg.folds).any():
            return "one_class"
        return None

    def _split(self) -> tuple[list[str], list[str]]:
        from dlmvi.train.splits import kfold_splits

        split = kfold_splits(self.ids, self.labels, self.cfg.folds, site_seed(self.name, self.cfg.seed), 0.0)
        held = split[self.cfg.fold - 1]
        write_json(self.paths.split_json, {"site": self.name, "fold": self.cfg.fold, "folds": self.cfg.folds,
                                           "train": list(held.train), "test": list(held.test)})
        return list(held.train), list(held.test)

    def labels_of(self, ids) -> np.ndarray:
        pos = {p: i for i, p in enumerate(self.ids)}
        return self.labels[[pos[p] for p in ids]]

    # ---- what it tells the coordinator first
    def summary(self) -> tuple[dict, dict]:
        """Counts only: labelled/training/test patients, training patients per class, Table 1 and
        events (small counts suppressed)."""
        from dlmvi.io.tables import read_clinical
        from dlmvi.workflow.federated.tables import site_counts

        meta = {"site": self.name, "status": "excluded" if self.problem else "ok",
                "reason": self.problem or "none", "n_labelled": len(self.ids), "n_train": len(self.train_ids),
                "n_test": len(self.test_ids), "input_size": int(self.cache.config.size),
                "n_slices": int(self.cache.config.n_slices),
                "per_class": np.bincount(self.labels_of(self.train_ids), minlength=self.cfg.classes).tolist()
                if self.train_ids else [],
                "synthetic": bool(self.cache.synthetic)}
        clinical = self._clinical(read_clinical)
        present = (self.labels > 0).astype(int)
        table, events = site_counts(clinical, present, self.cfg.min_cell)
        meta["per_class"] = [int(v) if v >= self.cfg.min_cell or v == 0 else -1 for v in meta["per_class"]]
        return {"table1": table, "events": events}, meta

    def _clinical(self, read_clinical):
        import pandas as pd

        cohort = json.loads(self.paths.site_json.read_text()).get("cohort") if self.paths.site_json.is_file() else None
        if not cohort or not (Path(cohort) / "clinical.csv").is_file():
            return pd.DataFrame(index=range(len(self.ids)))
        frame = read_clinical(Path(cohort) / "clinical.csv").frame.set_index("patient_id")
        return frame.reindex(self.ids).reset_index(drop=True)

    # ---- federated harmonisation (training patients only)
    def _raw(self, sequence: str) -> list[np.ndarray]:
        j = self.sequences.index(sequence)
        x = self.cache.stack(self.train_ids, self.sequences)
        return [x[i, j] for i in range(x.shape[0])]

    def landmark_sums(self) -> tuple[dict, dict]:
        """Nyul: per sequence, the sum of the training images' mapped landmarks (and their
        number); global: per sequence [n values, sum, sum of squares]."""
        from dlmvi.preprocess.harmonize import nyul_mapped_landmarks

        params = {}
        for seq in self.sequences:
            imgs = self._raw(seq)
            if self.cfg.harmonization == "global":
                v = np.concatenate([np.asarray(im, np.float64).ravel() for im in imgs])
                params[f"global_sum/{seq}"] = np.array([v.size, v.sum(), (v**2).sum()], np.float64)
            else:
                lm = nyul_mapped_landmarks(imgs)
                params[f"nyul_sum/{seq}"] = np.concatenate([[len(imgs)], lm.sum(axis=0)])
        return params, {"site": self.name}

    def moment_sums(self, scales: dict) -> tuple[dict, dict]:
        """Nyul's second step: per sequence [n images, sum of means, sum of mean squares] of the
        training images mapped onto the federation's intermediate scale."""
        from dlmvi.preprocess.harmonize import nyul_image_moments

        params = {}
        for seq in self.sequences:
            imgs = self._raw(seq)
            means, second = nyul_image_moments(imgs, scales[seq])
            params[f"moments/{seq}"] = np.array([len(imgs), means.sum(), second.sum()], np.float64)
        return params, {"site": self.name}

    # ---- inputs, training, evaluation
    def inputs(self, harmonization: dict | None) -> np.ndarray:
        """Network input of every labelled patient (rows in ``self.ids`` order), harmonised with
        the federation's parameters - the loader ``dlmvi predict`` uses."""
        from dlmvi.preprocess.patches import load_patches

        key = json.dumps(harmonization, sort_keys=True)
        if self._x is None or self._doc != key:
            self._x = load_patches(self.cache, self.ids, self.sequences, self.net.input_size,
                                   harmonization=harmonization)
            self._doc = key
        return self._x

    def part(self, x: np.ndarray, ids) -> np.ndarray:
        pos = {p: i for i, p in enumerate(self.ids)}
        return x[[pos[p] for p in ids]]

    def train(self, weights: dict, harmonization, first_epoch: int, mu: float) -> tuple[dict, dict]:
        """``local_epochs`` epochs on the training patients from ``weights``; FedProx when mu > 0."""
        from dlmvi.workflow.federated.local import local_train

        x = self.inputs(harmonization)
        cfg = self.cfg.train_config()
        state, loss, n = local_train(weights, self.net, self.part(x, self.train_ids), self.labels_of(self.train_ids),
                                     self.sequences, cfg, site_seed(self.name, self.cfg.seed), first_epoch, mu)
        return state, {"site": self.name, "n_samples": n, "loss": loss, "epochs": cfg.epochs}

    def evaluate(self, weights: dict, harmonization, model: str, file: str | None = None) -> tuple[dict, dict]:
        """Score the held-out patients with ``weights`` (``model``: "global" or the site whose local
        model it is); the predictions stay here (``predictions/<file>.csv``), the figures go."""
        from dlmvi.evaluate.performance import ProbabilityMetrics
        from dlmvi.model.inference import predict_arrays, predictions_frame
        from dlmvi.workflow.federated.local import network_from

        x = self.part(self.inputs(harmonization), self.test_ids).astype(np.float32)
        probs, _ = predict_arrays(network_from(weights, self.net), x, tta=False)
        frame = predictions_frame(self.test_ids, self.cache.cohort_of(self.test_ids), self.cache.grades(self.test_ids),
                                  probs)
        frame["source"] = f"{model} model (held-out patient of site {self.name})"
        write_csv(self.paths.predictions(file or model), frame)
        y = (self.labels_of(self.test_ids) > 0).astype(int)
        m = ProbabilityMetrics.from_predictions(y, probs[:, 1:].sum(axis=1), threshold=0.5)
        keys = ("auc", "auc_ci_low", "auc_ci_high", "brier", "calibration_intercept", "calibration_slope",
                "calibration_in_the_large", "accuracy", "sensitivity", "specificity")
        metrics = {k: _num(m.get(k)) for k in keys}
        return {"events/test": np.array([len(y), int(y.sum())], np.int64)}, {
            "site": self.name, "model": model, "n": len(y), "n_events": int(y.sum()), "metrics": metrics}


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


__all__ = ["Site", "SitePaths", "prepare_site", "site_seed", "SITE_CONFIG"]
