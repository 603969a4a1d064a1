"""Univariate analysis by MVI status: the study's Table 1.

For each clinical variable, :func:`univariate_table` gives the counts of patients without and
with MVI at each level (continuous variables dichotomised at their cut-off, ``value >
cut-off`` = level 1), the odds ratio of level 1 vs level 0 with its Wald 95 % CI and p-value
from a one-variable logistic regression, and for continuous variables the median (IQR) in each
group with the Mann-Whitney p-value (normal approximation with continuity correction, R's
``wilcox.test(exact = FALSE)``). :func:`render_table1` prints it journal-style as HTML or
Markdown.
"""

from __future__ import annotations

import html
import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from dlmvi.errors import ClinicalTableError, StatisticsError, StatisticsWarning
from dlmvi.stats.logistic import NOT_ESTIMABLE, fit_logit, require_numeric

__all__ = ["univariate_table", "render_table1", "VARIABLE_LABELS", "LEVEL_LABELS"]

#: Display names of the standard clinical.csv columns.
VARIABLE_LABELS: dict[str, str] = {
    "age": "Age (years)", "sex": "Sex", "afp": "AFP (ng/mL)", "alt": "ALT (U/L)",
    "ast": "AST (U/L)", "ggt": "GGT (U/L)", "tb": "TB (umol/L)", "cb": "CB (umol/L)",
    "alb": "ALB (g/L)", "plt": "PLT (10^9/L)", "pt": "PT (s)", "inr": "INR",
    "ascites": "Ascites", "hepatitis": "Hepatitis B/C", "cirrhosis": "Cirrhosis",
    "capsule": "Capsule", "edmondson": "Edmondson-Steiner grade",
    "tumor_size_cm": "Tumour size (cm)", "dl_mvi": "DL-MVI",
}

#: Names of levels 0 and 1 of the binary columns (default: no / yes).
LEVEL_LABELS: dict[str, tuple[str, str]] = {
    "sex": ("male", "female"), "capsule": ("incomplete", "complete"),
    "edmondson": ("I-II", "III-IV"), "dl_mvi": ("absent", "present"),
}

_COLUMNS = [
    "variable", "label", "kind", "cutoff", "level0", "level1", "n", "n_events",
    "absent_level0", "present_level0", "absent_level1", "present_level1",
    "coef", "se", "odds_ratio", "ci_low", "ci_high", "p_value", "lr_p_value",
    "median_absent", "q1_absent", "q3_absent", "median_present", "q1_present", "q3_present",
    "mannwhitney_p", "note",
]


def _fmt_num(v: float) -> str:
    return f"{v:g}"


