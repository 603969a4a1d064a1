"""Is DL-MVI better than radiomics and the clinical model? Six models, the same patients and folds.

Models (:data:`MODELS`): the clinical model (the nomogram's clinical predictors without
DL-MVI), the rad-score, DL-MVI, clinical + DL-MVI (the study's nomogram), clinical +
rad-score, clinical + rad-score + DL-MVI. The rad-score and DL-MVI are their own out-of-fold
probabilities on the development cohort and the final models' on the others; each model
with clinical predictors is a logistic regression fitted inside the same folds (on the fold's
training patients, from their out-of-fold DL-MVI and rad-score) for the development cohort,
and on every development patient for the other cohorts. ``fitted`` beside every number
says which.

Per model and cohort: AUC with DeLong CI, calibration intercept and slope, Brier
(:class:`~dlmvi.evaluate.performance.ProbabilityMetrics`), decision curve. Per pair:
DeLong's test for non-nested models; the likelihood-ratio test for nested ones (fitted on
all development patients: a test of added value, not a performance figure); NRI at the risk
cut-offs (categorical) and continuous, and IDI, with CIs, as R ``Hmisc::improveProb``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from dlmvi.errors import StatisticsError

__all__ = ["comparison_line", "MODELS", "PAIRS", "improve_prob", "categorical_nri", "lr_test", "analyse_comparison",
           "ComparisonResult", "RISK_CUTOFFS"]

CLINICAL, RAD, DL = "clinical", "rad-score", "DL-MVI"
#: name -> inputs (``clinical`` stands for the clinical predictors; ``rad_score``, ``dl_mvi``).
MODELS: dict[str, tuple[str, ...]] = {
    CLINICAL: ("clinical",),
    RAD: ("rad_prob",),
    DL: ("dl_prob",),
    "clinical + DL-MVI": ("clinical", "dl_mvi"),
    "clinical + rad-score": ("clinical", "rad_score"),
    "clinical + rad-score + DL-MVI": ("clinical", "rad_score", "dl_mvi"),
}
#: (model a, model b, nested: a's inputs are a subset of b's)
PAIRS: tuple[tuple[str, str, bool], ...] = (
    (RAD, DL, False), (CLINICAL, DL, False), (CLINICAL, RAD, False),
    ("clinical + rad-score", "clinical + DL-MVI", False),
    (CLINICAL, "clinical + DL-MVI", True), (CLINICAL, "clinical + rad-score", True),
    ("clinical + DL-MVI", "clinical + rad-score + DL-MVI", True),
    ("clinical + rad-score", "clinical + rad-score + DL-MVI", True),
)
#: Risk categories of the categorical NRI (probability of MVI): < 0.3, 0.3-0.7, >= 0.7.
RISK_CUTOFFS = (0.3, 0.7)


def improve_prob(x1, x2, y, level: float = 0.95) -> dict:
    """NRI (category-free) and IDI of ``x2`` over ``x1``, as R ``Hmisc::improveProb(x1, x2, y)``.

    Returns:
        ``nri``, ``nri_se``, ``nri_ci``, ``nri_p``, ``nri_events``, ``nri_nonevents`` (with
        ``_se``), ``idi``, ``idi_se``, ``idi_ci``, ``idi_p``, ``n``. The CIs are
        ``estimate +- z * se`` and the p-values two-sided normal, as Hmisc prints them.
    """
    x1, x2, y = (np.asarray(v, dtype=float) for v in (x1, x2, y))
    keep = np.isfinite(x1) & np.isfinite(x2) & np.isfinite(y)
    x1, x2, y = x1[keep], x2[keep], y[keep]
    ev, ne = y == 1, y == 0
    n1, n0 = int(ev.sum()), int(ne.sum())
    if n1 < 2 or n0 < 2:
        raise StatisticsError(f"NRI/IDI need at least 2 patients with and 2 without MVI (got {n1} and {n0})")
    d = x2 - x1
    up_ev, down_ev = float((d[ev] > 0).sum()), float((d[ev] < 0).sum())
    up_ne, down_ne = float((d[ne] > 0).sum()), float((d[ne] < 0).sum())
    nri_ev = (up_ev - down_ev) / n1
    nri_ne = (down_ne - up_ne) / n0
    v_ev = (up_ev + down_ev) / n1**2 - (up_ev - down_ev) ** 2 / n1**3
    v_ne = (down_ne + up_ne) / n0**2 - (down_ne - up_ne) ** 2 / n0**3
    nri, se_nri = nri_ev + nri_ne, float(np.sqrt(v_ev + v_ne))
    idi = float(d[ev].mean() - d[ne].mean())
    se_idi = float(np.sqrt(np.var(d[ev], ddof=1) / n1 + np.var(d[ne], ddof=1) / n0))
    z = stats.norm.ppf(1 - (1 - level) / 2)

    def p(est, se):
        return float(2 * stats.norm.sf(abs(est / se))) if se > 0 else float("nan")

    return {"n": int(y.size), "nri": float(nri), "nri_se": se_nri, "nri_ci": [nri - z * se_nri, nri + z * se_nri],
            "nri_p": p(nri, se_nri), "nri_events": float(nri_ev), "nri_events_se": float(np.sqrt(v_ev)),
            "nri_nonevents": float(nri_ne), "nri_nonevents_se": float(np.sqrt(v_ne)),
            "idi": idi, "idi_se": se_idi, "idi_ci": [idi - z * se_idi, idi + z * se_idi], "idi_p": p(idi, se_idi)}


def categorical_nri(x1, x2, y, cutoffs=RISK_CUTOFFS, level: float = 0.95) -> dict:
    """NRI over risk categories (``cutoffs``): :func:`improve_prob` of the category numbers,
    i.e. R ``Hmisc::improveProb(cut1, cut2, y)`` with ``cut = findInterval(p, cutoffs)``."""
    c1 = np.digitize(np.asarray(x1, dtype=float), cutoffs).astype(float)
    c2 = np.digitize(np.asarray(x2, dtype=float), cutoffs).astype(float)
    c1[~np.isfinite(np.asarray(x1, dtype=float))] = np.nan
    c2[~np.isfinite(np.asarray(x2, dtype=float))] = np.nan
    r = improve_prob(c1, c2, y, level)
    return {k: v for k, v in r.items() if k.startswith("nri") or k == "n"}


def lr_test(llf_small: float, llf_big: float, df: int) -> dict:
    """Likelihood-ratio test of a nested logistic model: ``2 (llf_big - llf_small) ~ chi2(df)``."""
    lr = 2 * (llf_big - llf_small)
    return {"lr": float(lr), "df": int(df), "p": float(stats.chi2.sf(max(lr, 0.0), df))}


def _inputs(model: str, clinical: list[str]) -> list[str]:
    out: list[str] = []
    for v in MODELS[model]:
        out.extend(clinical if v == "clinical" else [v])
    return out


class _Prevalence:
    """The model of a fold whose every input is constant there: the training patients' MVI rate."""

    predictors: tuple[str, ...] = ()

    def __init__(self, rate: float, n: int):
        self.rate = rate
        self.llf = float(n * (rate * np.log(rate) + (1 - rate) * np.log(1 - rate))) if 0 < rate < 1 else 0.0

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return np.full(len(x), self.rate)


