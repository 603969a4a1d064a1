"""The rad-score: a radiomics model fitted inside the same folds as DL-MVI.

For each fold of the DL-MVI run (its ``splits.json``), on the fold's training patients only
(``train`` + ``val``: every patient the fold's network learnt from):

1. drop near-constant features (one value in >= ``max_share`` of the patients, or no spread);
2. drop highly correlated features (|Spearman r| > ``max_correlation`` with a feature kept
   before it, in column order);
3. optionally keep only features reproducible under ROI perturbation (ICC >= ``min_icc``,
   the ICC computed on the fold's training patients, :mod:`dlmvi.stats.reproducibility`);
4. standardise; L1-penalised logistic regression with its penalty chosen by an inner
   stratified cross-validation (AUC) on the same training patients (scikit-learn's
   ``LogisticRegressionCV``);

then score the fold's test patients: an out-of-fold rad-score for every development patient.
The final model (the same steps on every development patient) scores the other cohorts.
Seeded: the same seed gives the same features, coefficients and scores.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from dlmvi.errors import CohortError, ConfigError

SOURCE_FINAL = "final rad-score model (all development patients)"


class NearConstantFilter(TransformerMixin, BaseEstimator):
    """Drop columns whose most frequent value covers ``max_share`` of the rows (or no spread)."""

    def __init__(self, max_share: float = 0.9):
        self.max_share = max_share

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        keep = []
        for j in range(X.shape[1]):
            col = X[:, j]
            _, counts = np.unique(col, return_counts=True)
            keep.append(bool(np.nanstd(col) > 0 and counts.max() / len(col) < self.max_share))
        self.support_ = np.array(keep, dtype=bool)
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float)[:, self.support_]


class CorrelationFilter(TransformerMixin, BaseEstimator):
    """Keep a column unless its |Spearman r| with a column kept before it exceeds ``threshold``."""

    def __init__(self, threshold: float = 0.9):
        self.threshold = threshold

    def fit(self, X, y=None):
        from scipy.stats import rankdata

        X = np.asarray(X, dtype=float)
        r = np.corrcoef(rankdata(X, axis=0), rowvar=False) if X.shape[1] > 1 else np.ones((1, 1))
        r = np.nan_to_num(np.atleast_2d(r))
        kept: list[int] = []
        for j in range(X.shape[1]):
            if all(abs(r[j, k]) <= self.threshold for k in kept):
                kept.append(j)
        self.support_ = np.zeros(X.shape[1], dtype=bool)
        self.support_[kept] = True
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float)[:, self.support_]


@dataclass(frozen=True)
class RadScoreConfig:
    """Settings of the rad-score (saved with it)."""

    max_share: float = 0.9
    max_correlation: float = 0.9
    min_icc: float | None = None
    inner_folds: int = 5
    n_cs: int = 10
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class RadScoreModel(BaseEstimator):
    """Steps 1-4 of the module docstring, scikit-learn style.

    Attributes (after :meth:`fit`): ``features_in_`` (columns given), ``selected_`` (features
    with a non-zero coefficient), ``coef_`` (pandas Series on the standardised scale),
    ``intercept_``, ``C_`` (chosen inverse penalty), ``steps_`` (features left after each step).
    """

    def __init__(self, config: RadScoreConfig = RadScoreConfig()):
        self.config = config

    def fit(self, X: pd.DataFrame, y, icc: pd.Series | None = None):
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold
        from sklearn.preprocessing import StandardScaler

        cfg = self.config
        y = np.asarray(y, dtype=int)
        cols = list(X.columns)
        self.features_in_ = cols
        nc = NearConstantFilter(cfg.max_share).fit(X[cols])
        cols = [c for c, k in zip(cols, nc.support_) if k]
        steps = {"features": len(self.features_in_), "not near-constant": len(cols)}
        if cols:
            cf = CorrelationFilter(cfg.max_correlation).fit(X[cols])
            cols = [c for c, k in zip(cols, cf.support_) if k]
        steps["not correlated"] = len(cols)
        if cfg.min_icc is not None and icc is not None:
            cols = [c for c in cols if float(icc.get(c, np.nan)) >= cfg.min_icc]
            steps[f"ICC >= {cfg.min_icc:g}"] = len(cols)
        if not cols:
            raise CohortError("the rad-score has no feature left after dropping near-constant, correlated "
                              "(and unreproducible) features; compute more features or relax the filters")
        self.columns_ = cols
        self.scaler_ = StandardScaler().fit(X[cols].to_numpy(float))
        z = self.scaler_.transform(X[cols].to_numpy(float))
        inner = max(2, min(cfg.inner_folds, int(np.bincount(y, minlength=2).min())))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on tiny folds
            lr = LogisticRegressionCV(Cs=cfg.n_cs, l1_ratios=(1.0,), solver="liblinear", scoring="roc_auc",
                                      cv=StratifiedKFold(inner, shuffle=True, random_state=cfg.seed),
                                      random_state=cfg.seed, max_iter=1000, use_legacy_attributes=False)
            lr.fit(z, y)
        self.lr_ = lr
        self.coef_ = pd.Series(lr.coef_[0], index=cols)
        self.intercept_ = float(lr.intercept_[0])
        self.C_ = float(np.ravel(lr.C_)[0])
        self.selected_ = [c for c in cols if self.coef_[c] != 0]
        steps["selected (L1)"] = len(self.selected_)
        self.steps_ = steps
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The rad-score: the model's log odds of MVI."""
        z = self.scaler_.transform(X[self.columns_].to_numpy(float))
        return z @ self.coef_.to_numpy() + self.intercept_

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return 1 / (1 + np.exp(-self.decision_function(X)))

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "C": self.C_, "intercept": self.intercept_,
                "coefficients": {c: float(self.coef_[c]) for c in self.selected_}, "steps": self.steps_,
                "scaler": {"mean": dict(zip(self.columns_, self.scaler_.mean_.tolist())),
                           "scale": dict(zip(self.columns_, self.scaler_.scale_.tolist()))}}


