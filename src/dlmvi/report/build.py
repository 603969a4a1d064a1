"""``dlmvi report RUN``: one self-contained HTML file with every table and figure of a study.

The report reads what the stages wrote (CSV/JSON/PNG in ``RUN/``), never recomputes a
statistic, and embeds images as data URIs so the file opens offline and prints cleanly.
Sections whose stage did not run say so. Figures drawn here (training curves) are written
with their numbers to ``RUN/report_files/``.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi import __version__
from dlmvi.constants import SYNTHETIC_NOTICE
from dlmvi.errors import DlmviError
from dlmvi.io.atomic import save_figure, write_csv, write_text
from dlmvi.layout import RunLayout
from dlmvi.preprocess.cache import CACHE_JSON, PATIENTS_CSV
from dlmvi.report.published import PUBLISHED
from dlmvi.report.run_info import develop_cohort
from dlmvi.report.run_info import read_json as _json


def _csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, dtype={"patient_id": str, "cohort": str}) if path.is_file() else None


def img(path: Path, alt: str, wide: bool = False) -> str:
    """An <img> with the PNG embedded as a data URI ('' if the file is missing)."""
    if not path or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    cls = ' class="wide"' if wide else ""
    return (f'<figure{cls}><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def table(df: pd.DataFrame | None, digits: int = 3, max_rows: int = 60) -> str:
    if df is None or df.empty:
        return "<p class='na'>(no rows)</p>"

    def fmt(v):
        if isinstance(v, (float, np.floating)):
            if np.isnan(v):
                return "–"
            if v != 0 and (abs(v) < 10 ** -digits):
                return f"{v:.2e}"
            return f"{v:.{digits}f}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return html.escape(str(v)) if v is not None else "–"

    rows = df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows.columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in r) + "</tr>" for r in rows.itertuples(index=False))
    more = f"<p class='na'>{len(df) - max_rows} more rows in the CSV.</p>" if len(df) > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _pct(v):
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.2f} %"


def _num(v, d=3):
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{d}f}"


def _ci(ci, d=3):
    """'low-high'; a limit that does not exist (e.g. a median CI not reached) reads 'NR'."""
    if not ci or all(c is None for c in ci):
        return "–"
    lo, hi = ("NR" if c is None else f"{c:.{d}f}" for c in ci)
    return f"{lo}-{hi}"


def _git_commit() -> str | None:
    """The commit of the dlmvi source checkout this module runs from, else None.

    Only a source checkout (``<root>/src/dlmvi/report/build.py`` with ``<root>`` the git
    top level) has a commit: an installed wheel has none, even when its environment happens
    to lie inside some other git repository, whose commit would be wrong here.
    """
    here = Path(__file__).resolve()
    root = here.parents[3]
    if here.parents[2].name != "src" or not (root / "pyproject.toml").is_file():
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel", "--short", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.splitlines()
    if out.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != root:
        return None
    return lines[1]


# ---------------------------------------------------------------- sections
def cohort_flow(run: Path) -> dict:
    p = _csv(RunLayout(run).cache / PATIENTS_CSV)
    if p is None:
        return {}
    rows = []
    for cohort, g in p.groupby("cohort", sort=True):
        inc = g[g["included"] == 1]
        rows.append({
            "cohort": cohort, "patients listed": len(g), "included": len(inc), "excluded": len(g) - len(inc),
            "M0": int((inc["mvi_grade"] == "M0").sum()), "M1": int((inc["mvi_grade"] == "M1").sum()),
            "M2": int((inc["mvi_grade"] == "M2").sum()),
            "MVI present": f"{(inc['mvi_grade'] != 'M0').mean():.1%}" if len(inc) else "–",
        })
    exc = p[p["included"] == 0][["patient_id", "cohort", "exclusion_reason"]]
    return {"counts": pd.DataFrame(rows), "excluded": exc}


def training(run: Path, files: Path) -> dict:
    doc = _json(RunLayout(run).train.run_json)
    if doc is None:
        return {}
    from dlmvi.report.figures import TrainingCurvesDisplay, training_curves

    curves = training_curves(RunLayout(run).train.root)
    fig_path = None
    if not curves.empty:
        write_csv(files / "training_curves.csv", curves)
        d = TrainingCurvesDisplay(curves).plot()
        fig_path = save_figure(d.figure_, files / "training_curves.png")
    cvm = _json(RunLayout(run).train.cv_metrics) or {}
    folds = pd.DataFrame(cvm.get("folds", []))
    return {"doc": doc, "cv": cvm, "folds": folds, "figure": fig_path}


def evaluation(run: Path) -> dict:
    """Per-cohort DL-MVI metrics from evaluate/metrics.json (binary MVI absent/present)."""
    m = _json(RunLayout(run).metrics_json)
    if m is None:
        return {}
    dev = develop_cohort(run)
    sources = prediction_sources_text(run)
    rows, flat = [], {}
    for cohort, v in (m.get("cohorts") or {}).items():
        b = v.get("binary") or {}
        role = ("development (out-of-fold)" if str(cohort) == str(dev) else
                "pooled" if cohort.startswith("all") else "external validation") if dev else (
                "pooled" if cohort.startswith("all") else "development (out-of-fold)")
        flat[cohort] = dict(b, role=role, auc_ci=[b.get("auc_ci_low"), b.get("auc_ci_high")])
        rows.append({"cohort": cohort, "role": role, "predictions from": sources.get(str(cohort), "–"), "n": b.get("n"),
                     "accuracy": b.get("accuracy"), "precision": b.get("precision"),
                     "recall": b.get("recall"), "F1": b.get("f1"), "specificity": b.get("specificity"),
                     "AUC": b.get("auc"), "AUC 95% CI (DeLong)": _ci([b.get("auc_ci_low"), b.get("auc_ci_high")])})
    leakage = (_json(RunLayout(run).study_json) or {}).get("leakage")
    return {"metrics": m, "cohorts": flat, "table": pd.DataFrame(rows), "leakage": leakage,
            "figures": sorted(RunLayout(run).evaluate.glob("*.png"))}


def prediction_sources_text(run: Path) -> dict[str, str]:
    """Per cohort, where its predictions came from (``study.json``'s ``prediction_sources``):
    ``"149 cross-validation (out of fold)"``; the pooled row sums them."""
    src = (_json(RunLayout(run).study_json) or {}).get("prediction_sources") or {}
    out = {c: "; ".join(f"{n} {k}" for k, n in d.items()) for c, d in src.items()}
    if len(src) > 1:
        total: dict[str, int] = {}
        for d in src.values():
            for k, n in d.items():
                total[k] = total.get(k, 0) + n
        out["all cohorts"] = "; ".join(f"{n} {k}" for k, n in total.items())
    return out


def ablation(run: Path) -> dict:
    a = _csv(RunLayout(run).ablation_csv)
    if a is None:
        return {}
    return {"table": a, "figures": sorted(RunLayout(run).ablation.glob("*.png"))}


def shift(run: Path) -> dict:
    lay = RunLayout(run)
    s = _json(lay.shift_json)
    if s is None:
        return {}
    return {"doc": s, "table": _csv(lay.shift / "shift.csv"), "figures": sorted(lay.shift.glob("*.png"))}


def _ci_text(v, ci, d=3, pct=False) -> str:
    """'0.832 (0.770-0.894)'; percentages as '83.1 (73.3-90.5)'; '–' when missing."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    f = 100.0 if pct else 1.0
    dd = 1 if pct else d
    lo_hi = [None if c is None or (isinstance(c, float) and np.isnan(c)) else c * f for c in (ci or [])]
    return f"{v * f:.{dd}f}" + (f" ({_ci(lo_hi, dd)})" if lo_hi and any(c is not None for c in lo_hi) else "")


def _p_text(p) -> str:
    if p is None or (isinstance(p, float) and np.isnan(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


#: Threshold probabilities of the decision-curve table in the report.
DCA_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def clinical(run: Path) -> dict:
    """The clinical analysis, read back as the :class:`~dlmvi.stats.clinical.ClinicalResult`
    that ``dlmvi clinical`` wrote."""
    from dlmvi.errors import StatisticsError
    from dlmvi.stats.clinical import ClinicalResult
    from dlmvi.stats.table1 import render_table1

    c = RunLayout(run).clinical
    if not RunLayout(run).nomogram_json.is_file():
        return {}
    try:
        res = ClinicalResult.read(c)
    except StatisticsError as exc:
        return {"error": str(exc)}
    nom = res.nomogram
    notice = SYNTHETIC_NOTICE if res.synthetic else None
    method = (res.summary.get("config") or {}).get("method", "ml")
    t1 = (render_table1(res.univariate, "html", res.table1_title, notice, method)
          if not res.univariate.empty else "")
    if "<table" in t1:
        t1 = t1[t1.index("<table"): t1.rindex("</table>") + len("</table>")]
    boot = nom.get("bootstrap") or {}
    val = pd.DataFrame([{"cohort": k, "role": v.get("role"),
                         "estimate": (v.get("estimate") or "").split(" (")[0] or "–",
                         "n": v.get("n"), "events": v.get("n_events"),
                         "AUC (95% CI)": _ci_text(v.get("auc"), v.get("auc_ci")),
                         "optimism-corrected AUC (bootstrap)": (_num(boot.get("auc"))
                                                                if str(v.get("estimate", "")).startswith("apparent")
                                                                and boot.get("auc") is not None else "–"),
                         "Brier": v.get("brier"), "scaled Brier": v.get("brier_scaled"),
                         "calibration-in-the-large (95% CI)": _ci_text(v.get("calibration_in_the_large"),
                                                                       v.get("calibration_in_the_large_ci")),
                         "calibration intercept (95% CI)": _ci_text(v.get("calibration_intercept"),
                                                                    v.get("calibration_intercept_ci")),
                         "calibration slope (95% CI)": _ci_text(v.get("calibration_slope"),
                                                                v.get("calibration_slope_ci")),
                         "Eavg": v.get("eavg"), "E90": v.get("e90"), "Emax": v.get("emax"),
                         "Spiegelhalter p": v.get("spiegelhalter_p")}
                        for k, v in (nom.get("validation") or {}).items()])
    fit = None
    if nom.get("lr_test"):
        lt, ml = nom["lr_test"], nom.get("model_lr") or {}
        fit = pd.DataFrame([{
            "development data": f"{nom.get('develop_cohort') or 'all patients'} (n = {lt.get('n')})",
            "added value: " + " + ".join(lt.get("added", [])) + " to " + (" + ".join(lt.get("base", [])) or "intercept")
            + " (LR chi2, df, p)": f"{lt['chi2']:.2f}, {lt['df']}, {_p_text(lt['p'])}",
            "model LR chi2 (df, p)": f"{ml.get('chi2', float('nan')):.2f} ({ml.get('df')}, {_p_text(ml.get('p'))})",
            "AIC": nom.get("aic"), "Nagelkerke R2": nom.get("nagelkerke_r2")}])
    multi = res.multivariate
    if multi is not None:
        multi = multi[[x for x in ("term", "coef", "odds_ratio", "ci_low", "ci_high", "p_value", "note")
                       if x in multi]]
    classification = None
    if res.classification is not None and not res.classification.empty:
        k = res.classification
        classification = pd.DataFrame({
            "cohort": k["cohort"], "model": k["model"], "rule": k["rule"],
            "estimate": k["estimate"] if "estimate" in k else "–",
            "TP/FP/TN/FN": [f"{a}/{b}/{c_}/{d}" for a, b, c_, d in zip(k["tp"], k["fp"], k["tn"], k["fn"])],
            **{f"{lab} % (95% CI)": [_ci_text(v, [lo, hi], pct=True) for v, lo, hi in
                                     zip(k[m], k[f"{m}_ci_low"], k[f"{m}_ci_high"])]
               for m, lab in (("sensitivity", "sensitivity"), ("specificity", "specificity"), ("ppv", "PPV"),
                              ("npv", "NPV"), ("accuracy", "accuracy"))}})
    dca = None
    if res.dca is not None and not res.dca.empty:
        d = res.dca[np.isclose(res.dca["threshold"].to_numpy()[:, None], DCA_THRESHOLDS).any(axis=1)]
        dca = pd.DataFrame({"cohort": d["cohort"], "model": d["model"], "threshold": d["threshold"],
                            "net benefit": d["net_benefit"], "treat all": d["treat_all"],
                            "net interventions avoided per 100": d["interventions_avoided_per_100"]}).round(9)
    return {"nomogram": nom, "table1": t1, "multivariate": multi, "validation": val, "fit": fit,
            "roc_comparison": res.roc_comparison, "classification": classification, "dca": dca,
            "multivariate_cohort": res.summary.get("multivariate_fitted_on"),
            "method": method,
            "figures": [c / f for f in ("nomogram.png", "roc.png", "calibration.png", "dca.png")]}


def survival(run: Path) -> dict:
    """The survival analyses, read back as the :class:`~dlmvi.stats.survival_pipeline.SurvivalResult`."""
    from dlmvi.errors import StatisticsError
    from dlmvi.stats.survival_pipeline import SurvivalResult

    lay = RunLayout(run)
    try:
        s = SurvivalResult.read(lay.survival).doc
    except StatisticsError:
        return {}
    rows, figures, models = [], [], []
    for name in s.get("analyses", []):
        a = s.get(name)
        if not a:
            continue
        rates = a.get("rates") or {}
        times = rates.get("times") or []
        cox = a.get("cox") or {}
        for g, v in (a.get("groups") or {}).items():
            row = {"analysis": name, "group": g, "n": v.get("n"), "events": v.get("events"),
                   "median (months)": v.get("median"), "95% CI": _ci(v.get("median_ci"), 1)}
            for t, r in zip(times, (rates.get("groups") or {}).get(g) or []):
                row[f"{t / 12:g}-year % (95% CI)"] = (_ci_text(r["survival"], r["ci"], pct=True)
                                                      if r else "–")
            row.update({"HR (95% CI)": (f"{cox['hr']:.2f} ({_ci(cox['ci'], 2)})" if cox and
                                        not isinstance(cox.get("hr"), dict) else "–")
                        if g != a.get("reference") else "reference",
                        "log-rank p": (a.get("logrank") or {}).get("p")})
            rows.append(row)
        if a.get("figure"):
            figures.append((lay.survival / a["figure"], name))
        fu = a.get("median_follow_up") or {}
        conc = a.get("concordance") or {}
        ph = (a.get("ph_test") or {}).get("global") or {}
        models.append({"analysis": name,
                       "median follow-up, months (95% CI)": _ci_text(fu.get("median"), fu.get("ci"), d=1),
                       "Cox LR test p": (cox.get("lr_test") or {}).get("p"),
                       "Cox score test p": (cox.get("score_test") or {}).get("p"),
                       "Cox Wald p": cox.get("overall_p", cox.get("p")) if cox else None,
                       "C-index (SE)": (f"{conc['c']:.3f} ({conc['se']:.3f})" if conc else "–"),
                       "PH test p (global)": ph.get("p")})
    multivariable = {}
    for outcome in ("os", "rfs"):
        m = s.get(f"multivariable_cox_{outcome}")
        if not m:
            continue
        ph = (m.get("ph_test") or {}).get("terms") or {}
        table = pd.DataFrame([{"term": k, "definition": (m.get("covariates") or {}).get(k, k),
                               "HR (95% CI)": f"{v['hr']:.2f} ({_ci(v['ci'], 2)})", "p": _p_text(v["p"]),
                               "PH test p": _p_text((ph.get(k) or {}).get("p"))}
                              for k, v in m["terms"].items()])
        conc = m.get("concordance") or {}
        foot = (f"{m.get('outcome_name', outcome)}: Cox model (Efron ties) on {m['n']} complete cases, "
                f"{m['events']} events; {len(m.get('excluded') or [])} patients without complete covariates "
                f"left out. LR test chi2 = {m['lr_test']['chi2']:.2f} on {m['lr_test']['df']} df, "
                f"p = {_p_text(m['lr_test']['p'])}; C-index {conc.get('c', float('nan')):.3f} "
                f"(SE {conc.get('se', float('nan')):.3f}); global PH test p = "
                f"{_p_text(((m.get('ph_test') or {}).get('global') or {}).get('p'))}.")
        multivariable[outcome] = {"table": table, "footnote": foot}
    return {"doc": s, "table": pd.DataFrame(rows), "models": pd.DataFrame(models),
            "multivariable": multivariable, "figures": figures, "notes": s.get("notes", {}),
            "left_out": survival_left_out(s)}


def survival_left_out(doc: dict) -> pd.DataFrame:
    """Patients left out of each survival analysis (complete cases per analysis) and why."""
    from dlmvi.stats.survival_pipeline import left_out

    frame = left_out(doc).frame()
    return frame[["analysis", "patient_id", "reason"]] if len(frame) else frame


def comparison(run: Path, ctx: dict) -> pd.DataFrame:
    """This run's value next to each published headline number."""
    vals: dict[str, str] = {}
    flow = ctx.get("flow") or {}
    if flow:
        c = flow["counts"]
        vals["n_total"] = f"{int(c['included'].sum())} (" + " + ".join(str(x) for x in c["included"]) + ")"
        n_present = int((c["M1"] + c["M2"]).sum())
        vals["prevalence"] = f"{n_present / max(int(c['included'].sum()), 1):.1%} ({n_present}/{int(c['included'].sum())})"
    tr = ctx.get("training") or {}
    if tr.get("cv"):
        cv = tr["cv"]
        vals["val_accuracy"] = f"{_pct(cv.get('accuracy_mean'))} (CV mean; sd {_pct(cv.get('accuracy_sd'))})"
    cohorts = (ctx.get("evaluation") or {}).get("cohorts") or {}
    ext = [k for k, v in cohorts.items() if v.get("role") == "external validation"]
    if ext:
        v = cohorts[ext[0]]
        vals.update(ext_accuracy=_pct(v.get("accuracy")), ext_precision=_pct(v.get("precision")),
                    ext_recall=_pct(v.get("recall")), ext_f1=_pct(v.get("f1")))
    aucs = [f"{k}: {_num(v.get('auc'))} ({_ci(v.get('auc_ci'))})" for k, v in cohorts.items() if v.get("auc") is not None]
    if aucs:
        vals["dl_auc"] = "; ".join(aucs)
    cl = ctx.get("clinical") or {}
    nom = cl.get("nomogram") or {}
    multi = cl.get("multivariate")
    if multi is not None and not multi.empty:
        for key, pat in (("or_afp", "afp"), ("or_dl", "dl_mvi")):
            r = multi[multi["term"].astype(str).str.contains(pat, case=False)]
            if not r.empty:
                r = r.iloc[0]
                vals[key] = f"{r['odds_ratio']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})"
    if nom:
        vals["formula"] = nom.get("formula", "–")
        vals["nomogram_auc"] = "; ".join(f"{k}: {_num(v.get('auc'))}" for k, v in (nom.get("validation") or {}).items())
    sv = (ctx.get("survival") or {}).get("doc") or {}

    def med(name, group):
        a = sv.get(name) or {}
        g = (a.get("groups") or {}).get(group) or {}
        return None if not g else ("not reached" if g.get("median") is None else f"{g['median']:.1f}")

    for key, name in (("median_rfs_mvi", "rfs_by_mvi"), ("median_os_dl", "os_by_dl"), ("median_rfs_dl", "rfs_by_dl")):
        m = med(name, "present")
        if m:
            vals[key] = m
    return pd.DataFrame([{"quantity": label, "published study": pub, "this run": vals.get(key, "not computed"), "note": note}
                         for key, label, pub, note in PUBLISHED])


def methods(run: Path, ctx: dict) -> list[tuple[str, str]]:
    """TRIPOD+AI items that software can fill, from the recorded configuration."""
    lay = RunLayout(run)
    study = _json(lay.study_json) or {}
    cfg = study.get("config", {})
    cache = _json(lay.cache / CACHE_JSON) or {}
    prm = cache.get("params", {})
    tr = (ctx.get("training") or {}).get("doc") or {}
    tcfg, net = tr.get("training", {}), tr.get("network", {})
    flow = ctx.get("flow") or {}
    items = []
    src = "a synthetic cohort generated by dlmvi's phantom (no real patients)" if ctx["synthetic"] else f"the cohort folder {cache.get('cohort_dir', cfg.get('cohort', '?'))}"
    items.append(("Source of data", f"Data came from {src}. Cohorts: " + (", ".join(f"{r['cohort']} ({r['included']} included of {r['patients listed']})" for r in flow["counts"].to_dict("records")) if flow else "?") + "."))
    items.append(("Participants and outcome", "Outcome: microvascular invasion on pathology, present (M1 or M2) vs absent (M0). "
                  f"Development cohort: {cfg.get('develop_cohort') or 'all patients'}; other cohorts are external (temporal) validation."))
    if flow:
        ex = flow["excluded"]
        reasons = ex["exclusion_reason"].str.split(":").str[0].value_counts().to_dict() if not ex.empty else {}
        items.append(("Missing data and exclusions", f"{len(ex)} patient(s) excluded before modelling" + (f" (by first reason: {reasons})" if reasons else "") +
                      ". Clinical analyses use complete cases; rows dropped are reported with each model."))
    items.append(("Image preprocessing", f"Sequences {', '.join(prm.get('sequences', []))}; per sequence the {prm.get('n_slices', 3)} consecutive axial slices with the largest "
                  f"tumour diameter; tumour box enlarged by {prm.get('margin')} px, squared, resized to {prm.get('size')} px; intensity normalisation: "
                  f"{cfg.get('normalization', prm.get('normalization'))}."))
    if tcfg:
        items.append(("Model specification", f"Multi-branch CNN with one encoder shared across sequences (stem width {net.get('stem_width')}, widths {net.get('widths')}, "
                      f"bottleneck blocks {net.get('blocks')}), concatenated features, one fully connected layer, {tcfg.get('classes')} classes. "
                      f"Preset '{tcfg.get('preset')}': Adam lr {tcfg.get('lr')}, batch {tcfg.get('batch_size')}, up to {tcfg.get('epochs')} epochs, early stopping patience {tcfg.get('patience')}, "
                      f"{tcfg.get('holdout')} of training patients held out for checkpoint selection; each epoch one random slice combination per patient (3^k possible) with augmentation."))
        items.append(("Internal validation", f"Patient-level stratified {tcfg.get('folds')}-fold cross-validation (seed {tcfg.get('seed')}); no patient's slices or combinations on both sides of a split. "
                      "Development-cohort predictions in the clinical and survival analyses are out-of-fold."))
    items.append(("Performance measures", "Accuracy, precision, recall, F1, AUC with DeLong 95 % CI (as R's pROC); nomogram calibration intercept and slope with Wald CIs "
                  "(as rms::val.prob and R glm), calibration-in-the-large (glm with the linear predictor as offset), Brier and scaled Brier scores, Eavg/E90/Emax from "
                  "R's lowess (rms::val.prob), Spiegelhalter's test, bootstrap optimism correction; sensitivity, specificity, PPV, NPV and accuracy with exact binomial CIs "
                  "(binom.test) at p >= 0.5 and at the Youden threshold chosen on the development data (pROC) and applied unchanged to the other cohorts; decision curves "
                  "with net interventions avoided (dcurves); survival by Kaplan-Meier (rates at 1, 3 and 5 years, reverse Kaplan-Meier median follow-up), log-rank, "
                  "Cox (Efron ties) with likelihood-ratio, score and Wald tests, Harrell's C (concordance(coxph)) and the proportional-hazards test cox.zph (transform 'km'); "
                  "a multivariable Cox model of DL-MVI adjusted for AFP > 20 ng/mL, tumour size and Edmondson-Steiner grade on complete cases."))
    items.append(("Model comparison", "The added value of DL-MVI over the other nomogram inputs is a likelihood-ratio test of the nested logistic models on the "
                  "development data (R anova(..., test = 'LRT')). DeLong's test is used only for non-nested ROC curves (the single predictors against each other): "
                  "it is invalid for nested models (Demler, Pencina & D'Agostino 2012)."))
    mv = (ctx.get("clinical") or {}).get("multivariate_cohort")
    if mv:
        items.append(("Multivariable model", f"Univariate screening (p < the configured threshold) and the multivariable logistic model used the "
                      f"{'development cohort ' + str(mv) if mv != 'all' else 'all patients'}; "
                      + ("Firth's penalised likelihood (profile penalised-likelihood CIs, penalised LR p; R logistf)."
                         if (ctx.get("clinical") or {}).get("method") == "firth" else
                         "maximum likelihood with Wald CIs; odds ratios of separated variables are reported as not estimable.")))
    items.append(("Software and code version", f"dlmvi {__version__}" + (f" (git {ctx['commit']})" if ctx.get("commit") else "") +
                  f"; report generated {ctx['generated']}. Configuration: study.json, train/run.json, cache/cache.json."))
    return items


def site_groups(run: Path) -> dict:
    """Figures per cohort and scanner group (``evaluate/groups.csv``, ``clinical/groups.csv``)."""
    lay = RunLayout(run)
    dl, nom = lay.evaluate / "groups.csv", lay.clinical / "groups.csv"
    if not dl.is_file():
        return {}
    meta = _json(lay.evaluate / "groups.json") or {}

    def read(p):
        if not p.is_file():
            return None
        t = pd.read_csv(p, dtype={"group": str})
        t["AUC (95% CI)"] = [f"{a:.3f} ({_ci([lo, hi])})" if a == a else "–"
                             for a, lo, hi in zip(t["auc"], t["auc_ci_low"], t["auc_ci_high"])]
        return t[["group_type", "group", "n", "n_events", "small", "AUC (95% CI)", "calibration_intercept",
                  "calibration_slope", "brier", "accuracy", "sensitivity", "specificity"]]

    return {"dl": read(dl), "nomogram": read(nom), "source": meta.get("scanner_source"),
            "min_size": meta.get("min_group_size")}


def transport(run: Path) -> dict:
    """The transport comparison (``dlmvi study --transport``), or {} when it did not run."""
    doc = _json(RunLayout(run).transport_json)
    if not doc:
        return {}
    t = pd.DataFrame(doc["rows"])
    t["AUC (95% CI)"] = [f"{a:.3f} ({_ci([lo, hi])})" if a == a else "–"
                         for a, lo, hi in zip(t["auc"], t["auc_ci_low"], t["auc_ci_high"])]
    table = t[["cohort", "remedy", "n", "AUC (95% CI)", "calibration_intercept", "calibration_slope", "brier",
               "uses_external"]]
    shift = _csv(RunLayout(run).combat_shift_csv)
    if shift is not None:
        shift = shift[["features", "sequence", "cohort", "separability_auc", "mmd2", "mmd_p_value"]]
    return {"doc": doc, "table": table, "shift": shift}


def agreement(run: Path) -> dict:
    """Two readers' agreement (``RUN/agreement/``, issue 29), or {} when the run has none."""
    folder = Path(run) / "agreement"
    doc = _json(folder / "agreement.json")
    if not doc:
        return {}
    return {"doc": doc, "summary": _csv(folder / "boxes_summary.csv"),
            "figure": folder / "bland_altman.png" if (folder / "bland_altman.png").is_file() else None}


def collect(run: Path) -> dict:
    run = Path(run)
    files = RunLayout(run).report_files
    cache_meta = _json(RunLayout(run).cache / CACHE_JSON) or {}
    ctx = {
        "run": str(run), "version": __version__, "commit": _git_commit(),
        "generated": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "synthetic": bool(cache_meta.get("synthetic", False)), "notice": SYNTHETIC_NOTICE,
        "flow": cohort_flow(run), "training": training(run, files), "evaluation": evaluation(run),
        "ablation": ablation(run), "shift": shift(run), "clinical": clinical(run), "survival": survival(run),
        "groups": site_groups(run), "transport": transport(run), "run_path": run,
        "agreement": agreement(run),
    }
    from dlmvi.report.radiomics import radiomics_section

    ctx["radiomics"] = radiomics_section(run)
    ctx["formula"] = ((ctx["clinical"] or {}).get("nomogram") or {}).get("formula")
    ctx["comparison"] = comparison(run, ctx)
    ctx["methods"] = methods(run, ctx)
    from dlmvi.report.checklists import checklists

    ctx["checklists"] = checklists(ctx)
    return ctx


def build_report(run: str | Path) -> Path:
    """Write ``RUN/report.html`` and return its path."""
    import jinja2

    run = Path(run)
    if not run.is_dir():
        raise DlmviError(f"{run} is not a run folder; run `dlmvi study COHORT --out {run}` first")
    ctx = collect(run)
    env = jinja2.Environment(loader=jinja2.PackageLoader("dlmvi.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]))
    from markupsafe import Markup

    env.globals.update(img=lambda *a: Markup(img(*a)), table=lambda *a, **k: Markup(table(*a, **k)),
                       raw=Markup, pct=_pct, num=_num, ci=_ci)
    page = env.get_template("report.html").render(**ctx)
    return write_text(RunLayout(run).report, page)
