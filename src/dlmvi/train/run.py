"""A whole training run: k-fold cross-validation, then the final model.

Layout of ``RUN/``::

    run.json                 configuration (training, network, prepare), cache, patients,
                             timings, status
    splits.json              patient ids per fold and partition, and of the final model
    fold_<i>/                one model per fold (see :mod:`dlmvi.train.engine`)
    cv_predictions.csv       out-of-fold predictions (predictions.csv convention + ``fold``)
    cv_metrics.json          per-fold and mean/sd AUC and accuracy
    final/                   the model to use (``dlmvi predict RUN ...`` loads final/model)

Rerunning on the same folder resumes: finished folds are not retrained and an interrupted
fold continues from its last epoch.

Fan-out (``shard``, see :mod:`dlmvi.train.shard`): the trainings are the folds in order,
then the final model; share I/N trains its own and writes only their folders (and run.json,
splits.json). When every training is finished, the share that finishes last, or a run with
``merge=True``, writes cv_predictions.csv, cv_metrics.json and run.json exactly as one
process would (it only reads the finished models back). With ``holdout = 0`` the final model
needs the folds' best epochs, so it is trained by that merge, not by a share.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.constants import GRADES
from dlmvi.errors import CacheError, CohortError, CohortWarning, ConfigError, DlmviWarning
from dlmvi.io.atomic import write_csv, write_json
from dlmvi.io.skipped import SKIPPED_CSV, Skipped
from dlmvi.layout import TrainLayout
from dlmvi.model.network import NetworkConfig
from dlmvi.model.presets import get_preset
from dlmvi.train.config import TrainConfig
from dlmvi.train.splits import Split, holdout_split, kfold_splits

CLASS_NAMES = {2: ["MVI absent", "MVI present"], 3: ["M0", "M1", "M2"]}


@dataclass
class RunResult:
    """Outcome of :func:`run_training`.

    Attributes:
        folder: the run folder.
        cv_predictions: out-of-fold predictions (``None`` without cross-validation).
        cv_metrics: per-fold and summary metrics (``None`` without cross-validation).
        final: folder of the final model's checkpoint (``RUN/final``).
        run: the run.json document.
    """

    folder: Path
    cv_predictions: pd.DataFrame | None
    cv_metrics: dict | None
    final: Path
    run: dict


def network_config(config: TrainConfig, n_sequences: int) -> NetworkConfig:
    """The network of a (resolved) training configuration."""
    p = get_preset(config.preset)
    return NetworkConfig(in_channels=1, stem_width=p.stem_width, widths=p.widths, blocks=p.blocks,
                         n_sequences=n_sequences, n_classes=config.classes, input_size=p.input_size)


def run_training(cache_dir, out_dir, config: TrainConfig, on_epoch_end=None, shard=None,
                 merge: bool = False) -> RunResult:
    """Cross-validate and train the final model on the development cohort of a cache.

    Args:
        cache_dir: folder written by ``dlmvi prepare`` (see :mod:`dlmvi.preprocess.cache`).
        out_dir: run folder (created; an unfinished run in it is resumed).
        config: training configuration.
        on_epoch_end: passed to :func:`dlmvi.train.engine.fit` (``f(epoch, row)``).
        shard: a :class:`~dlmvi.train.shard.Shard` (or ``"I/N"``): train only this share of
            the folds and final model (see the module docstring).
        merge: combine the finished shares into the run's tables; an unfinished training
            is an error naming it.

    Returns:
        :class:`RunResult` (``cv_predictions`` and ``cv_metrics`` are ``None`` for a share
        whose run is not complete yet).
    """
    from dlmvi.preprocess.cache import PatchCache
    from dlmvi.train.engine import dist_info, is_finished
    from dlmvi.train.inputs import TrainingInputs
    from dlmvi.train.shard import Shard

    if isinstance(shard, str):
        shard = Shard.parse(shard)
    if shard is not None and merge:
        raise ConfigError("--shard and --merge exclude each other: run the shares, then one --merge")
    t_start = time.perf_counter()
    cfg = config.resolved()
    out = Path(out_dir)
    lay = TrainLayout(out)
    cache = PatchCache(cache_dir)
    sequences = tuple(cfg.sequences or cache.sequences)
    cfg = TrainConfig(**{**cfg.to_dict(), "sequences": sequences})
    rank, world = dist_info()
    ids, skipped, where = _development_patients(cache, cfg, sequences)
    labels, train_ids, val_ids = _checked_labels(cache, cfg, ids, where)
    net_cfg = network_config(cfg, len(sequences))
    # a float16 cache stays float16 in memory (half of it); batches become float32 on the device
    inputs = TrainingInputs(cache, ids, sequences, net_cfg.input_size, cfg.harmonization)
    if cfg.folds >= 2:
        warn_harmonised_once(cache)
    trainer = _Trainer(cfg, cache, inputs, ids, labels, sequences, net_cfg, on_epoch_end)
    run_doc = _run_doc(trainer, skipped, world)
    if shard is not None:
        run_doc["shard"] = str(shard)
    if rank == 0:
        write_json(lay.run_json, run_doc)
        skipped.write(lay.root / SKIPPED_CSV)  # a folder output, whatever its name (runs/v1.2)
        skipped.warn(CohortWarning, lay.root / SKIPPED_CSV)

    # ---- the trainings: folds, then the final model
    plan = _Plan.of(trainer, train_ids, val_ids, lay, where)
    splits, final_split, units = plan.splits, plan.final_split, plan.units
    if shard is not None or merge:
        if rank == 0:
            write_json(lay.splits_json, plan.splits_doc)
    if shard is not None:
        _train_share(trainer, shard, units, splits, final_split, lay)
        if not all(is_finished(f) for f in units):
            run_doc["seconds"] = round(time.perf_counter() - t_start, 2)
            return RunResult(out, None, None, lay.final, run_doc)
        # every share is finished: this one merges (below, reading the models back)
    if merge:
        _check_merge(out, units)

    cv_pred, cv_metrics, best_epochs = _cross_validate(trainer, splits, lay, rank)

    # ---- final model
    final_epochs = plan.final_epochs(best_epochs)
    if rank == 0:
        write_json(lay.splits_json, plan.splits_doc)
    final, _ = trainer.train_one(final_split, lay.final, cfg.seed * 1000 + 999, "final model", epochs=final_epochs)
    run_doc.pop("shard", None)
    _finish_doc(run_doc, lay, final, train_ids, val_ids, cv_metrics, t_start)
    if rank == 0:
        write_json(lay.run_json, run_doc)
    return RunResult(out, cv_pred, cv_metrics, lay.final, run_doc)


@dataclass
class _Plan:
    """The trainings of a run: the folds' splits, the final model's, and the units to train."""

    splits: list[Split]
    final_split: Split
    splits_doc: dict
    final_waits: bool  # no validation set: the final model's epochs come from the folds
    units: list[Path]

    @classmethod
    def of(cls, trainer: "_Trainer", train_ids, val_ids, lay: TrainLayout, where: str) -> "_Plan":
        """The folds (each checked to have every class in its training part) and the final model."""
        cfg, ids, labels = trainer.cfg, trainer.ids, trainer.labels
        splits = kfold_splits(ids, labels, cfg.folds, cfg.seed, cfg.holdout) if cfg.folds >= 2 else []
        for i, split in enumerate(splits):  # every fold's training part has every class, before any training
            check_classes(labels[[trainer.pos[p] for p in split.train]], cfg.classes, 0,
                          f"{where}, fold {i + 1} of {cfg.folds}")
        final_split = Split(tuple(train_ids), tuple(val_ids))
        splits_doc = {"folds": [s.to_dict() for s in splits]} if splits else {}
        splits_doc["final"] = final_split.to_dict()
        final_waits = not val_ids and bool(splits)  # epochs from the folds: trained at the merge
        units = [lay.fold(i) for i in range(len(splits))] + ([] if final_waits else [lay.final])
        return cls(splits, final_split, splits_doc, final_waits, units)

    def final_epochs(self, best_epochs: list[int]) -> int | None:
        """Epochs of the final model: ``None`` (its own validation decides) or, without a
        validation set, the median of the folds' best epochs."""
        final_epochs = None
        if self.final_waits and best_epochs:
            # no validation set to choose the epoch: use what cross-validation chose
            final_epochs = max(1, int(round(float(np.median(best_epochs)))))
        return final_epochs