def _fit(inputs: list[str], fit_on: pd.DataFrame, cutoffs, method: str, notes: list[str] | None = None,
         where: str = ""):
    """The logistic model of ``inputs`` fitted on ``fit_on``; an input that is constant there
    (a fold where DL-MVI calls every patient positive, a rad-score that selected nothing)
    carries no information and is left out of that fit, with a note."""
    from dlmvi.stats.nomogram import NomogramModel

    rows = fit_on.dropna(subset=[*inputs, "mvi"])
    x = NomogramModel(inputs, cutoffs=cutoffs).transform(rows)
    used = [c for c in inputs if x[c].nunique() > 1]
    if notes is not None and len(used) < len(inputs):
        notes.append(f"{where}: {', '.join(c for c in inputs if c not in used)} constant on the "
                     f"{len(rows)} training patients, left out of that fit")
    if not used:
        return _Prevalence(float(rows["mvi"].mean()), len(rows))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # events per variable in small folds: stated in the README
        return NomogramModel(used, cutoffs=cutoffs, method=method).fit(rows, outcome="mvi")


def model_predictions(data: pd.DataFrame, clinical: list[str], cutoffs=None, method: str = "ml"
                      ) -> tuple[pd.DataFrame, list[str]]:
    """Every model's probability for every patient, and where it came from.

    ``data``: ``patient_id, cohort, mvi, fold`` (development patients: their test fold;
    others -1), ``dl_prob``, ``dl_mvi``, ``rad_score``, ``rad_prob`` and the clinical
    predictors. Returns (the per-patient table, notes on models that could not be fitted).
    """
    out = data[["patient_id", "cohort", "mvi", "fold"]].copy()
    dev = data["fold"] >= 0
    out["source"] = np.where(dev, "development: out-of-fold (fitted on the fold's training patients)",
                             "external: fitted on all development patients")
    notes: list[str] = []
    for name in MODELS:
        inputs = _inputs(name, clinical)
        if len(inputs) == 1 and inputs[0] in ("dl_prob", "rad_prob"):
            out[name] = data[inputs[0]].to_numpy(float)
            continue
        prob = np.full(len(data), np.nan)
        fit_rows = dev & data["mvi"].notna()
        for k in sorted(data.loc[dev, "fold"].unique()):
            test = (data["fold"] == k).to_numpy()
            try:
                m = _fit(inputs, data[fit_rows & (data["fold"] != k)], cutoffs, method, notes,
                         f"{name}, fold {int(k) + 1}")
                prob[test] = m.predict_proba(data[test])
            except StatisticsError as exc:
                notes.append(f"{name}, fold {int(k) + 1}: not fitted ({exc})")
        try:
            m = _fit(inputs, data[fit_rows], cutoffs, method, notes, f"{name}, all development patients")
            prob[~dev.to_numpy()] = m.predict_proba(data[~dev])
        except StatisticsError as exc:
            notes.append(f"{name}, all development patients: not fitted ({exc})")
        out[name] = prob
    return out, notes


