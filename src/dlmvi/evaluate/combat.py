"""ComBat harmonisation of the network's per-sequence features (Johnson et al. 2007).

Image normalisation (z-score, Nyul) makes intensities comparable but leaves scanner effects
in what the network extracts from them. ComBat removes a per-feature location and scale
effect of each batch (site or scanner), shrunk towards the batch's average effect across
features by parametric empirical Bayes. Here a **reference batch** (Zhang et al. 2018) is
used: the development cohort's features stay exactly as the network's fully connected layer
saw them in training, and every other batch is mapped onto the development distribution, so
the unchanged classifier (``model.classify``) can score the mapped features.

What each step uses:

* the reference (grand mean and pooled variance of every feature) comes from the
  **training patients** of the model in question only (a fold's training patients for that
  fold, the final model's training patients for the final model) - never validation
  patients and never labels of another site;
* a new site's location/scale effects are estimated from **that site's unlabelled images**
  (their features); no outcome of the new site is used. No biological covariate is protected
  (MVI is unknown at a new site), as in reference-batch ComBat without ``mod``.

Each sequence is harmonised separately (scanner effects differ per sequence). Features that
are constant within a batch (e.g. an inactive ReLU channel) are left unchanged, as R's
``sva::ComBat`` does.

Why an own implementation: ``neuroHarmonize`` 2.5.2 declares ``numpy < 2`` (it cannot be
installed beside the project's numpy 2.4), its backend ``neuroCombat`` 0.2.12 fails with a
reference batch on numpy >= 1.24 (``np.int``), and ``inmoose`` is GPL-3.0 and pulls anndata,
h5py, zarr and seaborn. The algorithm is short and is tested against R's ``sva::ComBat``
(``ref.batch``) to 1e-8.
"""

from __future__ import annotations

import numpy as np

from dlmvi.errors import StatisticsError


def _aprior(d: np.ndarray) -> float:
    m, s2 = d.mean(), d.var(ddof=1)
    return float((2 * s2 + m**2) / s2)


def _bprior(d: np.ndarray) -> float:
    m, s2 = d.mean(), d.var(ddof=1)
    return float((m * s2 + m**3) / s2)


def _it_sol(sdat: np.ndarray, g_hat, d_hat, g_bar, t2, a, b, conv: float = 1e-4):
    """sva's it.sol: iterate the posterior means of gamma and delta (features x samples)."""
    n = sdat.shape[1]
    g_old, d_old = g_hat.copy(), d_hat.copy()
    for _ in range(10_000):
        g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
        sum2 = ((sdat - g_new[:, None]) ** 2).sum(axis=1)
        d_new = (0.5 * sum2 + b) / (n / 2 + a - 1)
        with np.errstate(divide="ignore", invalid="ignore"):  # as sva: no abs() on the denominators
            change = max(np.nanmax(np.abs(g_new - g_old) / g_old), np.nanmax(np.abs(d_new - d_old) / d_old))
        g_old, d_old = g_new, d_new
        if change <= conv:
            break
    return g_old, d_old