def univariate_table(data: pd.DataFrame, outcome: str, variables: Sequence[str],
                     cutoffs: Mapping[str, float], *, id_column: str = "patient_id",
                     labels: Mapping[str, str] | None = None,
                     level: float = 0.95, method: str = "ml") -> pd.DataFrame:
    """Table 1 numbers, one row per variable.

    Args:
        data: one row per patient with the 0/1 ``outcome`` (1 = MVI present).
        outcome: outcome column.
        variables: clinical.csv columns; those in ``cutoffs`` are dichotomised
            (``> cut-off``), those holding only 0/1 are taken as binary, any other numeric
            column enters the regression per unit (OR per 1 unit) and is summarised by
            median (IQR) only.
        cutoffs: {column: cut-off} in the column's units.
        labels: display names; defaults to :data:`VARIABLE_LABELS`.
        method: ``"ml"`` (R ``glm``, Wald) or ``"firth"`` (R ``logistf``: profile
            penalised-likelihood CI, penalised LR p); see :func:`~dlmvi.stats.logistic.fit_logit`.

    Returns:
        DataFrame (columns ``variable, label, kind, cutoff, level0, level1, n, n_events,
        absent_level0, present_level0, absent_level1, present_level1, coef, se, odds_ratio,
        ci_low, ci_high, p_value, median_absent, q1_absent, q3_absent, median_present,
        q1_present, q3_present, mannwhitney_p, note``). ``kind`` is ``dichotomised``,
        ``binary`` or ``continuous``. Under maximum likelihood a separated variable (a level
        with only patients with, or only without, MVI) has no odds ratio, CI or p (empty)
        and ``note`` = ``"not estimable (separation)"``.

    Raises:
        ClinicalTableError: a variable is missing or non-numeric, or the outcome is not 0/1.
        StatisticsError: the outcome has one class only.
    """
    lab = {**VARIABLE_LABELS, **(labels or {})}
    num = require_numeric(data, [outcome, *variables], id_column)
    y_all = num[outcome]
    bad = y_all.notna() & ~y_all.isin((0.0, 1.0))
    if bad.any():
        raise ClinicalTableError(f"outcome {outcome!r} must be 0/1; rows {list(data.index[bad][:5])}")
    yk = y_all.dropna()
    if yk.nunique() < 2:
        raise StatisticsError(
            f"all {len(yk)} patients have the same MVI status ({int(yk.iloc[0]) if len(yk) else '-'}); "
            "Table 1 needs patients with and without MVI"
        )
    rows = []
    for var in variables:
        x = num[var]
        cut = cutoffs.get(var)
        kind, z, lv = _kind_and_levels(var, x, cut)
        row = {"variable": var, "label": lab.get(var, var), "kind": kind,
               "cutoff": np.nan if cut is None else float(cut),
               "level0": lv[0], "level1": lv[1], "note": ""}
        ok = z.notna() & y_all.notna()
        yy, zz = y_all[ok], z[ok]
        row["n"], row["n_events"] = int(ok.sum()), int(yy.sum())
        if kind != "continuous":
            for lvl in (0, 1):
                row[f"absent_level{lvl}"] = int(((zz == lvl) & (yy == 0)).sum())
                row[f"present_level{lvl}"] = int(((zz == lvl) & (yy == 1)).sum())
        frame = pd.DataFrame({"__y__": yy, var: zz})
        if id_column in data.columns:
            frame[id_column] = data.loc[ok, id_column]
        row.update(_odds_ratio_columns(frame, var, yy, id_column, level, method))
        if kind != "binary":
            row.update(_median_columns(x, y_all))
        rows.append(row)
    out = pd.DataFrame(rows).reindex(columns=_COLUMNS)
    counts = ["n", "n_events", "absent_level0", "present_level0", "absent_level1",
              "present_level1"]
    out[counts] = out[counts].astype("Int64")  # integers, empty for continuous variables
    return out


def _kind_and_levels(var: str, x: pd.Series, cut: float | None) -> tuple[str, pd.Series, tuple[str, str]]:
    """How a variable enters Table 1: ``(kind, its 0/1 or continuous values, level names)``;
    ``dichotomised`` at its cut-off (``> cut-off`` = 1), ``binary`` (only 0/1) or ``continuous``."""
    distinct = set(x.dropna().unique())
    if cut is not None:
        kind = "dichotomised"
        z = pd.Series(np.where(x.isna(), np.nan, (x > cut).astype(float)), index=x.index)
        lv = (f"<= {_fmt_num(cut)}", f"> {_fmt_num(cut)}")
    elif distinct <= {0.0, 1.0}:
        kind = "binary"
        z = x
        lv = LEVEL_LABELS.get(var, ("no", "yes"))
    else:
        kind = "continuous"
        z = x
        lv = ("", "")
    return kind, z, lv