def _check_merge(out: Path, units: list[Path]) -> None:
    """Refuse to merge while a training of the run is unfinished."""
    from dlmvi.train.engine import is_finished

    missing = [f.name for f in units if not is_finished(f)]
    if missing:
        raise ConfigError(
            f"{out}: cannot merge, training(s) {', '.join(missing)} are not finished; run every share "
            f"(`dlmvi train ... --shard I/N` for I = 1..N) to the end first"
        )


def _finish_doc(run_doc: dict, lay: TrainLayout, final, train_ids, val_ids, cv_metrics: dict | None,
                t_start: float) -> None:
    """Mark run.json complete with the final model's and the cross-validation's figures."""
    run_doc.update({
        "complete": True,
        "final": {"folder": lay.final.name, "best_epoch": final.best_epoch, "epochs_run": final.epochs_run,
                  "best_val_loss": final.best_val_loss, "n_train": len(train_ids), "n_val": len(val_ids)},
        "cv": None if cv_metrics is None else {"auc_mean": cv_metrics["auc_mean"], "auc_sd": cv_metrics["auc_sd"],
                                               "accuracy_mean": cv_metrics["accuracy_mean"],
                                               "sequence_removed": cv_metrics.get("sequence_removed")},
        "seconds": round(time.perf_counter() - t_start, 2),
    })