def _metrics_rows(frame: pd.DataFrame, cohort: str, fitted: str, level: float) -> list[dict]:
    from dlmvi.evaluate.performance import ProbabilityMetrics

    rows = []
    for name in MODELS:
        m = ProbabilityMetrics.from_predictions(frame["mvi"], frame[name], level=level)
        rows.append({"cohort": cohort, "model": name, "fitted": fitted if len(MODELS[name]) > 1 or name == CLINICAL
                     else _single_source(name, fitted), **m.summary(),
                     "calibration_slope_ci_low": m.calibration_slope_ci[0],
                     "calibration_slope_ci_high": m.calibration_slope_ci[1]})
    return rows


def _single_source(name: str, fitted: str) -> str:
    what = "the DL-MVI network" if name == DL else "the rad-score"
    if fitted.startswith("development"):
        return f"development: out-of-fold ({what} of the fold that never saw the patient)"
    return f"external: {what} trained on all development patients"


def _pair_rows(frame: pd.DataFrame, cohort: str, risk_cutoffs, level: float) -> list[dict]:
    from dlmvi.evaluate.roc import delong_test

    rows = []
    y = frame["mvi"].to_numpy(float)
    for a, b, nested in PAIRS:
        row = {"cohort": cohort, "model_a": a, "model_b": b, "nested": nested, "fitted": frame["source"].iloc[0]}
        if not nested:
            t = delong_test(y, frame[b], frame[a], level)
            row.update(delong_auc_diff=t["diff"], delong_ci_low=t["ci_low"], delong_ci_high=t["ci_high"],
                       delong_p=t["p"])
        cont = improve_prob(frame[a], frame[b], y, level)
        cat = categorical_nri(frame[a], frame[b], y, risk_cutoffs, level)
        row.update(nri_continuous=cont["nri"], nri_continuous_ci_low=cont["nri_ci"][0],
                   nri_continuous_ci_high=cont["nri_ci"][1], nri_continuous_p=cont["nri_p"],
                   nri_categorical=cat["nri"], nri_categorical_ci_low=cat["nri_ci"][0],
                   nri_categorical_ci_high=cat["nri_ci"][1], nri_categorical_p=cat["nri_p"],
                   idi=cont["idi"], idi_ci_low=cont["idi_ci"][0], idi_ci_high=cont["idi_ci"][1], idi_p=cont["idi_p"])
        rows.append(row)
    return rows


