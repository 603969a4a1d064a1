"""Taking the model to another hospital: what each remedy does to the external cohort.

``dlmvi study --transport`` (stage ``transport``, after ``shift``) puts side by side, for each
external cohort, the AUC (DeLong 95 % CI), calibration intercept and slope and Brier score of
DL-MVI:

``study model``
    the study's final model as trained (its ``--normalization``; ``global`` = no image
    harmonisation).
``image harmonisation: <method>``
    the same training (same seed and settings, final model only) on the cache harmonised with
    ``global`` (one scale per sequence: no harmonisation) or ``nyul`` (histogram
    standardisation fitted on the development cohort), whichever the study did not use.
``ComBat on features``
    the study's final model; the external cohort's per-sequence features mapped onto the
    development reference by reference-batch ComBat (:mod:`dlmvi.evaluate.combat`), then
    scored by the unchanged fully connected layer. The reference comes from the final model's
    training patients; the external cohort's effects from its **unlabelled** images (features
    only; no external label is used). Cohort separability and MMD before/after per sequence.
    (Inside the development cohort's cross-validation the development cohort is the
    reference batch and stays unchanged, so ComBat leaves the out-of-fold predictions as they
    are; :func:`dlmvi.evaluate.combat.harmonize_features` takes ``fit_rows`` = a fold's
    training patients when a fold model's external features are mapped.)
``recalibration (<method>) on half``
    the external cohort split into two halves (stratified by MVI, seeded); the update
    (:mod:`dlmvi.stats.recalibration`) fitted on one half's **labelled** patients is applied
    to the other half, and the halves swapped, so every patient is scored by an update that
    never saw it; figures over the pooled halves (and per half).

Outputs (``RUN/transport/``): ``transport.json``, ``transport.csv`` (one row per remedy and
cohort), ``combat_shift.csv`` (separability/MMD per sequence before and after ComBat) and the
variants' caches and runs (``cache_<method>/``, ``train_<method>/``).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd

from dlmvi.errors import StatisticsError
from dlmvi.io.atomic import write_csv, write_json
from dlmvi.layout import TRANSPORT_JSON, RunLayout
VARIANTS = ("global", "nyul")
ROW_COLUMNS = ["cohort", "remedy", "uses_external", "n", "n_events", "auc", "auc_ci_low", "auc_ci_high",
               "calibration_intercept", "calibration_slope", "brier"]


def remedy_figures(y, prob) -> dict:
    """One row's figures, as every stage measures them (:class:`ProbabilityMetrics`)."""
    from dlmvi.evaluate.performance import ProbabilityMetrics

    return ProbabilityMetrics.from_predictions(np.asarray(y, dtype=float), np.asarray(prob, dtype=float)).summary()


def halves(y, seed: int = 0) -> np.ndarray:
    """0/1 half of each patient: stratified by outcome, seeded (numpy ``default_rng([seed, 17])``)."""
    y = np.asarray(y, dtype=int)
    rng = np.random.default_rng([int(seed), 17])
    half = np.zeros(y.size, dtype=int)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        idx = idx[rng.permutation(idx.size)]
        half[idx[1::2]] = 1  # alternate: the halves differ by at most one patient per class
    return half


def swapped_halves_recalibration(y, prob, method: str = "logistic", seed: int = 0) -> dict:
    """Recalibration fitted on one half of a cohort and evaluated on the other, both ways.

    Returns:
        ``{"probabilities": cross-fitted probabilities (n,), "half": (n,) 0/1,
        "updates": [update fitted on half 0, on half 1], "per_half": [figures of half 0
        scored by the update of half 1, and vice versa]}``.
    """
    from dlmvi.stats.recalibration import Recalibration

    y = np.asarray(y, dtype=int)
    p = np.asarray(prob, dtype=float)
    half = halves(y, seed)
    out = np.empty(y.size)
    updates, per_half = [], []
    for h in (0, 1):
        fit_on, test = half == h, half != h
        r = Recalibration(method).fit(y[fit_on], p[fit_on])
        out[test] = r.predict_proba(p[test])
        updates.append(r.to_dict())
    for h in (0, 1):
        per_half.append(remedy_figures(y[half == h], out[half == h]))
    return {"probabilities": out, "half": half, "updates": updates, "per_half": per_half}