def read_splits(path) -> dict:
    """``splits.json`` of a DL-MVI training (folds and final model).

    Raises:
        ConfigError: absent, or without cross-validation folds.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no splits.json; the rad-score uses the folds of a finished DL-MVI training")
    doc = json.loads(path.read_text())
    if not doc.get("folds"):
        raise ConfigError(f"{path}: the training has no cross-validation folds (--folds 0); the rad-score is "
                          "compared on the same out-of-fold patients, so train with --folds >= 2")
    return doc


def fold_training(split: dict) -> list[str]:
    """Every patient a fold's model learnt from (its ``train`` and ``val`` parts)."""
    return list(split.get("train", [])) + list(split.get("val", []))


@dataclass
class RadScoreCV:
    """Out-of-fold rad-scores of the development patients and the final model's scores of the others."""

    predictions: pd.DataFrame   # patient_id, cohort, mvi, fold, rad_score, rad_prob, source
    folds: list[dict]           # per fold: selected features, C, steps
    final: RadScoreModel

    def write(self, out) -> None:
        from dlmvi.io.atomic import make_dirs, write_csv, write_json

        out = make_dirs(out)
        write_csv(out / "radscore_predictions.csv", self.predictions)
        write_json(out / "radscore.json", {"folds": self.folds, "final": self.final.to_dict()})


def cross_validate_radscore(features: pd.DataFrame, outcome: pd.Series, splits: dict,
                            config: RadScoreConfig = RadScoreConfig(),
                            icc_of: Callable[[list[str]], pd.Series] | None = None) -> RadScoreCV:
    """The rad-score in the DL-MVI run's folds (see the module docstring).

    Args:
        features: one row per patient, ``patient_id``, ``cohort`` and feature columns.
        outcome: 0/1 MVI by patient id (labelled patients only).
        splits: ``splits.json`` (:func:`read_splits`).
        config: the rad-score settings.
        icc_of: ``f(patient_ids) -> ICC per feature`` on those patients (the in-fold ICC
            filter; needed when ``config.min_icc`` is set).

    Patients without features (left out by ``dlmvi radiomics``) get no rad-score; the
    comparison keeps the patients every model scored.
    """
    from dlmvi.preprocess.radiomics import feature_columns

    cols = feature_columns(features)
    frame = features.set_index("patient_id")
    rows, per_fold = [], []
    for i, split in enumerate(splits["folds"]):
        train = [p for p in fold_training(split) if p in frame.index and p in outcome.index]
        test = [p for p in split.get("test", []) if p in frame.index]
        model = RadScoreModel(config).fit(frame.loc[train, cols], outcome[train],
                                          icc_of(train) if icc_of is not None and config.min_icc is not None else None)
        score = model.decision_function(frame.loc[test, cols])
        rows.append(pd.DataFrame({"patient_id": test, "fold": i, "rad_score": score,
                                  "source": f"out-of-fold (fold {i + 1})"}))
        per_fold.append({"fold": i, "n_train": len(train), "n_test": len(test), "C": model.C_,
                         "selected": model.selected_, "steps": model.steps_})
    dev = [p for p in fold_training(splits["final"]) if p in frame.index and p in outcome.index]
    final = RadScoreModel(config).fit(frame.loc[dev, cols], outcome[dev],
                                      icc_of(dev) if icc_of is not None and config.min_icc is not None else None)
    oof = pd.concat(rows, ignore_index=True)
    others = [p for p in frame.index if p not in set(oof["patient_id"]) and p not in set(dev)]
    ext = pd.DataFrame({"patient_id": others, "fold": -1, "source": SOURCE_FINAL,
                        "rad_score": final.decision_function(frame.loc[others, cols]) if others else []})
    pred = pd.concat([oof, ext], ignore_index=True) if others else oof
    pred["rad_prob"] = 1 / (1 + np.exp(-pred["rad_score"]))
    pred.insert(1, "cohort", frame.loc[pred["patient_id"], "cohort"].to_numpy())
    pred.insert(2, "mvi", [outcome.get(p, np.nan) for p in pred["patient_id"]])
    return RadScoreCV(pred, per_fold, final)


__all__ = ["RadScoreModel", "RadScoreConfig", "RadScoreCV", "NearConstantFilter", "CorrelationFilter",
           "cross_validate_radscore", "read_splits", "fold_training", "SOURCE_FINAL"]