def _lr_rows(data: pd.DataFrame, clinical: list[str], cutoffs, method: str) -> list[dict]:
    """Nested pairs' likelihood-ratio tests on every development patient with all inputs."""
    dev = data[(data["fold"] >= 0) & data["mvi"].notna()]
    cols = sorted({c for m in MODELS for c in _inputs(m, clinical) if c not in ("dl_prob", "rad_prob")})
    dev = dev.dropna(subset=cols)
    rows = []
    for a, b, nested in PAIRS:
        if not nested:
            continue
        try:
            fa, fb = (_fit(_inputs(m, clinical), dev, cutoffs, method) for m in (a, b))
        except StatisticsError as exc:
            rows.append({"model_a": a, "model_b": b, "lr": np.nan, "df": np.nan, "p": np.nan, "note": str(exc)})
            continue
        llf = [m.result_.llf if hasattr(m, "result_") else m.llf for m in (fa, fb)]
        t = lr_test(llf[0], llf[1], len(fb.predictors) - len(fa.predictors))
        rows.append({"model_a": a, "model_b": b, **t, "n": len(dev),
                     "fitted": "all development patients (out-of-fold DL-MVI and rad-score as inputs)", "note": ""})
    return rows


@dataclass
class ComparisonResult:
    """The comparison (numbers only); :meth:`write` makes the files and figures."""

    predictions: pd.DataFrame     # one row per patient, one column per model, its source
    table: pd.DataFrame           # per model and cohort
    pairs: pd.DataFrame           # per pair and cohort
    lr_tests: pd.DataFrame        # nested pairs, development fit
    decision: pd.DataFrame        # model, cohort, threshold, net_benefit, treat_all
    meta: dict = field(default_factory=dict)

    def write(self, out) -> dict[str, Path]:
        from dlmvi.io.atomic import make_dirs, write_csv, write_json

        out = make_dirs(out)
        files = {"predictions": out / "comparison_predictions.csv", "table": out / "comparison.csv",
                 "pairs": out / "comparison_pairs.csv", "lr": out / "comparison_lr_tests.csv",
                 "decision": out / "comparison_decision_curves.csv"}
        for key, frame in (("predictions", self.predictions), ("table", self.table), ("pairs", self.pairs),
                           ("lr", self.lr_tests), ("decision", self.decision)):
            write_csv(files[key], frame.assign(synthetic=True) if self.meta.get("synthetic") else frame)
        for cohort in self.table["cohort"].unique():
            files[f"figure_{cohort}"] = self.figure(cohort, out / f"comparison_{_safe(cohort)}.png")
        files["json"] = write_json(out / "comparison.json", {
            **self.meta, "table": self.table.to_dict("records"), "pairs": self.pairs.to_dict("records"),
            "lr_tests": self.lr_tests.to_dict("records")})
        return files

    def figure(self, cohort: str, path: Path) -> Path:
        """ROC curves and decision curves of the six models in one cohort (one figure)."""
        from dlmvi.evaluate.display import subplots
        from dlmvi.evaluate.roc import RocDisplay
        from dlmvi.io.atomic import save_figure
        from dlmvi.stats.decision import DecisionCurveDisplay

        frame = self.predictions[self.predictions["cohort_group"] == cohort]
        frame = frame.dropna(subset=["mvi", *MODELS])
        fig, (ax1, ax2) = subplots(1, 2, figsize=(11, 5))
        y = frame["mvi"].to_numpy(float)
        label = "SYNTHETIC - " if self.meta.get("synthetic") else ""
        RocDisplay.from_predictions(y, {m: frame[m].to_numpy(float) for m in MODELS},
                                    title=f"{label}{cohort} (n = {len(frame)})").plot(ax=ax1)
        DecisionCurveDisplay.from_predictions(y, {m: frame[m].to_numpy(float) for m in MODELS},
                                              title=f"{label}decision curves, {cohort}").plot(ax=ax2)
        fig.tight_layout()
        return save_figure(fig, path)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name))