def _checked_labels(cache, cfg: TrainConfig, ids: list[str], where: str):
    """(labels, final model's training ids, its validation ids), every class checked."""
    labels = cache.labels(ids, cfg.classes)
    check_classes(labels, cfg.classes, cfg.folds, where)
    # the final model's split, checked now rather than after the cross-validation
    train_ids, val_ids = holdout_split(ids, labels, cfg.holdout, seed=cfg.seed)
    check_classes(cache.labels(train_ids, cfg.classes), cfg.classes, 0, f"{where}, final model")
    return labels, train_ids, val_ids


def _development_patients(cache, cfg: TrainConfig, sequences) -> tuple[list[str], Skipped, str]:
    """(labelled development patients, the unlabelled ones left out, which cohort for messages)."""
    candidates = cache.patient_ids(cohort=cfg.develop_cohort, sequences=sequences)
    where = f"cohort {cfg.develop_cohort}" if cfg.develop_cohort else "all cohorts"
    if not candidates:
        raise CacheError(
            f"no included patient with {', '.join(sequences)}"
            + (f" in cohort {cfg.develop_cohort}" if cfg.develop_cohort else "")
            + f" in the cache {cache.root} (its cohorts: {', '.join(cache.cohorts) or 'none'})"
        )
    # Unlabelled (prospective) patients cannot be trained on: left out, counted and listed.
    ids = training_patients(cache, cfg.develop_cohort, sequences)
    skipped = Skipped("training")
    labelled = set(ids)
    skipped.extend([p for p in candidates if p not in labelled], "no mvi_grade (unlabelled)")
    if not ids:
        raise CohortError(
            f"none of the {len(candidates)} patients of {where} in the cache {cache.root} has an mvi_grade; "
            "training needs patients with a pathology result (M0, M1 or M2 in clinical.csv)"
        )
    return ids, skipped, where