def _odds_ratio_columns(frame: pd.DataFrame, var: str, yy: pd.Series, id_column: str, level: float,
                        method: str) -> dict:
    """One variable's ``lr_p_value``, odds ratio, CI and p (or ``note`` under separation) from
    its one-variable logistic regression; nothing (with a warning) when it cannot be fitted."""
    row: dict = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StatisticsWarning)  # missing rows: reported in n
            res = fit_logit(frame, "__y__", [var], id_column=id_column, level=level,
                            check_epv=False, method=method)
        row["lr_p_value"] = _lr_p(res, yy) if method == "ml" else float(res.summary.iloc[1]["p_value"])
        if res.not_estimable:
            warnings.warn(f"{var}: perfect or quasi-complete separation; its odds ratio "
                          "is not estimable by maximum likelihood (Firth's method: "
                          "method = \"firth\")", StatisticsWarning, stacklevel=3)
            row["note"] = NOT_ESTIMABLE
        else:
            s = res.summary.iloc[1]
            row.update({k: float(s[k]) for k in
                        ("coef", "se", "odds_ratio", "ci_low", "ci_high", "p_value")})
    except StatisticsError as exc:
        warnings.warn(f"{var}: no odds ratio ({exc})", StatisticsWarning, stacklevel=3)
    return row


def _median_columns(x: pd.Series, y_all: pd.Series) -> dict:
    """Median (IQR) of a non-binary variable without and with MVI, and the Mann-Whitney p."""
    row: dict = {}
    xa = x[(y_all == 0) & x.notna()].to_numpy()
    xp = x[(y_all == 1) & x.notna()].to_numpy()
    for name, arr in (("absent", xa), ("present", xp)):
        if arr.size:
            q1, med, q3 = np.quantile(arr, [0.25, 0.5, 0.75])
            row.update({f"median_{name}": med, f"q1_{name}": q1, f"q3_{name}": q3})
    if xa.size and xp.size and np.ptp(np.concatenate([xa, xp])) > 0:
        row["mannwhitney_p"] = float(stats.mannwhitneyu(
            xp, xa, alternative="two-sided", use_continuity=True,
            method="asymptotic").pvalue)
    return row


def _lr_p(res, y) -> float:
    """Likelihood-ratio p of a one-predictor maximum-likelihood fit against the intercept-only
    model on its patients (its log-likelihood is the supremum under separation)."""
    from dlmvi.stats.logistic import null_loglik

    chi2 = max(2.0 * (res.llf - null_loglik(np.asarray(y, dtype=float))), 0.0)
    return float(stats.chi2.sf(chi2, 1))


def _p(p: float) -> str:
    if not np.isfinite(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _or(r) -> str:
    if r.get("note") == NOT_ESTIMABLE:
        return NOT_ESTIMABLE
    if not np.isfinite(r["odds_ratio"]):
        return "-"
    return f"{r['odds_ratio']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})"


def _cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]], list[bool]]:
    """Header and body cells of the journal table; bold flags p < 0.05 rows."""
    header = ["Variable", "Level", "MVI absent", "MVI present", "OR (95% CI)", "p"]
    body, bold = [], []
    for _, r in table.iterrows():
        if r["kind"] == "continuous":
            med = (f"{r['median_absent']:.3g} ({r['q1_absent']:.3g}-{r['q3_absent']:.3g})",
                   f"{r['median_present']:.3g} ({r['q1_present']:.3g}-{r['q3_present']:.3g})")
            body.append([r["label"], "median (IQR)", *med, _or(r) + " per unit"
                         if np.isfinite(r["odds_ratio"]) else "-", _p(r["mannwhitney_p"])])
            bold.append(bool(r["mannwhitney_p"] < 0.05))
            continue
        tot_a = r["absent_level0"] + r["absent_level1"]
        tot_p = r["present_level0"] + r["present_level1"]
        for lvl in (0, 1):
            a, p = int(r[f"absent_level{lvl}"]), int(r[f"present_level{lvl}"])
            cells = [r["label"] if lvl == 0 else "", r[f"level{lvl}"],
                     f"{a} ({100 * a / tot_a:.1f}%)" if tot_a else str(a),
                     f"{p} ({100 * p / tot_p:.1f}%)" if tot_p else str(p),
                     "1 (reference)" if lvl == 0 else _or(r),
                     "" if lvl == 0 else _p(r["p_value"])]
            body.append(cells)
            bold.append(bool(lvl == 1 and r["p_value"] < 0.05))
        if r["kind"] == "dichotomised" and np.isfinite(r["median_absent"]):
            body.append(["", "median (IQR)",
                         f"{r['median_absent']:.3g} ({r['q1_absent']:.3g}-{r['q3_absent']:.3g})",
                         f"{r['median_present']:.3g} ({r['q1_present']:.3g}-{r['q3_present']:.3g})",
                         "", _p(r["mannwhitney_p"])])
            bold.append(False)
    return header, body, bold