def analyse_comparison(data: pd.DataFrame, clinical: list[str], develop_cohort: str | None, *, cutoffs=None,
                       risk_cutoffs=RISK_CUTOFFS, level: float = 0.95, method: str = "ml",
                       synthetic: bool = False) -> ComparisonResult:
    """The six models compared per cohort (see the module docstring).

    Args:
        data: one row per patient (see :func:`model_predictions`).
        clinical: the clinical predictors (the nomogram's, without DL-MVI), e.g. ``["afp"]``.
        develop_cohort: the development cohort (its patients are the out-of-fold ones).
        cutoffs: {column: cut-off} dichotomising clinical predictors (the study's by default).
        risk_cutoffs: risk categories of the categorical NRI.

    Raises:
        StatisticsError: no clinical predictor, or no cohort with every model's predictions.
    """
    from dlmvi.stats.decision import decision_curve

    if not clinical:
        raise StatisticsError("the comparison needs the nomogram's clinical predictors (e.g. afp); the "
                              "configuration has none besides DL-MVI")
    pred, notes = model_predictions(data, clinical, cutoffs, method)
    pred["cohort_group"] = np.where(pred["fold"] >= 0, f"{develop_cohort or 'all'} (development, out-of-fold)",
                                    pred["cohort"].astype(str))
    rows, pairs, curves = [], [], []
    for group, frame in pred.groupby("cohort_group", sort=False):
        frame = frame.dropna(subset=["mvi", *MODELS])
        y = frame["mvi"].to_numpy(float)
        if len(frame) < 4 or len(np.unique(y)) < 2:
            notes.append(f"{group}: {len(frame)} patient(s) with every model's prediction and both outcomes needed; "
                         "left out of the comparison")
            continue
        fitted = frame["source"].iloc[0]
        rows.extend(_metrics_rows(frame, group, fitted, level))
        pairs.extend(_pair_rows(frame, group, risk_cutoffs, level))
        for m in MODELS:
            curves.append(decision_curve(y, frame[m].to_numpy(float)).assign(model=m, cohort=group))
    if not rows:
        raise StatisticsError("no cohort has every model's predictions for patients of both outcomes; "
                              + "; ".join(notes))
    meta = {"models": {m: _inputs(m, clinical) for m in MODELS}, "clinical_predictors": list(clinical),
            "risk_cutoffs": list(risk_cutoffs), "level": level, "develop_cohort": develop_cohort,
            "notes": notes, "synthetic": bool(synthetic),
            "nri_idi": "R Hmisc::improveProb(x1 = model a, x2 = model b, y); categorical NRI over risk "
                       f"categories cut at {list(risk_cutoffs)}",
            "delong": "paired DeLong test (R pROC::roc.test), non-nested pairs only",
            "lr_test": "likelihood-ratio test of nested logistic models fitted on all development patients"}
    return ComparisonResult(pred, pd.DataFrame(rows), pd.DataFrame(pairs),
                            pd.DataFrame(_lr_rows(data, clinical, cutoffs, method)),
                            pd.concat(curves, ignore_index=True), meta)


def comparison_line(summary: dict) -> str:
    """One sentence of ``radiomics_summary.json`` for the model card and the report: per cohort
    the AUCs of DL-MVI, the rad-score, the clinical model and the nomogram, and DeLong's p of
    DL-MVI against the rad-score."""
    def p_text(p):
        return "–" if p is None or p != p else ("< 0.001" if p < 0.001 else f"{p:.3f}")

    rows = summary["comparison"]["table"]
    parts = []
    for cohort in dict.fromkeys(r["cohort"] for r in rows):
        auc = {r["model"]: r for r in rows if r["cohort"] == cohort}
        txt = ", ".join(f"{m} {auc[m]['auc']:.2f}" for m in (DL, RAD, CLINICAL, "clinical + DL-MVI") if m in auc)
        pair = next((q for q in summary["comparison"]["pairs"] if q["cohort"] == cohort and q["model_a"] == RAD
                     and q["model_b"] == DL), None)
        parts.append(f"{cohort}: AUC {txt}" + (f"; DL-MVI vs rad-score DeLong p {p_text(pair.get('delong_p'))}"
                                                if pair else ""))
    return (("SYNTHETIC - " if summary.get("synthetic") else "") + "DL-MVI, rad-score and clinical model on the "
            "same patients and folds: " + " | ".join(parts))
