"""The report's radiomics section: the six-model comparison, reproducibility, sample size and
learning curves of ``dlmvi study --radiomics`` / ``dlmvi compare`` (``RUN/radiomics/``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dlmvi.layout import RunLayout


def _fmt_ci(v, lo, hi, d=3) -> str:
    return f"{v:.{d}f} ({lo:.{d}f} to {hi:.{d}f})" if pd.notna(v) and pd.notna(lo) and pd.notna(hi) else "–"


def _p(p) -> str:
    return "–" if pd.isna(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def radiomics_section(run) -> dict:
    """Tables and figures of the section, or {} when the stage did not run."""
    lay = RunLayout(run)
    if not lay.radiomics_summary.is_file():
        return {}
    doc = json.loads(lay.radiomics_summary.read_text())
    base = lay.radiomics
    comp = doc["comparison"]
    t = pd.DataFrame(comp["table"])
    table = pd.DataFrame({
        "cohort": t["cohort"], "model": t["model"], "n": t["n"],
        "AUC (95% CI, DeLong)": [_fmt_ci(*r) for r in zip(t["auc"], t["auc_ci_low"], t["auc_ci_high"])],
        "calibration intercept": t["calibration_intercept"].round(3), "calibration slope": t["calibration_slope"].round(3),
        "Brier": t["brier"].round(3), "fitted": t["fitted"]})
    p = pd.DataFrame(comp["pairs"])
    pairs = pd.DataFrame({
        "cohort": p["cohort"], "model a -> model b": p["model_a"] + " -> " + p["model_b"],
        "nested": p["nested"],
        "AUC b - a (DeLong p)": [("–" if pd.isna(d) else f"{d:+.3f} (p {_p(q)})")
                                 for d, q in zip(p.get("delong_auc_diff", pd.Series(dtype=float)).reindex(p.index),
                                                 p.get("delong_p", pd.Series(dtype=float)).reindex(p.index))],
        "NRI categorical (95% CI)": [_fmt_ci(*r) for r in zip(p["nri_categorical"], p["nri_categorical_ci_low"],
                                                               p["nri_categorical_ci_high"])],
        "NRI continuous (95% CI)": [_fmt_ci(*r) for r in zip(p["nri_continuous"], p["nri_continuous_ci_low"],
                                                              p["nri_continuous_ci_high"])],
        "IDI (95% CI)": [_fmt_ci(*r) for r in zip(p["idi"], p["idi_ci_low"], p["idi_ci_high"])]})
    lr = pd.DataFrame(comp["lr_tests"])
    if not lr.empty:
        lr = lr.assign(p=lr["p"].map(_p))[["model_a", "model_b", "lr", "df", "p", "n"]]
    figures = [(Path(v), f"ROC and decision curves: {k.removeprefix('figure_')}")
               for k, v in comp["files"].items() if k.startswith("figure_")]
    rep = doc.get("reproducibility") or {}
    ss = doc.get("samplesize") or {}
    lc = pd.DataFrame((doc.get("learning_curve") or {}).get("auc") or [])
    from dlmvi.stats.compare import comparison_line

    return {"doc": doc, "line": comparison_line(doc), "table": table, "pairs": pairs, "lr": lr, "figures": figures,
            "icc_summary": pd.DataFrame(rep.get("by_region") or []), "reproducibility": rep,
            "dl": rep.get("dl_mvi") or {}, "samplesize": ss, "learning": lc,
            "learning_figure": base / "learning_curve.png", "notes": comp.get("notes") or []}


__all__ = ["radiomics_section"]