def _row(cohort, remedy, uses, y, prob) -> dict:
    return {"cohort": cohort, "remedy": remedy, "uses_external": uses, **remedy_figures(y, prob)}


def _harmonisation_rows(cfg, lay, out, dev, ext_cohorts, log) -> list[dict]:
    """The final model trained once more on each other image harmonisation's cache."""
    import dataclasses

    from dlmvi.model.inference import predict_cache
    from dlmvi.preprocess.cache import CACHE_JSON
    from dlmvi.preprocess.harmonize import harmonize_cache
    from dlmvi.preprocess.prepare import prepare_cohort
    from dlmvi.train.run import run_training

    rows = []
    variants = [v for v in VARIANTS if v != cfg.normalization]
    raw = lay.cache_raw
    if variants and not (raw / CACHE_JSON).is_file():
        raw = out / "cache_raw"
        log(f"[transport] preparing raw patches into {raw}")
        prepare_cohort(cfg.cohort, raw, replace(cfg.prepare, normalization="none"), progress=False)
    for method in variants:
        cache_dir = out / f"cache_{method}"
        if not (cache_dir / CACHE_JSON).is_file():
            harmonize_cache(raw, cache_dir, method=method, develop_cohort=dev, progress=False)
        # the final model only, on a cache harmonised on the development cohort (its training patients)
        tcfg = dataclasses.replace(cfg.train, folds=0, progress=False, harmonization=None)
        log(f"[transport] training the final model on the {method} cache")
        run_training(cache_dir, out / f"train_{method}", tcfg)
        vp = predict_cache(out / f"train_{method}", cache_dir, tta=cfg.tta).frame
        vp = vp[vp["label"].notna()]
        uses = ("unlabelled external images (intensity landmarks fitted on the development cohort, applied to "
                "each image)" if method == "nyul" else "nothing (one scale per sequence from the development cohort)")
        for c in ext_cohorts:
            g = vp[vp["cohort"] == c]
            rows.append(_row(c, f"image harmonisation: {method}", uses, g["label"].astype(int), g["dl_prob"]))
    return rows


def _combat(cfg, lay, dev, ext_cohorts, labelled):
    """ComBat on the final model's features: the rows, the separability before/after and the
    ComBat document's parts (sequences, summary, reference patients)."""
    from dlmvi.evaluate.combat import classify_features, harmonize_features
    from dlmvi.evaluate.shift import shift_scores
    from dlmvi.model.checkpoint import load_checkpoint
    from dlmvi.model.inference import features_path, load_features

    ck = load_checkpoint(lay.train.root)
    feats = load_features(features_path(lay.final_predictions))
    ids = [str(i) for i in feats["patient_id"]]
    cohorts = np.asarray(feats["cohort"]).astype(str)
    train_ids = set(str(i) for i in (ck.meta.get("split") or {}).get("train", []))
    fit_rows = np.array([(c != dev) or (i in train_ids) for i, c in zip(ids, cohorts)])
    harmonised, summary = harmonize_features(feats["features"], cohorts, dev, fit_rows=fit_rows)
    probs = classify_features(ck.model, harmonised)[:, 1:].sum(axis=1)
    frame = pd.DataFrame({"patient_id": ids, "cohort": cohorts, "p_combat": probs})
    frame = frame.merge(labelled[["patient_id", "label"]], on="patient_id", how="inner")
    rows = []
    for c in ext_cohorts:
        g = frame[frame["cohort"] == c]
        rows.append(_row(c, "ComBat on features", "unlabelled external images (their features)",
                         g["label"].astype(int), g["p_combat"]))
    seqs = [str(s) for s in feats["sequences"]]
    before = shift_scores(feats["features"], cohorts, seqs, reference=dev, seed=cfg.seed).assign(features="before ComBat")
    after = shift_scores(harmonised, cohorts, seqs, reference=dev, seed=cfg.seed).assign(features="after ComBat")
    shift = pd.concat([before, after], ignore_index=True)
    combat = {"sequences": seqs, "summary": {seqs[j]: v for j, v in summary.items()},
              "reference": f"training patients of the final model ({int(fit_rows[cohorts == dev].sum())} of "
                           f"{int((cohorts == dev).sum())} development patients)",
              "external": "every patient of the external cohort, features only (no label)"}
    return rows, shift, combat