@dataclass
class _Trainer:
    """What every training unit (fold or final model) of a run shares, and how one is trained."""

    cfg: TrainConfig
    cache: object
    inputs: object
    ids: list
    labels: np.ndarray
    sequences: tuple
    net_cfg: NetworkConfig
    on_epoch_end: object = None

    def __post_init__(self):
        from dlmvi.preprocess.patches import input_normalization

        cache = self.cache
        self.pos = {pid: i for i, pid in enumerate(self.ids)}
        self.base_meta = {
            "sequences": list(self.sequences),
            "classes": self.cfg.classes,
            "class_names": CLASS_NAMES[self.cfg.classes],
            "prepare": cache.meta["params"],
            "normalization": input_normalization(cache.config.normalization, cache.meta.get("harmonization")),
            "cache": {"path": str(cache.root), "format": cache.meta.get("format")},
            "harmonization": cache.meta.get("harmonization"),
            "synthetic": cache.synthetic,
            "develop_cohort": self.cfg.develop_cohort,
        }

    def part(self, x, split_ids, dtype=None):
        idx = np.array([self.pos[p] for p in split_ids], dtype=np.int64)
        return (x[idx] if dtype is None else x[idx].astype(dtype)), self.labels[idx]

    def train_one(self, split: Split, folder: Path, seed: int, name: str, epochs=None):
        """Train one unit; returns its fit result and the input it saw (harmonised for it)."""
        from dlmvi.preprocess.patches import input_normalization
        from dlmvi.train.data import AugmentConfig, CombinationDataset
        from dlmvi.train.engine import fit

        cfg = self.cfg
        x, harmonization = self.inputs.for_unit(list(split.train) + list(split.val))
        xt, yt = self.part(x, split.train)
        ds = CombinationDataset(xt, yt, self.sequences, seed=seed, augment=True,
                                augment_config=AugmentConfig.for_intensity(cfg.intensity_augmentation),
                                sequence_dropout=cfg.sequence_dropout)
        val = self.part(x, split.val) if split.val else None
        meta = dict(self.base_meta, split=split.to_dict())
        if cfg.harmonization:
            meta.update(harmonization=harmonization,
                        normalization=input_normalization(self.cache.config.normalization, harmonization))
        res = fit(ds, val, self.net_cfg, cfg, folder, meta=meta, seed=seed, epochs=epochs,
                  on_epoch_end=self.on_epoch_end, description=name)
        return res, x


def _run_doc(trainer: _Trainer, skipped: Skipped, world: int) -> dict:
    """run.json of a run that has not finished yet."""
    from dlmvi.train.engine import auto_workers, execution_doc, resolve_device

    cfg, inputs = trainer.cfg, trainer.inputs
    return {
        "kind": "dlmvi-run/1",
        "training": cfg.to_dict(),
        "network": trainer.net_cfg.to_dict(),
        **trainer.base_meta,
        "n_patients": len(trainer.ids),
        "n_per_class": np.bincount(trainer.labels, minlength=cfg.classes).tolist(),
        "n_unlabelled_left_out": len(skipped),
        "world_size": world,
        "execution": execution_doc(cfg, resolve_device(cfg.device), world,
                                   auto_workers(resolve_device(cfg.device), cfg.workers)),
        "patches_in_memory": {"dtype": str(np.dtype(inputs.dtype)), "megabytes": round(inputs.nbytes / 1e6, 1)},
        "complete": False,
    }


def _train_share(trainer: _Trainer, shard, units: list[Path], splits: list[Split], final_split: Split,
                 lay: TrainLayout) -> None:
    """Train this share's folds and final model."""
    cfg = trainer.cfg
    for folder in shard.select(units):
        if folder == lay.final:
            trainer.train_one(final_split, lay.final, cfg.seed * 1000 + 999, f"final model (share {shard})")
        else:
            i = units.index(folder)
            trainer.train_one(splits[i], folder, cfg.seed * 1000 + i, f"fold {i + 1}/{cfg.folds} (share {shard})")


