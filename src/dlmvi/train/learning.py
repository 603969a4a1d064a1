"""Would more patients help? Learning curves of DL-MVI and the rad-score in the same folds.

For each fraction (25/50/75/100 %) and each fold of the DL-MVI run's ``splits.json``, a
stratified random share of the fold's training patients (seeded; at least 2 per class) trains
the model, which then scores the fold's full test patients: the same test folds at every
fraction, so out-of-fold AUCs are comparable. For DL-MVI the fold's validation patients
(early stopping) are kept whole and the fraction applies to its ``train`` part; 100 % is the
run's own out-of-fold predictions (``cv_predictions.csv``), not retrained. The AUCs are
computed by the statistics stage from the predictions returned here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.train.radscore import RadScoreConfig, RadScoreModel, fold_training

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def subsample(ids, labels, fraction: float, seed: int) -> list[str]:
    """A stratified ``fraction`` of ``ids`` (at least 2 per class; all of them at 1)."""
    ids, labels = list(ids), np.asarray(labels, dtype=int)
    if fraction >= 1:
        return ids
    rng = np.random.default_rng(seed)
    keep: list[str] = []
    for c in np.unique(labels):
        members = [p for p, y in zip(ids, labels) if y == c]
        n = max(2, int(round(fraction * len(members))))
        keep.extend(rng.choice(members, size=min(n, len(members)), replace=False).tolist())
    return [p for p in ids if p in set(keep)]


def radscore_learning_curve(features: pd.DataFrame, outcome: pd.Series, splits: dict,
                            fractions=FRACTIONS, config: RadScoreConfig = RadScoreConfig()) -> pd.DataFrame:
    """Out-of-fold rad-scores per fraction: ``fraction, fold, n_train, patient_id, mvi, prob``."""
    from dlmvi.preprocess.radiomics import feature_columns

    cols = feature_columns(features)
    frame = features.set_index("patient_id")
    rows = []
    for f in fractions:
        for i, split in enumerate(splits["folds"]):
            train = [p for p in fold_training(split) if p in frame.index and p in outcome.index]
            train = subsample(train, outcome[train], f, config.seed * 1000 + i)
            test = [p for p in split.get("test", []) if p in frame.index and p in outcome.index]
            model = RadScoreModel(config).fit(frame.loc[train, cols], outcome[train])
            rows.append(pd.DataFrame({"model": "rad-score", "fraction": f, "fold": i, "n_train": len(train),
                                      "patient_id": test, "mvi": outcome[test].to_numpy(),
                                      "prob": model.predict_proba(frame.loc[test, cols])}))
    return pd.concat(rows, ignore_index=True)


def dl_learning_curve(cache_dir, train_dir, out_dir, config, fractions=FRACTIONS) -> pd.DataFrame:
    """Out-of-fold DL-MVI probabilities per fraction (retrains each fold below 100 %).

    Args:
        cache_dir: the cache the run trained on.
        train_dir: the DL-MVI training folder (``splits.json``, ``cv_predictions.csv``).
        out_dir: where the smaller trainings go (``<fraction>/fold_<i>``; resumable).
        config: the run's :class:`~dlmvi.train.config.TrainConfig`.
    """
    from dlmvi.layout import TrainLayout
    from dlmvi.model.inference import predict_arrays
    from dlmvi.preprocess.cache import PatchCache
    from dlmvi.train.data import AugmentConfig, CombinationDataset
    from dlmvi.train.engine import fit
    from dlmvi.train.inputs import TrainingInputs
    from dlmvi.train.radscore import read_splits
    from dlmvi.train.run import network_config

    lay = TrainLayout(train_dir)
    splits = read_splits(lay.splits_json)
    cfg = config.resolved()
    cache = PatchCache(cache_dir)
    sequences = tuple(cfg.sequences or cache.sequences)
    net = network_config(cfg, len(sequences))
    ids = sorted({p for s in splits["folds"] for p in [*fold_training(s), *s["test"]]})
    labels = dict(zip(ids, cache.labels(ids, cfg.classes)))
    inputs = TrainingInputs(cache, ids, sequences, net.input_size, cfg.harmonization)
    pos = {p: i for i, p in enumerate(ids)}
    cv = pd.read_csv(lay.cv_predictions, dtype={"patient_id": str})
    rows = [pd.DataFrame({"model": "DL-MVI", "fraction": 1.0, "fold": cv["fold"],
                          "n_train": cv["fold"].map(lambda i: len(splits["folds"][i]["train"])),
                          "patient_id": cv["patient_id"], "mvi": cv["patient_id"].map(labels).clip(0, 1),
                          "prob": cv["dl_prob"]})] if 1.0 in fractions else []
    for f in [f for f in fractions if f < 1]:
        for i, split in enumerate(splits["folds"]):
            train = subsample(split["train"], [labels[p] for p in split["train"]], f, cfg.seed * 1000 + i)
            x, _ = inputs.for_unit(train + list(split["val"]))
            take = lambda group: x[[pos[p] for p in group]]  # noqa: E731
            ds = CombinationDataset(take(train), np.array([labels[p] for p in train]), sequences,
                                    seed=cfg.seed * 1000 + i, augment=True,
                                    augment_config=AugmentConfig.for_intensity(cfg.intensity_augmentation))
            val = (take(split["val"]), np.array([labels[p] for p in split["val"]])) if split["val"] else None
            res = fit(ds, val, net, cfg, Path(out_dir) / f"{int(f * 100)}" / f"fold_{i}", seed=cfg.seed * 1000 + i,
                      description=f"learning curve {f:.0%}, fold {i + 1}")
            probs, _ = predict_arrays(res.model, take(split["test"]).astype(np.float32))
            rows.append(pd.DataFrame({"model": "DL-MVI", "fraction": f, "fold": i, "n_train": len(train),
                                      "patient_id": split["test"],
                                      "mvi": [min(1, int(labels[p])) for p in split["test"]],
                                      "prob": probs[:, 1:].sum(axis=1)}))
    return pd.concat(rows, ignore_index=True)


__all__ = ["FRACTIONS", "subsample", "radscore_learning_curve", "dl_learning_curve"]