class ComBat:
    """Reference-batch ComBat on (n, d) features, scikit-learn style.

    Args:
        eb: empirical Bayes shrinkage of the batch effects (True, as ComBat's default);
            False uses each batch's own location and scale.
        mean_only: adjust the location only (no scaling).

    Attributes (after :meth:`fit`):
        reference_: the reference batch.
        grand_mean_: (d,) reference mean of each feature.
        var_pooled_: (d,) reference variance of each feature (divisor n, as sva).
        gamma_star_, delta_star_: {batch: (d,)} location and scale effects (0 and 1 for the
            reference).
        adjusted_: (d,) boolean, features that are adjusted (not constant within a batch).
        n_: {batch: patients}.
    """

    def __init__(self, eb: bool = True, mean_only: bool = False):
        self.eb = eb
        self.mean_only = mean_only

    def fit(self, x, batch, reference) -> "ComBat":
        """Estimate the reference and every other batch's effects.

        Args:
            x: (n, d) features.
            batch: (n,) batch label of each row.
            reference: the batch left unchanged (the development cohort).
        """
        x = np.asarray(x, dtype=np.float64)
        b = np.asarray(batch).astype(str)
        reference = str(reference)
        if x.ndim != 2 or x.shape[0] != b.size:
            raise StatisticsError(f"ComBat needs (n, d) features with one batch per row; got {x.shape} and {b.size}")
        levels = sorted(set(b.tolist()))
        if reference not in levels:
            raise StatisticsError(f"reference batch {reference!r} is not among the batches {levels}")
        counts = {lv: int((b == lv).sum()) for lv in levels}
        few = [lv for lv, c in counts.items() if c < 2]
        if few:
            raise StatisticsError(f"ComBat needs at least 2 patients per batch; batch(es) {few} have fewer "
                                  f"({counts})")
        ref = x[b == reference]
        self.grand_mean_ = ref.mean(axis=0)
        self.var_pooled_ = ((ref - self.grand_mean_) ** 2).mean(axis=0)
        const = np.zeros(x.shape[1], dtype=bool)
        for lv in levels:
            const |= x[b == lv].var(axis=0, ddof=1) == 0
        self.adjusted_ = ~const
        keep = self.adjusted_
        s = (x[:, keep] - self.grand_mean_[keep]) / np.sqrt(self.var_pooled_[keep])
        self.reference_, self.n_ = reference, counts
        self.gamma_star_, self.delta_star_ = {}, {}
        d = x.shape[1]
        for lv in levels:
            g_full, d_full = np.zeros(d), np.ones(d)
            if lv != reference and keep.any():
                sb = s[b == lv]
                g_hat = sb.mean(axis=0)
                d_hat = sb.var(axis=0, ddof=1)
                if self.mean_only:
                    d_hat = np.ones_like(d_hat)
                if self.eb and keep.sum() > 1:
                    g_bar, t2 = g_hat.mean(), g_hat.var(ddof=1)
                    if self.mean_only:  # sva: postmean(gamma.hat, gamma.bar, 1, 1, t2)
                        g_star = (t2 * g_hat + g_bar) / (t2 + 1)
                        d_star = np.ones_like(d_hat)
                    else:
                        g_star, d_star = _it_sol(sb.T, g_hat, d_hat, g_bar, t2, _aprior(d_hat), _bprior(d_hat))
                else:
                    g_star, d_star = g_hat, d_hat
                g_full[keep], d_full[keep] = g_star, d_star
            self.gamma_star_[lv], self.delta_star_[lv] = g_full, d_full
        return self

    def transform(self, x, batch) -> np.ndarray:
        """Map rows of fitted batches onto the reference (reference rows are returned unchanged)."""
        x = np.asarray(x, dtype=np.float64)
        b = np.asarray(batch).astype(str)
        unknown = sorted(set(b.tolist()) - set(self.gamma_star_))
        if unknown:
            raise StatisticsError(f"batch(es) {unknown} were not seen by ComBat.fit; fit it with their "
                                  "(unlabelled) features first")
        out = x.copy()
        sd = np.sqrt(self.var_pooled_)
        keep = self.adjusted_
        for lv in set(b.tolist()) - {self.reference_}:
            m = b == lv
            s = (x[m][:, keep] - self.grand_mean_[keep]) / sd[keep]
            s = (s - self.gamma_star_[lv][keep]) / np.sqrt(self.delta_star_[lv][keep])
            out[np.ix_(m, keep)] = s * sd[keep] + self.grand_mean_[keep]
        return out

    def fit_transform(self, x, batch, reference) -> np.ndarray:
        return self.fit(x, batch, reference).transform(x, batch)


def harmonize_features(features, batch, reference, fit_rows=None, eb: bool = True) -> tuple[np.ndarray, dict]:
    """ComBat per sequence on (n, k, d) features.

    Args:
        features: (n, k, d) per-sequence features (:class:`dlmvi.model.inference.Prediction`).
        batch: (n,) batch of each patient (cohort or scanner).
        reference: the batch left unchanged (the development cohort).
        fit_rows: boolean (n,) rows used to fit: the reference's rows must be the model's
            training patients (pass False for its validation patients); other batches' rows
            are their unlabelled patients. Default: every row.
        eb: empirical Bayes shrinkage.

    Returns:
        (harmonised (n, k, d) features, summary {sequence index: {"adjusted": features
        adjusted, "mean_abs_gamma": {batch: ...}, "mean_delta": {batch: ...}}}).
        Rows not used in the fit are mapped with their batch's fitted effects.
    """
    f = np.asarray(features, dtype=np.float64)
    b = np.asarray(batch).astype(str)
    if f.ndim != 3 or f.shape[0] != b.size:
        raise StatisticsError(f"features must be (n, k, d) with one batch per patient; got {f.shape}, {b.size}")
    rows = np.ones(b.size, dtype=bool) if fit_rows is None else np.asarray(fit_rows, dtype=bool)
    out = f.copy()
    summary = {}
    for j in range(f.shape[1]):
        cb = ComBat(eb=eb).fit(f[rows, j], b[rows], reference)
        out[:, j] = cb.transform(f[:, j], b)
        summary[j] = {"adjusted": int(cb.adjusted_.sum()), "n": cb.n_,
                      "mean_abs_gamma": {k: float(np.abs(v).mean()) for k, v in cb.gamma_star_.items()},
                      "mean_delta": {k: float(v.mean()) for k, v in cb.delta_star_.items()}}
    return out.astype(np.float32), summary


def classify_features(model, features) -> np.ndarray:
    """Class probabilities of (n, k, d) features through the network's fully connected layer."""
    import torch

    model = getattr(model, "module", model)
    model.eval()
    with torch.no_grad():
        logits = model.classify(torch.as_tensor(np.asarray(features, dtype=np.float32)))
        return torch.softmax(logits, dim=1).double().numpy()


__all__ = ["ComBat", "harmonize_features", "classify_features"]