def _cross_validate(trainer: _Trainer, splits: list[Split], lay: TrainLayout, rank: int):
    """Train (or read back) every fold and predict its test patients.

    Returns:
        (out-of-fold predictions, cv metrics, best epoch per fold); ``(None, None, [])``
        without folds. Rank 0 writes cv_predictions.csv and cv_metrics.json.
    """
    from dlmvi.model.inference import blank_sequences, predict_arrays, predictions_frame

    cfg, cache, sequences = trainer.cfg, trainer.cache, trainer.sequences
    cv_pred, cv_metrics, best_epochs = None, None, []
    if not splits:
        return cv_pred, cv_metrics, best_epochs
    frames, per_fold, removed = [], [], []
    for i, split in enumerate(splits):
        res, x = trainer.train_one(split, lay.fold(i), cfg.seed * 1000 + i, f"fold {i + 1}/{cfg.folds}")
        best_epochs.append(res.best_epoch)
        xt, _ = trainer.part(x, split.test, np.float32)
        probs, _ = predict_arrays(res.model, xt, tta=False)
        f = predictions_frame(split.test, cache.cohort_of(split.test), cache.grades(split.test), probs)
        f["fold"] = i
        frames.append(f)
        per_fold.append(_metrics(f, i, res))
        if len(sequences) > 1:  # the same held-out patients with one sequence missing
            removed.append({s: predict_arrays(res.model, blank_sequences(xt, sequences, [s]), tta=False)[0][:, 1:]
                            .sum(axis=1) for s in sequences})
    cv_pred = pd.concat(frames, ignore_index=True)
    cv_metrics = _summary(per_fold, cv_pred)
    if removed:
        cv_metrics["sequence_removed"] = _sequence_removed(cv_pred, removed, sequences, cfg.sequence_dropout)
    if rank == 0:
        write_csv(lay.cv_predictions, cv_pred)
        write_json(lay.cv_metrics, cv_metrics)
    return cv_pred, cv_metrics, best_epochs


def training_patients(cache, develop_cohort: str | None, sequences) -> list[str]:
    """The patients a training run develops on: included patients of ``develop_cohort`` (every
    cohort when None) with every one of ``sequences`` and an MVI grade. The final model trains on
    all of them; each fold's model on its share."""
    candidates = cache.patient_ids(cohort=develop_cohort, sequences=tuple(sequences))
    return [p for p, g in zip(candidates, cache.grades(candidates)) if g in GRADES]


def warn_harmonised_once(cache) -> None:
    """Warn when cross-validating on a cache harmonised once before the folds were drawn: its
    harmonisation was fitted on patients that are some fold's test patients."""
    h = cache.meta.get("harmonization")
    if h and h.get("method") in ("nyul", "global"):
        warnings.warn(
            f"{cache.root} was harmonised ({h['method']}) once, on every development patient: each fold's test "
            "patients shaped the harmonisation of its training data, so the cross-validated figures are optimistic. "
            f"Train on the raw cache with --harmonization {h['method']}, which fits it inside each fold",
            DlmviWarning, stacklevel=3)