def _footnote(table: pd.DataFrame, method: str = "ml") -> str:
    n = int(table["n"].max()) if len(table) else 0
    how = ("Firth's penalised logistic regression, profile penalised-likelihood 95% CI and "
           "penalised likelihood-ratio p" if method == "firth"
           else "univariate logistic regression, Wald 95% CI and p")
    sep = (f" '{NOT_ESTIMABLE}': a level has only patients with or only without MVI, so the "
           "maximum-likelihood odds ratio is infinite (Firth's method gives a finite one)."
           if "note" in table and (table["note"] == NOT_ESTIMABLE).any() else "")
    return (f"n = {n} patients. Counts are n (% of the MVI group). OR: odds ratio of the second "
            f"level vs the first (reference) from {how}. "
            "Median (IQR) rows: Mann-Whitney U test." + sep)


def render_table1(table: pd.DataFrame, fmt: str = "html", title: str = "Table 1",
                  notice: str | None = None, method: str = "ml") -> str:
    """Journal-style Table 1 from :func:`univariate_table`'s output.

    Args:
        fmt: ``"html"`` (a standalone ``<table>`` with inline CSS) or ``"markdown"``.
        title: caption. notice: a line printed above the table (e.g. the synthetic-data
            notice).
        method: how the odds ratios were fitted (``"ml"`` or ``"firth"``), for the footnote.
    """
    header, body, bold = _cells(table)
    foot = _footnote(table, method)
    if fmt == "markdown":
        lines = []
        if notice:
            lines += [f"**{notice}**", ""]
        lines += [f"**{title}**", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] * len(header)) + "|"]
        for cells, b in zip(body, bold):
            c = list(cells)
            if b:
                c[-1] = f"**{c[-1]}**"
            lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in c) + " |")
        lines += ["", foot, ""]
        return "\n".join(lines)
    if fmt != "html":
        raise ValueError(f"fmt must be 'html' or 'markdown', got {fmt!r}")
    e = html.escape
    out = ['<table class="table1" style="border-collapse:collapse;font-family:sans-serif;'
           'font-size:10pt">']
    out.append(f'<caption style="text-align:left;font-weight:bold">{e(title)}</caption>')
    if notice:
        out.append(f'<tr><td colspan="{len(header)}" style="color:#b00;font-weight:bold">'
                   f"{e(notice)}</td></tr>")
    out.append('<thead><tr style="border-top:2px solid #000;border-bottom:1px solid #000">'
               + "".join(f'<th style="padding:2px 8px;text-align:left">{e(h)}</th>'
                         for h in header) + "</tr></thead><tbody>")
    for cells, b in zip(body, bold):
        tds = []
        for i, v in enumerate(cells):
            style = "padding:2px 8px" + (";font-weight:bold" if b and i == len(cells) - 1 else "")
            tds.append(f'<td style="{style}">{e(str(v))}</td>')
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append(f'</tbody><tfoot><tr style="border-top:2px solid #000"><td colspan="{len(header)}"'
               f' style="font-size:8pt;padding-top:4px">{e(foot)}</td></tr></tfoot></table>')
    return "\n".join(out) + "\n"
