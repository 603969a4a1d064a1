"""Cohort shift in the network's feature space (``dlmvi shift``), in pictures and in numbers.

The study showed a t-SNE of the per-sequence features in which the 2015 and 2018 cohorts
separated on T1 and T1D but mixed on T1V (figure 2). A picture is not a test, so per
sequence this module also reports:

- **separability**: the cross-validated AUC of a logistic regression (standardised
  features, L2, seeded stratified k-fold) telling one cohort from another from the
  512-d features. 0.5 = the cohorts look alike to the model; 1 = perfectly told apart.
- **MMD**: the maximum mean discrepancy between the cohorts' feature distributions with an
  RBF kernel whose bandwidth is the median pairwise distance of the pooled features (the
  median heuristic), and a seeded permutation p-value (cohort labels shuffled).

Both compare the *reference* cohort (the development cohort, default the first one) with
every other cohort. The features come from :func:`dlmvi.model.inference.predict_cache`
(first slice of every sequence, as at test time).

Outputs (``OUT/``): ``shift.json``, ``shift.csv`` (one row per sequence and cohort pair),
``tsne.csv`` (coordinates) and ``tsne.png`` (rows = sequences, columns = M0, M1, M2, points
coloured by cohort), and ``features.csv``/``features.features.npz`` (the predictions and
features used).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.constants import GRADES
from dlmvi.errors import StatisticsError
from dlmvi.layout import SHIFT_JSON


def _two_groups(features, groups, a, b):
    f = np.asarray(features, dtype=np.float64)
    g = np.asarray(groups).astype(str)
    if f.ndim != 2 or f.shape[0] != g.size:
        raise StatisticsError(f"features must be (n, d) with one group per row; got {f.shape} and {g.size} groups")
    m = (g == str(a)) | (g == str(b))
    return f[m], (g[m] == str(b)).astype(int)


def separability_auc(features, groups, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated AUC of a logistic regression telling two groups apart.

    Args:
        features: (n, d) feature vectors.
        groups: (n,) two distinct group labels (e.g. cohorts).
        seed: seed of the stratified fold assignment.
        folds: folds (reduced to the smaller group's size when needed, at least 2).

    Returns:
        AUC of the out-of-fold decision values (0.5 = indistinguishable).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    g = np.asarray(groups).astype(str)
    levels = sorted(set(g.tolist()))
    if len(levels) != 2:
        raise StatisticsError(f"separability needs exactly 2 groups, got {levels}")
    x, y = _two_groups(features, g, levels[0], levels[1])
    k = min(folds, int(np.bincount(y).min()))
    if k < 2:
        raise StatisticsError(f"separability needs at least 2 patients per cohort, got {np.bincount(y).tolist()}")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    score = cross_val_predict(model, x, y, cv=cv, method="decision_function")
    return float(roc_auc_score(y, score))


def _sq_dists(x: np.ndarray) -> np.ndarray:
    sq = (x**2).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * x @ x.T
    return np.maximum(d, 0.0)


def _mmd2_from_kernel(k: np.ndarray, is_b: np.ndarray) -> float:
    a, b = ~is_b, is_b
    na, nb = a.sum(), b.sum()
    kaa = (k[np.ix_(a, a)].sum() - np.trace(k[np.ix_(a, a)])) / (na * (na - 1))
    kbb = (k[np.ix_(b, b)].sum() - np.trace(k[np.ix_(b, b)])) / (nb * (nb - 1))
    kab = k[np.ix_(a, b)].mean()
    return float(kaa + kbb - 2 * kab)


def mmd_test(x, y, n_permutations: int = 200, seed: int = 0) -> dict:
    """Maximum mean discrepancy between two samples with a permutation test.

    Unbiased MMD^2 (Gretton et al. 2012) with the RBF kernel
    ``exp(-||u - v||^2 / (2 sigma^2))``, sigma = median pairwise distance of the pooled
    sample (median heuristic). The p-value is ``(1 + #{MMD^2_perm >= MMD^2}) /
    (1 + n_permutations)`` over seeded random relabellings.

    Args:
        x: (n, d) first sample; y: (m, d) second sample (n, m >= 2).
        n_permutations: number of permutations.
        seed: seed of the permutations.

    Returns:
        dict with ``mmd2``, ``p_value``, ``bandwidth`` (sigma), ``n_permutations``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise StatisticsError(f"MMD needs two (n, d) samples of the same d, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise StatisticsError(f"MMD needs at least 2 rows per sample, got {len(x)} and {len(y)}")
    z = np.vstack([x, y])
    d2 = _sq_dists(z)
    iu = np.triu_indices(len(z), 1)
    sigma = float(np.sqrt(np.median(d2[iu])))
    if not sigma > 0:
        sigma = 1.0
    k = np.exp(-d2 / (2 * sigma**2))
    is_b = np.zeros(len(z), dtype=bool)
    is_b[len(x):] = True
    obs = _mmd2_from_kernel(k, is_b)
    rng = np.random.default_rng(seed)
    null = np.array([_mmd2_from_kernel(k, rng.permutation(is_b)) for _ in range(n_permutations)])
    p = (1 + int((null >= obs).sum())) / (1 + n_permutations)
    return {"mmd2": obs, "p_value": float(p), "bandwidth": sigma, "n_permutations": int(n_permutations)}


def tsne_embedding(features, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-d t-SNE (scikit-learn, PCA initialisation, seeded) of (n, d) features."""
    from sklearn.manifold import TSNE

    f = np.asarray(features, dtype=np.float64)
    n = len(f)
    if n < 4:
        raise StatisticsError(f"t-SNE needs at least 4 patients, got {n}")
    perp = float(min(perplexity, max(1.0, (n - 1) / 3)))
    return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(f)


def shift_scores(features, cohorts, sequences, reference: str | None = None, seed: int = 0,
                 n_permutations: int = 200) -> pd.DataFrame:
    """Separability AUC and MMD per sequence, reference cohort vs each other cohort.

    Args:
        features: (n, k, d) per-sequence features.
        cohorts: (n,) cohort of each patient.
        sequences: names of the k sequences.
        reference: reference cohort (default: the first in sorted order).
        seed, n_permutations: see :func:`separability_auc` and :func:`mmd_test`.

    Returns:
        DataFrame with ``sequence, reference, cohort, n_reference, n_cohort,
        separability_auc, mmd2, mmd_p_value, bandwidth``.
    """
    f = np.asarray(features, dtype=np.float64)
    c = np.asarray(cohorts).astype(str)
    levels = sorted(set(c.tolist()))
    if len(levels) < 2:
        raise StatisticsError(f"the shift analysis needs at least two cohorts; found only {levels}")
    reference = str(reference) if reference is not None else levels[0]
    if reference not in levels:
        raise StatisticsError(f"reference cohort {reference!r} is not among the cohorts {levels}")
    rows = []
    for j, seq in enumerate(sequences):
        for other in (lv for lv in levels if lv != reference):
            m = (c == reference) | (c == other)
            fa, fb = f[c == reference, j], f[c == other, j]
            mmd = mmd_test(fa, fb, n_permutations=n_permutations, seed=seed)
            rows.append({
                "sequence": seq, "reference": reference, "cohort": other,
                "n_reference": len(fa), "n_cohort": len(fb),
                "separability_auc": separability_auc(f[m, j], c[m], seed=seed),
                "mmd2": mmd["mmd2"], "mmd_p_value": mmd["p_value"], "bandwidth": mmd["bandwidth"],
            })
    return pd.DataFrame(rows)


def tsne_table(features, frame: pd.DataFrame, sequences, seed: int = 0) -> pd.DataFrame:
    """t-SNE coordinates per sequence: patient_id, cohort, mvi_grade, sequence, tsne_1, tsne_2."""
    parts = []
    for j, seq in enumerate(sequences):
        e = tsne_embedding(np.asarray(features)[:, j], seed=seed)
        parts.append(pd.DataFrame({
            "patient_id": frame["patient_id"].to_numpy(), "cohort": frame["cohort"].astype(str).to_numpy(),
            "mvi_grade": frame["mvi_grade"].to_numpy(), "sequence": seq, "tsne_1": e[:, 0], "tsne_2": e[:, 1],
        }))
    return pd.concat(parts, ignore_index=True)


def plot_tsne(table: pd.DataFrame, scores: pd.DataFrame | None = None, axes=None):
    """Draw the t-SNE grid: one row per sequence, one column per MVI grade, colour = cohort."""
    from dlmvi.evaluate.display import subplots

    seqs = list(dict.fromkeys(table["sequence"]))
    cohorts = sorted(table["cohort"].unique())
    if axes is None:
        _, axes = subplots(len(seqs), len(GRADES), figsize=(3.2 * len(GRADES), 3.0 * len(seqs)), squeeze=False)
    for r, seq in enumerate(seqs):
        t = table[table["sequence"] == seq]
        label = seq
        if scores is not None and len(scores):
            s = scores[scores["sequence"] == seq]
            if len(s):
                label += "\n" + ", ".join(f"AUC {v:.2f}" for v in s["separability_auc"])
        for col, g in enumerate(GRADES):
            ax = axes[r][col]
            for i, c in enumerate(cohorts):
                tt = t[(t["mvi_grade"] == g) & (t["cohort"] == c)]
                ax.scatter(tt["tsne_1"], tt["tsne_2"], s=8, alpha=0.7, color=f"C{i}", label=c)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(g)
            if col == 0:
                ax.set_ylabel(label, fontsize=9)
    axes[0][-1].legend(title="cohort", fontsize=7, loc="best")
    return axes


@dataclass
class ShiftResult:
    """The cohort shift of a model's features, computed once (:func:`analyse_shift`);
    :meth:`write` writes it.

    Attributes:
        prediction: the predictions and features used (features.csv, features.features.npz).
        scores: separability AUC and MMD per sequence and cohort pair (shift.csv).
        tsne: t-SNE coordinates per sequence (tsne.csv, tsne.png).
        doc: the shift.json document.
    """

    prediction: object
    scores: pd.DataFrame
    tsne: pd.DataFrame
    doc: dict

    def write(self, folder) -> None:
        """features.csv (+ .features.npz), shift.csv, tsne.csv, tsne.png and shift.json in ``folder``."""
        from dlmvi.io.atomic import save_figure, write_csv, write_json
        from dlmvi.model.inference import write_prediction

        out = Path(folder)
        write_prediction(self.prediction, out / "features.csv")
        write_csv(out / "shift.csv", self.scores)
        write_csv(out / "tsne.csv", self.tsne)
        axes = plot_tsne(self.tsne, self.scores)
        fig = axes[0][0].figure
        fig.suptitle("Per-sequence features (t-SNE), coloured by cohort"
                     + (" - synthetic data" if self.prediction.meta["synthetic"] else ""), fontsize=10)
        save_figure(fig, out / "tsne.png")
        write_json(out / SHIFT_JSON, self.doc)


def analyse_shift(ck, pred, cache_dir, seed: int = 0, reference: str | None = None,
                  n_permutations: int = 200) -> ShiftResult:
    """Per-sequence cohort shift of the features ``pred`` that checkpoint ``ck`` gave on a cache.

    Args:
        ck: the loaded checkpoint (its development cohort is the default reference).
        pred: :func:`dlmvi.model.inference.predict_cache` of ``ck`` on ``cache_dir``.
        cache_dir: the cache (recorded in shift.json).
        seed, reference, n_permutations: see :func:`run_shift`.
    """
    from dlmvi.constants import SYNTHETIC_NOTICE

    frame = pred.frame
    if reference is None:
        dev = ck.meta.get("develop_cohort")
        reference = str(dev) if dev is not None and str(dev) in set(frame["cohort"]) else None
    scores = shift_scores(pred.features, frame["cohort"], pred.sequences, reference=reference, seed=seed,
                          n_permutations=n_permutations)
    tsne = tsne_table(pred.features, frame, pred.sequences, seed=seed)
    per_seq = {}
    for seq, g in scores.groupby("sequence", sort=False):
        per_seq[seq] = {r["cohort"]: {k: r[k] for k in ("separability_auc", "mmd2", "mmd_p_value", "bandwidth",
                                                         "n_reference", "n_cohort")}
                        for r in g.to_dict("records")}
    doc = {
        "checkpoint": str(ck.path), "cache": str(cache_dir), "seed": seed,
        "reference_cohort": scores["reference"].iloc[0] if len(scores) else reference,
        "n_patients": {str(c): int(n) for c, n in frame["cohort"].value_counts().sort_index().items()},
        "sequences": per_seq,
        "methods": {
            "features": "per-sequence encoder output (first slice), from dlmvi.model.inference.predict_cache",
            "separability_auc": "out-of-fold AUC of standardised L2 logistic regression (C=1), seeded "
                                "stratified 5-fold; 0.5 = cohorts indistinguishable",
            "mmd": f"unbiased MMD^2, RBF kernel, bandwidth = median pairwise distance; permutation p-value "
                   f"({n_permutations} seeded permutations)",
            "tsne": "scikit-learn TSNE, PCA init, perplexity min(30, (n-1)/3), seeded",
        },
        "harmonization": (ck.meta.get("harmonization") or {}).get("method") if isinstance(ck.meta.get("harmonization"), dict) else None,
        "synthetic": bool(pred.meta["synthetic"]),
    }
    if doc["synthetic"]:
        doc["notice"] = SYNTHETIC_NOTICE
    return ShiftResult(pred, scores, tsne, doc)


def run_shift(run_dir_or_checkpoint, cache_dir, out_dir, seed: int = 0, reference: str | None = None,
              n_permutations: int = 200, device: str = "cpu") -> dict:
    """Per-sequence cohort shift of a trained model's features on every patient of a cache.

    Args:
        run_dir_or_checkpoint: run folder of ``dlmvi train`` (uses ``final/``) or a checkpoint.
        cache_dir: patch cache holding all cohorts (prepared like the training cache).
        out_dir: output folder (see the module docstring).
        seed: seed of t-SNE, of the separability folds and of the MMD permutations.
        reference: reference cohort (default: the checkpoint's development cohort, else the
            first cohort).
        n_permutations: MMD permutations.

    Returns:
        the shift.json document.
    """
    from dlmvi.model.checkpoint import load_checkpoint
    from dlmvi.model.inference import predict_cache

    ck = load_checkpoint(run_dir_or_checkpoint)
    pred = predict_cache(ck, cache_dir, device=device)
    result = analyse_shift(ck, pred, cache_dir, seed=seed, reference=reference, n_permutations=n_permutations)
    result.write(out_dir)
    return result.doc


__all__ = ["separability_auc", "mmd_test", "tsne_embedding", "shift_scores", "tsne_table", "plot_tsne",
           "ShiftResult", "analyse_shift", "run_shift"]