def check_classes(labels, classes: int, folds: int, where: str) -> None:
    """Refuse a training set without every class, or too few of a class for ``folds`` folds.

    A model trained on one class predicts it for everyone and its AUC is undefined; a fold
    tested on one class has no AUC either. Stratified k-fold needs ``folds`` patients of each
    class so that every fold is trained and tested on all classes.

    Args:
        labels: class index per patient (0/1, or 0/1/2 for grades).
        classes: 2 (MVI absent/present) or 3 (M0/M1/M2).
        folds: cross-validation folds (< 2: none).
        where: which patients, for the message (``"cohort 2015, fold 2 of 5"``).

    Raises:
        CohortError: naming the counts per class and the fix.
    """
    names = CLASS_NAMES[classes]
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes)
    text = ", ".join(f"{int(n)} {names[c]}" for c, n in enumerate(counts))
    missing = [names[c] for c in range(classes) if counts[c] == 0]
    if missing:
        grades = " (M0, M1 and M2)" if classes == 3 else " (M0 for absent, M1/M2 for present)"
        alt = "; or train MVI absent/present with --classes 2" if classes == 3 else ""
        raise CohortError(
            f"the training set of {where} ({int(counts.sum())} labelled patients) has {text}: no patient "
            f"with {' or '.join(missing)}. The network must see every class{grades}; add such patients, "
            f"check mvi_grade in clinical.csv or choose another --develop-cohort{alt}"
        )
    if folds >= 2 and counts.min() < folds:
        fix = (f"use --folds {int(counts.min())} or fewer" if counts.min() >= 2
               else "use --folds 0 (no cross-validation)")
        raise CohortError(
            f"the training set of {where} has {text}: {folds}-fold cross-validation needs at least {folds} "
            f"patients of each class, so that every fold is trained and tested on all of them; {fix}, "
            "or add patients"
        )


def _metrics(frame: pd.DataFrame, fold: int, res) -> dict:
    from sklearn.metrics import roc_auc_score

    y = frame["label"].astype(int).to_numpy()
    auc = float(roc_auc_score(y, frame["dl_prob"])) if 0 < y.sum() < len(y) else math.nan
    return {"fold": fold, "n": len(frame), "auc": auc,
            "accuracy": float((frame["dl_mvi"].to_numpy() == y).mean()),
            "best_epoch": res.best_epoch, "epochs_run": res.epochs_run}


def _sequence_removed(cv_pred: pd.DataFrame, removed: list[dict], sequences, dropout: float) -> dict:
    """Out-of-fold AUC of the development cohort with each sequence blanked (what a missing
    sequence costs), next to the AUC with every sequence."""
    from sklearn.metrics import roc_auc_score

    y = cv_pred["label"].astype(int).to_numpy()
    ok = 0 < y.sum() < len(y)
    full = float(roc_auc_score(y, cv_pred["dl_prob"])) if ok else math.nan
    out = {"auc_all_sequences": full, "sequence_dropout": dropout, "auc_without": {},
           "note": "pooled out-of-fold AUC of the development cohort with the sequence's patches set to 0 "
                   "(how predict-patient scores a patient missing that sequence)"}
    for s in sequences:
        p = np.concatenate([r[s] for r in removed])
        auc = float(roc_auc_score(y, p)) if ok else math.nan
        out["auc_without"][s] = {"auc": auc, "cost": full - auc}
    return out


def _summary(per_fold: list[dict], pooled: pd.DataFrame) -> dict:
    from sklearn.metrics import roc_auc_score

    aucs = np.array([f["auc"] for f in per_fold], dtype=float)
    accs = np.array([f["accuracy"] for f in per_fold], dtype=float)
    y = pooled["label"].astype(int).to_numpy()
    return {
        "folds": per_fold,
        "auc_mean": float(np.nanmean(aucs)) if np.isfinite(aucs).any() else math.nan,
        "auc_sd": float(np.nanstd(aucs, ddof=1)) if np.isfinite(aucs).sum() > 1 else math.nan,
        "accuracy_mean": float(accs.mean()),
        "accuracy_sd": float(accs.std(ddof=1)) if len(accs) > 1 else math.nan,
        "pooled_auc": float(roc_auc_score(y, pooled["dl_prob"])) if 0 < y.sum() < len(y) else math.nan,
        "pooled_accuracy": float((pooled["dl_mvi"].to_numpy() == y).mean()),
        "metric_note": "AUC of MVI present (M1 or M2) vs absent; out-of-fold, first slice of each sequence",
    }


__all__ = ["RunResult", "run_training", "network_config", "check_classes", "training_patients", "warn_harmonised_once"]