def _recalibration(cfg, ext_cohorts, labelled, log):
    """Recalibration on half of each external cohort, evaluated on the other half (then swapped)."""
    rows, recal = [], {}
    for c in ext_cohorts:
        g = labelled[labelled["cohort"] == c]
        y = g["label"].astype(int).to_numpy()
        for method in ("intercept", "logistic"):
            try:
                r = swapped_halves_recalibration(y, g["dl_prob"].to_numpy(), method=method, seed=cfg.seed)
            except StatisticsError as exc:  # a half separated perfectly: no finite update
                recal[f"{c}/{method}"] = {"error": str(exc)}
                log(f"[transport] cohort {c}: {method} recalibration on half not estimable ({exc})")
                continue
            rows.append(_row(c, f"recalibration ({method}) on half", "labelled external patients (the other half)",
                             y, r["probabilities"]))
            recal[f"{c}/{method}"] = {"updates": r["updates"], "per_half": r["per_half"],
                                      "n_half": [int((r["half"] == h).sum()) for h in (0, 1)]}
    return rows, recal


#: What each remedy takes from the external cohort (transport.json).
USES_EXTERNAL = {
    "study model": "nothing from the external cohort",
    "image harmonisation: global": "nothing from the external cohort",
    "image harmonisation: nyul": "each external image's own intensity percentiles (unlabelled)",
    "ComBat on features": "all external patients' features (unlabelled), pooled to estimate the site effect",
    "recalibration": "labels of half of the external cohort; evaluated on the other half, then swapped"}


def run_transport(run_dir, log=print) -> dict:
    """Compute the comparison for a finished study run (see the module docstring)."""
    from dlmvi.errors import ConfigError
    from dlmvi.preprocess.cache import CACHE_JSON
    from dlmvi.workflow.config import StudyConfig

    lay = RunLayout(run_dir)
    out = lay.transport
    cfg = StudyConfig.from_dict(json.loads(lay.study_json.read_text())["config"])
    dev = cfg.develop_cohort
    if dev is None:
        raise ConfigError("the transport comparison needs a development cohort and an external one; run the study "
                          "with --develop-cohort (e.g. 2015)")
    pred = pd.read_csv(lay.predictions, dtype={"patient_id": str, "cohort": str})
    ext_cohorts = sorted(c for c in pred["cohort"].unique() if c != dev)
    labelled = pred[pred["label"].notna()]
    rows = []
    for c in ext_cohorts:
        g = labelled[labelled["cohort"] == c]
        rows.append(_row(c, f"study model ({cfg.normalization})", "nothing", g["label"].astype(int), g["dl_prob"]))
    rows += _harmonisation_rows(cfg, lay, out, dev, ext_cohorts, log)
    combat_rows, shift, combat = _combat(cfg, lay, dev, ext_cohorts, labelled)
    recal_rows, recal = _recalibration(cfg, ext_cohorts, labelled, log)
    table = pd.DataFrame(rows + combat_rows + recal_rows, columns=ROW_COLUMNS)
    write_csv(out / "transport.csv", table)
    write_csv(out / "combat_shift.csv", shift)
    cache_meta = json.loads((lay.cache / CACHE_JSON).read_text())
    doc = {
        "develop_cohort": dev, "external_cohorts": ext_cohorts, "seed": cfg.seed,
        "study_normalization": cfg.normalization, "rows": table.to_dict("records"),
        "combat": combat, "recalibration": recal, "what_uses_external_data": dict(USES_EXTERNAL),
        "synthetic": bool(cache_meta.get("synthetic", False)),
    }
    write_json(out / TRANSPORT_JSON, doc)
    return doc

__all__ = ["run_transport", "swapped_halves_recalibration", "halves", "remedy_figures", "TRANSPORT_JSON"]
