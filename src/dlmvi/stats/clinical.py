"""The clinical analysis behind ``dlmvi clinical``: Table 1, multivariate model, nomogram,
ROC comparison, calibration and decision curves, written as CSV/JSON/HTML/PNG.

Outcome: MVI present (``mvi_grade`` M1 or M2) = 1, absent (M0) = 0.

Files written by :func:`run_clinical` into ``out_dir`` (every figure has its numbers next to it):

``univariate.csv``
    One row per variable (named by its clinical.csv column, e.g. ``afp``):
    ``variable, odds_ratio, ci_low, ci_high, p_value`` (univariate logistic regression, Wald
    95 % CI), then ``label, kind`` (dichotomised/binary/continuous), ``cutoff``,
    ``level0, level1`` (level names), ``n, n_events``, the counts
    ``absent_level0, present_level0, absent_level1, present_level1``, ``coef, se``,
    ``median_absent, q1_absent, q3_absent, median_present, q1_present, q3_present``,
    ``mannwhitney_p`` (continuous variables) and ``note`` (``not estimable (separation)``
    where a level has only patients with or without MVI: no odds ratio under maximum
    likelihood; ``method = "firth"`` gives Firth's finite estimate, as R's ``logistf``).
``table1.html``, ``table1.md``
    The same as a journal-style table.
``multivariate.csv``
    ``variable, term, coef, se, z, odds_ratio, ci_low, ci_high, p_value`` for the
    intercept (``(Intercept)``) and each variable with univariate p < threshold (DL-MVI
    always, when present); ``term`` is e.g. ``afp > 20``. Columns ``n, n_events,
    n_dropped`` repeat the sample size, ``cohort`` names the patients it was screened and
    fitted on (the development cohort, or ``all``), ``method`` how, ``note`` flags
    separated terms. Empty (header only) when nothing qualified.
``nomogram.json``
    ``intercept``, ``coefficients`` {column: beta}, ``odds_ratios``, ``cutoffs``,
    ``terms``, ``formula`` (text), ``n``, ``n_events``, ``covariance``,
    ``covariance_terms``, ``method``, ``develop_cohort``, ``synthetic``, ``bootstrap``
    (optimism corrected ``auc, brier, calibration_intercept, calibration_slope``, their
    ``apparent`` values, ``B`` and ``seed``; null when the bootstrap is off), on the fitting
    data (maximum likelihood): ``lr_test`` {``chi2, df, p, n, n_events, base, added``}
    (DL-MVI added to the other inputs, R ``anova(glm0, glm1, test = "LRT")``: the test of
    DL-MVI's added value), ``model_lr`` {``chi2, df, p``}, ``aic`` and ``nagelkerke_r2`` (as
    R's ``rms::lrm``), ``youden_threshold`` {``threshold``, ``chosen_on``} and
    ``validation`` = {cohort: {``role`` (development/validation/all), ``estimate``
    (``apparent ...`` where the nomogram was fitted - in-sample, see ``bootstrap`` for the
    optimism-corrected values - or ``external ...``), ``n``,
    ``n_events``, ``auc``, ``auc_ci`` [low, high] (DeLong, as R's pROC), ``brier``,
    ``brier_scaled`` (1 - Brier / (ybar (1 - ybar))), ``calibration_in_the_large`` and
    ``_ci`` (R ``glm(y ~ offset(lp))``), ``calibration_intercept``, ``calibration_slope``
    (as R's rms::val.prob) with ``_ci`` (Wald, R ``confint.default``), ``spiegelhalter_z``,
    ``spiegelhalter_p``, ``eavg``, ``e90``, ``emax`` (rms::val.prob)}}. Cohort ``all``
    pools every patient.
``bootstrap_validation.csv``
    rms::validate-style table: ``index, apparent, training, test, optimism, corrected, n``.
``nomogram.png`` + ``nomogram_points.csv``
    The drawing; ``predictor, term, value, points`` per level.
``roc.png`` + ``roc_curves.csv`` (``cohort, curve, threshold, fpr, tpr``), ``roc_auc.csv``
    (``cohort, curve, auc, ci_low, ci_high``) and ``roc_comparison.csv`` (``cohort, curve_a,
    curve_b, auc_a, auc_b, diff, se, z, p_value, ci_low, ci_high``: DeLong's paired test
    between the single predictors only; the nomogram contains them, and DeLong's test is
    invalid for nested models, so its added value is ``lr_test``). Curves are named
    ``nomogram`` and by the predictor's short label, e.g. ``AFP > 20``, ``DL-MVI``.
``calibration.png`` + ``calibration.csv`` (``cohort, bin, n, events, mean_predicted,
    observed, ci_low, ci_high``), ``calibration_smooth.csv`` (``cohort, predicted,
    observed``) and ``calibration_bootstrap.csv`` (``predicted, apparent, corrected,
    optimism, n``; rms::calibrate style, on the fitting data; only with the bootstrap on).
``dca.png`` + ``dca.csv``
    ``cohort, model, threshold, net_benefit, treat_all, treat_none,
    interventions_avoided_per_100, true_positives, false_positives``; thresholds 0.01-0.99;
    models: ``nomogram`` and each binary predictor alone (e.g. ``DL-MVI``, ``AFP > 20``,
    positive = treat), as R's ``dcurves::dca``.
``classification.csv``
    Per cohort (``role``, ``estimate``: apparent where the nomogram was fitted and its
    threshold chosen, external elsewhere) and ``model`` (``nomogram`` at p >= 0.5 and at the Youden
    threshold chosen on the development cohort - all patients without one - and applied
    unchanged elsewhere; each binary predictor at positive = 1): ``rule, threshold, n, tp,
    fp, tn, fn`` and ``sensitivity, specificity, ppv, npv, accuracy`` each with
    ``_ci_low``/``_ci_high`` (exact binomial, R ``binom.test``).
``clinical_summary.json``
    Settings, patients used and dropped, variables selected, synthetic flag, file list.

Curves and tables are per cohort: with ``develop_cohort`` for the development cohort and each
validation cohort; without it for ``all`` patients.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.constants import DL_THRESHOLD, SYNTHETIC_NOTICE
from dlmvi.errors import ClinicalTableError, StatisticsError, StatisticsWarning
from dlmvi.io.atomic import save_figure, write_csv, write_json, write_text
from dlmvi.io.provenance import is_synthetic
from dlmvi.layout import NOMOGRAM_JSON
from dlmvi.stats.config import DEFAULT_VARIABLES, ClinicalConfig
from dlmvi.stats.logistic import fit_logit

__all__ = ["run_clinical", "analyse_clinical", "ClinicalResult", "load_clinical_table", "mvi_outcome",
           "cohort_metrics", "screened_variables"]

OUTCOME = "mvi"
ID = "patient_id"
#: What a cohort's nomogram figures are: in-sample where the nomogram was fitted (its
#: optimism-corrected values are nomogram.json's ``bootstrap``), external elsewhere.
ESTIMATES = {
    "development": "apparent (in-sample: the nomogram was fitted, and its Youden threshold chosen, on these "
                   "patients; optimism-corrected values: bootstrap)",
    "all": "apparent (in-sample: the nomogram was fitted, and its Youden threshold chosen, on these patients; "
           "optimism-corrected values: bootstrap)",
    "validation": "external (the nomogram was fitted on the development cohort only)",
}


def mvi_outcome(table: pd.DataFrame) -> pd.Series:
    """0/1 outcome from ``mvi_grade`` (M0 -> 0; M1, M2 -> 1); NaN where the grade is empty.

    Raises:
        ClinicalTableError: an unknown grade (names the patients).
    """
    from dlmvi.io.tables import MISSING_TOKENS

    g = table["mvi_grade"].astype("string").str.strip().str.upper()
    g = g.mask(g.str.lower().isin(MISSING_TOKENS))
    out = g.map({"M0": 0.0, "M1": 1.0, "M2": 1.0, "0": 0.0, "1": 1.0, "2": 1.0})
    bad = g.notna() & out.isna()
    if bad.any():
        ids = table.loc[bad, ID].astype(str).head(5).tolist() if ID in table else []
        raise ClinicalTableError(
            f"column 'mvi_grade': unknown grades {sorted(set(g[bad]))[:5]} for patients {ids}; "
            "use M0, M1 or M2"
        )
    return out.astype(float)


def load_clinical_table(table, predictions=None, column_map=None, numeric=(),
                        skipped=None) -> tuple[pd.DataFrame, bool]:
    """Read clinical.csv (path or DataFrame), join predictions, add the ``mvi`` outcome.

    A path is read by :func:`dlmvi.io.tables.read_clinical` (the value policy, the column
    map, encodings; any error in the table stops the analysis, naming row and column).
    Predictions (path or DataFrame with ``patient_id`` and ``dl_prob`` and/or ``dl_mvi``) are
    read by :func:`dlmvi.io.tables.read_predictions` and joined by patient id (and cohort
    when both have one); their columns replace same-named columns of the table. ``dl_mvi``
    is derived as ``dl_prob >= DL_THRESHOLD`` (0.5) when only the probability is given.

    Args:
        column_map: a :class:`~dlmvi.io.tables.ColumnMap` (hospital names and units).
        numeric: further columns to read as numbers (configured variables).
        skipped: a :class:`~dlmvi.io.skipped.Skipped` that collects the patients left out
            (unlabelled) and those without a prediction; None: they are named in a warning.

    Returns:
        ``(table, synthetic)``: labelled patients only; synthetic is True when a
        ``cohort.json`` with ``"synthetic": true`` sits beside the table (or one folder up),
        or a ``synthetic`` column is true.
    """
    from dlmvi.io.skipped import Skipped
    from dlmvi.io.tables import TABLE_REQUIRED, read_clinical, read_predictions

    own = skipped is None  # nobody collects them: say who was left out here
    if own:
        skipped = Skipped("the clinical analysis")
    synthetic = False
    if isinstance(table, (str, Path)):
        path = Path(table)
        synthetic = is_synthetic(path)
        table = read_clinical(path, column_map, numeric=tuple(numeric) + ("dl_prob", "dl_mvi")).check().frame
    table = table.copy()
    missing = [c for c in TABLE_REQUIRED if c not in table.columns]
    if missing:
        raise ClinicalTableError(f"clinical table lacks required column(s) {missing}; "
                                 f"it has {list(table.columns)}")
    if "mvi_grade" not in table.columns:
        table["mvi_grade"] = ""
    table[ID] = table[ID].astype(str)
    table["cohort"] = table["cohort"].astype(str)
    dup = table[ID].duplicated(keep=False)
    if dup.any():
        raise ClinicalTableError(f"patient ids repeated in the clinical table: "
                                 f"{sorted(set(table.loc[dup, ID]))[:5]}")
    if "synthetic" in table.columns:
        synthetic = synthetic or bool(table["synthetic"].astype(str).str.lower()
                                      .isin(["1", "true"]).any())
    if predictions is not None:
        if isinstance(predictions, (str, Path)):
            synthetic = synthetic or is_synthetic(Path(predictions))
        predictions = read_predictions(predictions)
        cols = [c for c in ("dl_prob", "dl_mvi") if c in predictions.columns]
        keys = [ID] + (["cohort"] if "cohort" in predictions.columns else [])
        unmatched = ~table.set_index(keys).index.isin(predictions.set_index(keys).index)
        if unmatched.any():
            skipped.extend(table.loc[unmatched, ID], "no DL-MVI prediction (left out of analyses with DL-MVI)")
        table = table.drop(columns=[c for c in cols if c in table.columns])
        table = table.merge(predictions[keys + cols], on=keys, how="left")
    elif any(c in table.columns for c in ("dl_prob", "dl_mvi")):
        cols = [c for c in ("dl_prob", "dl_mvi") if c in table.columns]
        given = table[[ID, *cols]].dropna(subset=cols, how="all")
        checked = read_predictions(given)  # the same rules as a predictions file (dl_prob in 0-1)
        table = table.drop(columns=cols).merge(checked[[ID, *cols, *(["dl_mvi"] if "dl_mvi" not in cols else [])]],
                                               on=ID, how="left")
    if "dl_mvi" not in table.columns and "dl_prob" in table.columns:
        prob = pd.to_numeric(table["dl_prob"], errors="coerce")
        table["dl_mvi"] = np.where(prob.isna(), np.nan, (prob >= DL_THRESHOLD).astype(float))
    table[OUTCOME] = mvi_outcome(table)
    no_grade = table[OUTCOME].isna()
    if no_grade.any():
        skipped.extend(table.loc[no_grade, ID], "no mvi_grade (unlabelled)")
        table = table.loc[~no_grade].reset_index(drop=True)
    if own:
        skipped.warn(StatisticsWarning)
    return table, synthetic


def cohort_metrics(y, prob, level: float = 0.95) -> dict:
    """Validation metrics of predicted probabilities in one cohort (see nomogram.json), from
    :class:`dlmvi.evaluate.performance.ProbabilityMetrics` like every other figure.

    AUC with DeLong CI (R ``pROC``); Brier score and its scaled version, calibration intercept
    and slope with Wald CIs, calibration-in-the-large with its CI, Spiegelhalter's test and
    Eavg/E90/Emax (R ``rms::val.prob`` and ``glm``); NaN where undefined (one class; the slope
    of constant predictions), with a warning.
    """
    from dlmvi.evaluate.performance import ProbabilityMetrics

    m = ProbabilityMetrics.from_predictions(np.asarray(y, dtype=float), np.asarray(prob, dtype=float), level=level)
    for note in m.notes:
        warnings.warn(f"a cohort of {m.n} patients: {note}", StatisticsWarning, stacklevel=2)
    return m.validation()


def _select_variables(table: pd.DataFrame, config: ClinicalConfig) -> list[str]:
    if config.variables is not None:
        missing = [v for v in config.variables if v not in table.columns]
        if missing:
            raise ClinicalTableError(
                f"variables {missing} requested by the configuration are not columns of the "
                f"clinical table (it has {list(table.columns)})")
        variables = list(config.variables)
    else:
        variables = [v for v in DEFAULT_VARIABLES if v in table.columns]
    if "dl_mvi" in table.columns and "dl_mvi" not in variables:
        variables.append("dl_mvi")
    if not variables:
        raise ClinicalTableError("no clinical variables to analyse: the table has none of "
                                 f"{list(DEFAULT_VARIABLES)} and no configured variables")
    return variables


def _nomogram_predictors(table: pd.DataFrame, config: ClinicalConfig) -> list[str]:
    from dlmvi.stats.nomogram import DEFAULT_PREDICTORS

    if config.nomogram_predictors is not None:
        missing = [c for c in config.nomogram_predictors if c not in table.columns]
        if missing:
            raise ClinicalTableError(
                f"nomogram predictors {missing} requested by the configuration are not in the "
                "clinical table or predictions; add them (DL-MVI comes from --predictions)")
        return list(config.nomogram_predictors)
    present = [c for c in DEFAULT_PREDICTORS if c in table.columns]
    absent = [c for c in DEFAULT_PREDICTORS if c not in table.columns]
    if absent:
        warnings.warn(f"nomogram built without {absent} (not in the table; DL-MVI comes from "
                      "--predictions)", StatisticsWarning, stacklevel=3)
    if not present:
        raise ClinicalTableError(f"none of the nomogram predictors {list(DEFAULT_PREDICTORS)} "
                                 "are in the table; configure [nomogram] predictors")
    return present


def screened_variables(univ: pd.DataFrame, config: ClinicalConfig) -> list[str]:
    """The variables of a univariate table (:func:`dlmvi.stats.table1.univariate_table`) that
    enter the multivariate model: likelihood-ratio p below ``config.p_threshold``. The LR test
    stays valid under separation (a level of two patients without MVI is chance, not "as
    associated as can be"); DL-MVI is added by the caller when present."""
    return [v for v in univ.loc[univ["lr_p_value"] < config.p_threshold, "variable"]]


def _multivariate(table, univ, config, variables, develop_cohort=None) -> tuple[pd.DataFrame, list[str]]:
    """Multivariate logistic model of the variables whose univariate likelihood-ratio p is below
    the threshold (``univariate.csv``'s ``lr_p_value``: valid under separation).

    With a development cohort both the univariate screen and the fit use only its patients
    (the other cohorts stay external); otherwise all patients. When a selected variable
    separates the outcome in the model, only its (and a diverging intercept's) rows say "not
    estimable", a warning names it, and Firth's penalised fit of the same model is attached as
    ``attrs["firth"]`` (written as ``multivariate_firth.csv``).
    """
    from dlmvi.stats.logistic import METHODS
    from dlmvi.stats.nomogram import NomogramModel
    from dlmvi.stats.table1 import univariate_table

    fitted_on = "all"
    if develop_cohort is not None:
        fitted_on = str(develop_cohort)
        table = table[table["cohort"] == fitted_on].reset_index(drop=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StatisticsWarning)  # reported by Table 1 already
            univ = univariate_table(table, OUTCOME, variables, config.cutoffs, id_column=ID,
                                    level=config.level, method=config.method)
    selected = screened_variables(univ, config)
    if "dl_mvi" in variables and "dl_mvi" not in selected:
        selected.append("dl_mvi")
    cols = ["variable", "term", "coef", "se", "z", "odds_ratio", "ci_low", "ci_high",
            "p_value", "n", "n_events", "n_dropped", "cohort", "method", "note"]
    if not selected:
        warnings.warn(f"no variable has univariate p < {config.p_threshold}; the multivariate "
                      "model is empty", StatisticsWarning, stacklevel=3)
        return pd.DataFrame(columns=cols), selected
    helper = NomogramModel(selected, cutoffs=config.cutoffs)
    data = helper.transform(table)
    data[OUTCOME] = table[OUTCOME].to_numpy()
    data[ID] = table[ID].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StatisticsWarning)  # separation: named below, with the remedy
        res = fit_logit(data, OUTCOME, selected, id_column=ID, level=config.level, method=config.method)
    out = _summary_rows(res, helper, selected, fitted_on, METHODS[config.method], cols)
    if res.not_estimable:
        named = [v for v in res.not_estimable if v != "(Intercept)"]
        warnings.warn(
            f"multivariate model ({fitted_on}): {', '.join(named)} separate(s) the outcome (a level with only patients "
            "with, or only without, MVI): no maximum-likelihood estimate for "
            f"{', '.join(res.not_estimable)}; Firth's penalised fit of the same model is in multivariate_firth.csv "
            "(or run the analysis with method = \"firth\")", StatisticsWarning, stacklevel=3)
        firth = fit_logit(data, OUTCOME, selected, id_column=ID, level=config.level, method="firth")
        out.attrs["firth"] = _summary_rows(firth, helper, selected, fitted_on, METHODS["firth"], cols)
        out.attrs["separated"] = named
    return out, selected


def _summary_rows(res, helper, selected, fitted_on: str, method: str, cols) -> pd.DataFrame:
    """multivariate.csv's rows of one fit; terms without a finite estimate say so."""
    from dlmvi.stats.logistic import NOT_ESTIMABLE

    out = res.summary.copy()
    out.insert(1, "term", ["(Intercept)"] + [helper.term(c) for c in selected])
    out["n"], out["n_events"], out["n_dropped"] = res.n, res.n_events, len(res.dropped)
    out["cohort"], out["method"], out["note"] = fitted_on, method, ""
    bad = out["variable"].isin(res.not_estimable)
    out.loc[bad, ["coef", "se", "z", "odds_ratio", "ci_low", "ci_high", "p_value"]] = np.nan
    out.loc[bad, "note"] = NOT_ESTIMABLE
    return out[cols]


@dataclass
class CohortFigures:
    """The computed curves of one cohort (displays hold numbers; the writer draws them).

    Attributes:
        label: panel title, e.g. ``"2018 (validation, n = 172)"``.
        roc, calibration, dca: the displays, or None when the cohort has too few patients
            with or without MVI (``skipped`` says so).
    """

    label: str
    roc: object = None
    calibration: object = None
    dca: object = None
    skipped: str | None = None


@dataclass
class ClinicalResult:
    """Everything :func:`analyse_clinical` computes; :meth:`write` turns it into the files of
    the module docstring and :meth:`read` reads those files back (the report uses that).

    Tables are the CSVs' contents; ``nomogram`` is nomogram.json; ``summary`` is
    clinical_summary.json. ``model``, ``nomogram_display`` and ``figures`` exist only on a
    freshly computed result (they are needed to draw).
    """

    synthetic: bool
    univariate: pd.DataFrame
    table1_title: str
    multivariate: pd.DataFrame
    nomogram: dict
    nomogram_points: pd.DataFrame
    roc_curves: pd.DataFrame
    roc_auc: pd.DataFrame
    roc_comparison: pd.DataFrame
    calibration: pd.DataFrame
    calibration_smooth: pd.DataFrame
    dca: pd.DataFrame
    summary: dict
    bootstrap_validation: pd.DataFrame | None = None
    calibration_bootstrap: pd.DataFrame | None = None
    classification: pd.DataFrame | None = None
    multivariate_firth: pd.DataFrame | None = None
    model: object = None
    nomogram_display: object = None
    figures: dict = field(default_factory=dict)

    @property
    def selected(self) -> list[str]:
        return list(self.summary.get("multivariate_selected", []))

    # -- files ------------------------------------------------------------------------------
    def write(self, out_dir) -> dict[str, str]:
        """Write every table, figure and JSON into ``out_dir``; returns {name: path}."""
        from dlmvi.evaluate.display import subplots

        from dlmvi.stats.table1 import render_table1

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        notice = SYNTHETIC_NOTICE if self.synthetic else None
        files: dict[str, str] = {}

        def put(name, path):
            files[name] = str(path)

        first = ["variable", "odds_ratio", "ci_low", "ci_high", "p_value"]
        univ = self.univariate
        put("univariate", write_csv(out / FILES["univariate"], univ[first + [c for c in univ.columns if c not in first]]))
        method = (self.summary.get("config") or {}).get("method", "ml")
        put("table1_html", write_text(out / "table1.html", render_table1(univ, "html", self.table1_title, notice,
                                                                         method)))
        put("table1_md", write_text(out / "table1.md", render_table1(univ, "markdown", self.table1_title, notice,
                                                                     method)))
        put("multivariate", write_csv(out / FILES["multivariate"], self.multivariate))
        if self.multivariate_firth is not None:
            put("multivariate_firth", write_csv(out / FILES["multivariate_firth"], self.multivariate_firth))
        if self.bootstrap_validation is not None:
            put("bootstrap_validation", write_csv(out / FILES["bootstrap_validation"], self.bootstrap_validation))
        if self.calibration_bootstrap is not None:
            put("calibration_bootstrap", write_csv(out / FILES["calibration_bootstrap"], self.calibration_bootstrap))
        put("nomogram_json", write_json(out / FILES["nomogram_json"], self.nomogram))

        if self.nomogram_display is not None:
            put("nomogram_points", write_csv(out / FILES["nomogram_points"], self.nomogram_points))
            n_pred = self.nomogram_points["predictor"].nunique()
            fig, ax = subplots(figsize=(8, 0.7 * (n_pred + 3) + 0.8))
            self.nomogram_display.plot(ax=ax)
            put("nomogram_png", save_figure(fig, out / "nomogram.png"))
        if self.figures:
            n_panels = len(self.figures)
            fig_roc, axs_roc = subplots(1, n_panels, figsize=(5 * n_panels, 5), squeeze=False)
            fig_cal, axs_cal = subplots(1, n_panels, figsize=(5 * n_panels, 5), squeeze=False)
            fig_dca, axs_dca = subplots(1, n_panels, figsize=(6 * n_panels, 4.5), squeeze=False)
            for i, f in enumerate(self.figures.values()):
                if f.skipped:
                    for a in (axs_roc[0, i], axs_cal[0, i], axs_dca[0, i]):
                        a.set_title(f"{f.label}: {f.skipped}", fontsize=9)
                        a.axis("off")
                    continue
                f.roc.plot(ax=axs_roc[0, i])
                f.calibration.plot(ax=axs_cal[0, i])
                f.dca.plot(ax=axs_dca[0, i])
        for name in ("roc_curves", "roc_auc", "roc_comparison", "calibration", "calibration_smooth", "dca",
                     "classification"):
            if getattr(self, name) is not None:
                put(name, write_csv(out / FILES[name], getattr(self, name)))
        if self.figures:
            for fig, name in ((fig_roc, "roc"), (fig_cal, "calibration"), (fig_dca, "dca")):
                if self.synthetic:
                    fig.suptitle(SYNTHETIC_NOTICE, color="#b00", fontsize=8)
                put(f"{name}_png", save_figure(fig, out / f"{name}.png"))
        files["clinical_summary"] = str(out / FILES["clinical_summary"])
        summary = dict(self.summary, files={k: Path(v).name for k, v in files.items()})
        write_json(out / FILES["clinical_summary"], summary)
        return files

    @classmethod
    def read(cls, out_dir) -> "ClinicalResult":
        """The result written by :meth:`write` (tables and JSON; no model, nothing to draw).

        Raises:
            StatisticsError: ``out_dir`` holds no clinical analysis (no nomogram.json), or the
                analysis failed (nomogram.json records the error).
        """
        out = Path(out_dir)
        nomogram = _read_json(out / FILES["nomogram_json"])
        if nomogram is None:
            raise StatisticsError(f"{out}: no {FILES['nomogram_json']}; run `dlmvi clinical`")
        if "error" in nomogram:
            raise StatisticsError(nomogram["error"])
        summary = _read_json(out / FILES["clinical_summary"]) or {}

        def csv(name):
            p = out / FILES[name]
            return pd.read_csv(p, dtype={"cohort": str, "variable": str}) if p.is_file() else None

        univ = None
        if (out / FILES["univariate"]).is_file():
            univ = pd.read_csv(out / FILES["univariate"], dtype={c: str for c in ("variable", "label", "kind",
                                                                                  "level0", "level1", "note")},
                               keep_default_na=False, na_values=[""])
            counts = ["n", "n_events", "absent_level0", "present_level0", "absent_level1", "present_level1"]
            univ[counts] = univ[counts].astype("Int64")
        n = summary.get("n_patients", "?")
        tag = " [SYNTHETIC]" if summary.get("synthetic") else ""
        return cls(synthetic=bool(summary.get("synthetic", nomogram.get("synthetic", False))),
                   univariate=univ if univ is not None else pd.DataFrame(),
                   table1_title=f"Table 1. Univariate analysis of MVI (n = {n}){tag}",
                   multivariate=csv("multivariate"), nomogram=nomogram,
                   nomogram_points=csv("nomogram_points"), roc_curves=csv("roc_curves"),
                   roc_auc=csv("roc_auc"), roc_comparison=csv("roc_comparison"),
                   calibration=csv("calibration"), calibration_smooth=csv("calibration_smooth"),
                   dca=csv("dca"), summary=summary, bootstrap_validation=csv("bootstrap_validation"),
                   calibration_bootstrap=csv("calibration_bootstrap"), classification=csv("classification"),
                   multivariate_firth=csv("multivariate_firth"))


#: File names of the clinical analysis (see the module docstring).
FILES = {
    "univariate": "univariate.csv", "multivariate": "multivariate.csv", "nomogram_json": NOMOGRAM_JSON,
    "bootstrap_validation": "bootstrap_validation.csv", "calibration_bootstrap": "calibration_bootstrap.csv",
    "nomogram_points": "nomogram_points.csv", "roc_curves": "roc_curves.csv", "roc_auc": "roc_auc.csv",
    "roc_comparison": "roc_comparison.csv", "calibration": "calibration.csv",
    "calibration_smooth": "calibration_smooth.csv", "dca": "dca.csv", "clinical_summary": "clinical_summary.json",
    "classification": "classification.csv", "multivariate_firth": "multivariate_firth.csv",
}

#: Columns of classification.csv.
CLASSIFICATION_COLUMNS = [
    "cohort", "role", "estimate", "model", "rule", "threshold", "n", "tp", "fp", "tn", "fn",
    *[f"{m}{s}" for m in ("sensitivity", "specificity", "ppv", "npv", "accuracy")
      for s in ("", "_ci_low", "_ci_high")],
]


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def analyse_clinical(table, predictions=None, develop_cohort: str | None = None,
                     config: ClinicalConfig | None = None, *, synthetic: bool | None = None,
                     column_map=None) -> ClinicalResult:
    """Compute the whole clinical analysis (nothing is written; see :meth:`ClinicalResult.write`).

    Args:
        table: clinical.csv path or DataFrame (one row per patient).
        predictions: predictions.csv path or DataFrame from ``dlmvi predict`` (optional;
            ``dl_prob``/``dl_mvi`` may already be columns of ``table``).
        develop_cohort: screen and fit the multivariate model, fit the nomogram and choose
            its Youden threshold on this cohort, and validate on the others (Table 1 stays
            descriptive of all patients); None = fit on all patients with bootstrap optimism
            correction.
        config: analysis settings (default :class:`~dlmvi.stats.config.ClinicalConfig()`).
        synthetic: force the synthetic-data label; None = detect it from ``cohort.json``.
        column_map: the hospital's column names and units (:class:`~dlmvi.io.tables.ColumnMap`,
            ``--columns``) for a table given as a path.

    Patients without an MVI grade (unlabelled) or without a prediction are left out; they are
    listed in ``summary["skipped"]`` (``run_clinical`` writes them to ``skipped.csv``).

    Raises:
        ClinicalTableError: missing/non-numeric columns, unknown grades or cohort.
        StatisticsError: the outcome has one class only, or a model cannot be fitted.
    """
    from dlmvi.io.skipped import Skipped
    from dlmvi.stats.table1 import VARIABLE_LABELS, univariate_table

    config = config or ClinicalConfig()
    skipped = Skipped("the clinical analysis")
    wanted = [*(config.variables or ()), *(config.nomogram_predictors or ())]
    data, detected = load_clinical_table(table, predictions, column_map=column_map, numeric=wanted,
                                         skipped=skipped)
    synthetic = detected if synthetic is None else bool(synthetic)
    tag = " [SYNTHETIC]" if synthetic else ""
    labels = {**VARIABLE_LABELS, **config.labels}
    if data[OUTCOME].nunique() < 2:
        raise StatisticsError(f"all {len(data)} patients have the same MVI status; the "
                              "clinical analysis needs patients with and without MVI")

    # 1. univariate / Table 1 (all patients, descriptive)
    variables = _select_variables(data, config)
    univ = univariate_table(data, OUTCOME, variables, config.cutoffs, id_column=ID,
                            labels=labels, level=config.level, method=config.method)
    cohorts = sorted(data["cohort"].unique())
    develop_cohort = _check_develop_cohort(develop_cohort, cohorts)

    # 2. multivariate (screened and fitted on the development cohort when there is one)
    multi, selected = _multivariate(data, univ, config, variables, develop_cohort)

    # 3. nomogram: fit, added value of each input (LR test), validate per cohort, bootstrap
    preds = _nomogram_predictors(data, config)
    model, fit_data = _fit_nomogram(data, preds, config, develop_cohort)
    data["nomogram_prob"] = model.predict_proba(data)
    fit_summary = _model_fit(model, fit_data, preds)
    groups, roles = _cohort_groups(data, cohorts, develop_cohort)
    validation = _validation(groups, roles, config.level)
    boot_meta, bv_csv, boot_curve = _bootstrap(model, fit_data, preds, config)
    nomo = model.to_json(validation, develop_cohort=develop_cohort, synthetic=synthetic,
                         bootstrap=boot_meta, **fit_summary)

    # 4. the numbers behind the figures
    short = _short_labels(model, preds, labels)
    disp = _nomogram_display(model, short, tag)
    dev_name = develop_cohort if develop_cohort is not None else "all"
    youden = _nomogram_youden(groups[dev_name])
    nomo["youden_threshold"] = {"threshold": youden, "chosen_on": dev_name}
    curves, figures = _cohort_curves(data, groups, roles, model, short, config, boot_curve=boot_curve,
                                     develop_cohort=develop_cohort, youden=youden, tag=tag)
    summary = _clinical_summary(data, synthetic, cohorts, develop_cohort, variables, selected, multi, preds,
                                model, config, skipped)
    return ClinicalResult(
        synthetic=synthetic, univariate=univ,
        table1_title=f"Table 1. Univariate analysis of MVI (n = {len(data)}){tag}",
        multivariate=multi, multivariate_firth=multi.attrs.get("firth"), nomogram=nomo,
        nomogram_points=disp.points if disp is not None else pd.DataFrame(columns=["predictor", "term", "value", "points"]),
        **curves.frames(),
        summary=summary, bootstrap_validation=bv_csv, calibration_bootstrap=boot_curve,
        model=model, nomogram_display=disp, figures=figures)


def _check_develop_cohort(develop_cohort, cohorts: list[str]) -> str | None:
    """The development cohort as text (None stays None); it must be one of ``cohorts``."""
    if develop_cohort is not None:
        develop_cohort = str(develop_cohort)
        if develop_cohort not in cohorts:
            raise ClinicalTableError(f"development cohort {develop_cohort!r} not in the table "
                                     f"(cohorts: {cohorts})")
    return develop_cohort


def _fit_nomogram(data: pd.DataFrame, preds: list[str], config: ClinicalConfig, develop_cohort: str | None):
    """The nomogram fitted on the development cohort (all patients without one): ``(model,
    the patients it was fitted on)``."""
    from dlmvi.stats.nomogram import NomogramModel

    fit_data = (data[data["cohort"] == develop_cohort].reset_index(drop=True)
                if develop_cohort is not None else data)
    model = NomogramModel(preds, cutoffs=config.cutoffs, level=config.level, id_column=ID,
                          method=config.method)
    model.fit(fit_data, outcome=OUTCOME)
    return model, fit_data


def _cohort_groups(data: pd.DataFrame, cohorts: list[str],
                   develop_cohort: str | None) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """The patients of each cohort the nomogram is validated in and its role there: the
    development cohort first, then the validation cohorts; without one ``all`` patients, then
    each cohort (in-sample)."""
    groups: dict[str, pd.DataFrame] = {}
    roles: dict[str, str] = {}
    if develop_cohort is not None:
        for c in [develop_cohort] + [c for c in cohorts if c != develop_cohort]:
            groups[c] = data[data["cohort"] == c]
            roles[c] = "development" if c == develop_cohort else "validation"
    else:
        groups["all"] = data
        roles["all"] = "all"
        if len(cohorts) > 1:
            for c in cohorts:
                groups[c] = data[data["cohort"] == c]
                roles[c] = "all"  # fitted on all patients, so each cohort is in-sample
    return groups, roles


def _validation(groups: dict[str, pd.DataFrame], roles: dict[str, str], level: float) -> dict:
    """nomogram.json's ``validation``: the nomogram's metrics in each cohort."""
    validation = {}
    for name, g in groups.items():
        m = cohort_metrics(g[OUTCOME], g["nomogram_prob"], level)
        validation[name] = {"role": roles[name], "estimate": ESTIMATES[roles[name]], **m}
    return validation


def _bootstrap(model, fit_data: pd.DataFrame, preds: list[str], config: ClinicalConfig):
    """The bootstrap optimism correction on the fitting data: ``(bootstrap entry of
    nomogram.json, bootstrap_validation.csv, calibration_bootstrap.csv)``; all None when
    ``config.n_bootstrap`` is 0 (the curve also when 10 patients or fewer)."""
    from dlmvi.stats.calibration import bootstrap_calibration_curve, bootstrap_predictions, bootstrap_validate

    boot_meta = bv_csv = boot_curve = None
    fit_inputs = fit_data[[ID, *preds, OUTCOME]].dropna(subset=[*preds, OUTCOME])
    if config.n_bootstrap > 0:
        y_fit = fit_inputs[OUTCOME].to_numpy()
        boot = bootstrap_predictions(model, fit_inputs, y_fit, B=config.n_bootstrap,
                                     seed=config.seed)
        bv = bootstrap_validate(model, fit_inputs, y_fit, boot=boot)
        bv_csv = bv.reset_index()
        boot_meta = {"B": config.n_bootstrap, "seed": config.seed,
                     **{k: float(bv.loc[k, "corrected"]) for k in bv.index},
                     "apparent": {k: float(bv.loc[k, "apparent"]) for k in bv.index}}
        if len(fit_inputs) > 10:
            boot_curve = bootstrap_calibration_curve(model, fit_inputs, y_fit, boot=boot)
    return boot_meta, bv_csv, boot_curve


def _short_labels(model, preds: list[str], labels: dict[str, str]) -> dict[str, str]:
    """Curve names of the nomogram inputs: "AFP (ng/mL)" -> "AFP > 20"; "DL-MVI" stays."""
    def short(c):
        name = labels.get(c, c).split(" (")[0]
        cut = model.cutoffs_.get(c)
        return name if cut is None else f"{name} > {cut:g}"

    return {c: short(c) for c in preds}


def _nomogram_display(model, short: dict[str, str], tag: str):
    """The nomogram's drawing, or None (with a warning) when there is nothing to draw."""
    from dlmvi.stats.nomogram import NomogramDisplay

    try:
        return NomogramDisplay.from_model(model, labels=short, title=f"Nomogram: {model.formula_}{tag}")
    except StatisticsError as exc:  # e.g. every coefficient 0: nothing to draw, the numbers stand
        warnings.warn(f"nomogram not drawn: {exc}", StatisticsWarning, stacklevel=3)
        return None


def _nomogram_youden(dev_group: pd.DataFrame) -> float:
    """The nomogram's Youden threshold, chosen once on the development cohort (all patients
    without one; NaN with one class) and applied unchanged to every other cohort."""
    from dlmvi.evaluate.classification import youden_threshold

    dev = dev_group[[OUTCOME, "nomogram_prob"]].dropna()
    return (youden_threshold(dev[OUTCOME], dev["nomogram_prob"])
            if dev[OUTCOME].nunique() == 2 else float("nan"))


def _lead_columns(frames: list[pd.DataFrame], lead: list[str], empty_cols: list[str]) -> pd.DataFrame:
    """The frames stacked with the ``lead`` columns first (only the columns when none)."""
    if not frames:
        return pd.DataFrame(columns=lead + empty_cols)
    f = pd.concat(frames, ignore_index=True)
    return f[lead + [c for c in f.columns if c not in lead]]


@dataclass
class _CurveRows:
    """The rows of roc_curves, roc_auc, roc_comparison, calibration, calibration_smooth, dca
    and classification.csv, filled cohort by cohort by :func:`_cohort_curves`."""

    curves: list = field(default_factory=list)
    auc: list = field(default_factory=list)
    comparison: list = field(default_factory=list)
    calibration: list = field(default_factory=list)
    smooth: list = field(default_factory=list)
    dca: list = field(default_factory=list)
    classification: list = field(default_factory=list)

    def frames(self) -> dict[str, pd.DataFrame]:
        """The tables, named as the fields of :class:`ClinicalResult`."""
        return dict(
            roc_curves=_lead_columns(self.curves, ["cohort", "curve"], ["threshold", "fpr", "tpr"]),
            roc_auc=pd.DataFrame(self.auc, columns=["cohort", "curve", "auc", "ci_low", "ci_high"]),
            roc_comparison=pd.DataFrame(self.comparison, columns=["cohort", "curve_a", "curve_b", "auc_a", "auc_b",
                                                                  "diff", "se", "z", "p_value", "ci_low", "ci_high"]),
            calibration=_lead_columns(self.calibration, ["cohort"], ["bin", "n", "events", "mean_predicted",
                                                                     "observed", "ci_low", "ci_high"]),
            calibration_smooth=_lead_columns(self.smooth, ["cohort"], ["predicted", "observed"]),
            dca=_lead_columns(self.dca, ["cohort", "model", "threshold", "net_benefit", "treat_all"],
                              ["treat_none", "interventions_avoided_per_100", "true_positives", "false_positives"]),
            classification=pd.DataFrame(self.classification, columns=CLASSIFICATION_COLUMNS),
        )


def _cohort_curves(data: pd.DataFrame, groups: dict[str, pd.DataFrame], roles: dict[str, str], model,
                   short: dict[str, str], config: ClinicalConfig, *, boot_curve, develop_cohort: str | None,
                   youden: float, tag: str) -> tuple[_CurveRows, dict[str, CohortFigures]]:
    """ROC, calibration, decision curves and classification of the nomogram and its single
    inputs in the development and each validation cohort, or in all patients pooled (without a
    development cohort); a cohort with fewer than two patients with or without MVI is skipped,
    with a warning."""
    fig_groups = groups if develop_cohort is not None else {"all": groups["all"]}
    preds = list(short)
    inputs = model.transform(data)
    binary = [c for c in preds if set(inputs[c].dropna().unique()) <= {0.0, 1.0}]
    dev_name = develop_cohort if develop_cohort is not None else "all"
    rows = _CurveRows()
    figures: dict[str, CohortFigures] = {}
    for name, g in fig_groups.items():
        scores = {"nomogram": g["nomogram_prob"]}
        for c in preds:
            scores[short[c]] = inputs.loc[g.index, c]
        frame = pd.DataFrame(scores)
        frame[OUTCOME] = g[OUTCOME].to_numpy()
        frame = frame.dropna()
        y = frame[OUTCOME].to_numpy()
        label = f"{name} ({roles[name]}, n = {len(frame)}){tag}"
        if len(frame) == 0 or y.min() == y.max() or min(y.sum(), (1 - y).sum()) < 2:
            warnings.warn(f"cohort {name}: too few patients with or without MVI for ROC, "
                          "calibration and decision curves; skipped", StatisticsWarning,
                          stacklevel=3)
            figures[name] = CohortFigures(label, skipped="too few patients")
            continue
        roc = _roc_rows(rows, name, y, frame, [k for k in scores], label, config.level)
        p = frame["nomogram"].to_numpy()
        corrected = boot_curve if name in ("all", develop_cohort) else None
        tests = {short[c]: frame[short[c]].to_numpy() for c in binary}
        cal, dca = _calibration_and_dca_rows(rows, name, y, p, tests, label, config.n_bins, corrected)
        _classification_rows(rows, name, roles[name], y, p, tests, youden, dev_name, config.level)
        figures[name] = CohortFigures(label, roc=roc, calibration=cal, dca=dca)
    return rows, figures


def _roc_rows(rows: _CurveRows, name: str, y: np.ndarray, frame: pd.DataFrame, names: list[str], label: str,
              level: float):
    """One cohort's ROC curves, AUCs and DeLong comparisons (added to ``rows``); returns the display."""
    from dlmvi.evaluate.roc import RocDisplay, delong_test

    roc = RocDisplay.from_predictions(y, {k: frame[k].to_numpy() for k in names},
                                      title=label)
    rows.curves.append(roc.to_frame().assign(cohort=name))
    for k, (a, lo, hi) in roc.aucs.items():
        rows.auc.append({"cohort": name, "curve": k, "auc": a, "ci_low": lo, "ci_high": hi})
    # DeLong only between non-nested scores: the single predictors among themselves (the
    # nomogram contains each of them; its added value is the LR test in nomogram.json)
    singles = names[1:]
    for i, ka in enumerate(singles):
        for kb in singles[i + 1:]:
            t = delong_test(y, frame[ka].to_numpy(), frame[kb].to_numpy(), level=level)
            rows.comparison.append({"cohort": name, "curve_a": ka, "curve_b": kb,
                                    "auc_a": t["auc1"], "auc_b": t["auc2"], "diff": t["diff"],
                                    "se": t["se"], "z": t["z"], "p_value": t["p"],
                                    "ci_low": t["ci_low"], "ci_high": t["ci_high"]})
    return roc


def _calibration_and_dca_rows(rows: _CurveRows, name: str, y: np.ndarray, p: np.ndarray,
                              tests: dict[str, np.ndarray], label: str, n_bins: int, corrected):
    """One cohort's calibration (binned and smooth) and decision curves (added to ``rows``);
    returns the two displays."""
    from dlmvi.stats.calibration import CalibrationDisplay
    from dlmvi.stats.decision import DecisionCurveDisplay

    cal = CalibrationDisplay.from_predictions(y, p, n_bins=n_bins, title=label, corrected=corrected)
    rows.calibration.append(cal.table.assign(cohort=name))
    rows.smooth.append(cal.smooth.assign(cohort=name))
    dca = DecisionCurveDisplay.from_predictions(y, {"nomogram": p, **tests}, title=label)
    for k, curve in dca.curves.items():
        rows.dca.append(curve.assign(cohort=name, model=k))
    return cal, dca


def _classification_rows(rows: _CurveRows, name: str, role: str, y: np.ndarray, p: np.ndarray,
                         tests: dict[str, np.ndarray], youden: float, dev_name: str, level: float) -> None:
    """One cohort's classification.csv rows: the nomogram at p >= 0.5 and at the Youden
    threshold of ``dev_name``, each binary input at positive = 1."""
    from dlmvi.evaluate.classification import classification_metrics

    rules = [("nomogram", "p >= 0.5", 0.5, p >= 0.5)]
    if np.isfinite(youden):
        rules.append(("nomogram", f"p >= {youden:.4g} (Youden, {dev_name})", youden, p >= youden))
    rules += [(k, f"{k} (positive = 1)", 0.5, v >= 0.5) for k, v in tests.items()]
    for model_name, rule, thr, positive in rules:
        rows.classification.append({"cohort": name, "role": role, "estimate": ESTIMATES[role].split(" (")[0],
                                    "model": model_name, "rule": rule, "threshold": thr,
                                    **classification_metrics(y, positive, level)})


def _clinical_summary(data: pd.DataFrame, synthetic: bool, cohorts: list[str], develop_cohort: str | None,
                      variables: list[str], selected: list[str], multi: pd.DataFrame, preds: list[str], model,
                      config: ClinicalConfig, skipped) -> dict:
    """clinical_summary.json (without its file list, which :meth:`ClinicalResult.write` adds)."""
    return {
        "synthetic": synthetic,
        "n_patients": int(len(data)),
        "n_events": int(data[OUTCOME].sum()),
        "cohorts": cohorts,
        "develop_cohort": develop_cohort,
        "variables": variables,
        "multivariate_selected": selected,
        "multivariate_screen": (f"univariate likelihood-ratio test p < {config.p_threshold:g} "
                                + ("(Firth's penalised LR test, as R logistf)" if config.method == "firth" else
                                   "(R anova(glm(y ~ 1), glm(y ~ x), test = \"LRT\"); valid under separation)")),
        "multivariate_separated": multi.attrs.get("separated", []),
        "multivariate_fitted_on": develop_cohort if develop_cohort is not None else "all",
        "nomogram_predictors": preds,
        "nomogram_n": model.n_,
        "nomogram_dropped": model.result_.dropped,
        "config": config.to_dict(),
        "skipped": skipped.rows + [{"patient_id": str(p), "reason": "missing nomogram input "
                                    f"({', '.join(preds)}); left out of the nomogram fit"}
                                   for p in model.result_.dropped if str(p) not in set(skipped.ids)],
    }


def _model_fit(model, fit_data: pd.DataFrame, preds: list[str]) -> dict:
    """nomogram.json's ``lr_test`` (DL-MVI added to the other inputs, R ``anova(glm0, glm1,
    test = "LRT")``), ``aic``, ``nagelkerke_r2`` and ``model_lr`` (R ``rms::lrm``), all from
    the maximum-likelihood fit on the development data."""
    from dlmvi.stats.logistic import lr_test, model_fit_indexes

    inputs = model.transform(fit_data)
    inputs[OUTCOME] = fit_data[OUTCOME].to_numpy()
    inputs[ID] = fit_data[ID].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StatisticsWarning)  # the nomogram fit reported them
        ml = model.result_ if model.method == "ml" else fit_logit(inputs, OUTCOME, preds, id_column=ID)
    out = model_fit_indexes(ml)
    added = "dl_mvi" if "dl_mvi" in preds else preds[-1]
    base = [c for c in preds if c != added]
    out["lr_test"] = lr_test(inputs, OUTCOME, base, [added], id_column=ID)
    return out


def run_clinical(table, out_dir, predictions=None, develop_cohort: str | None = None,
                 config: ClinicalConfig | None = None, *,
                 synthetic: bool | None = None, column_map=None) -> dict:
    """Compute the clinical analysis and write its files (see the module docstring).

    Arguments as :func:`analyse_clinical`; ``out_dir`` is the output folder, built aside and
    moved into place when everything is written (an earlier output there is replaced; a
    failure leaves nothing). ``skipped.csv`` lists the patients left out and why.

    Returns:
        dict with ``files`` ({name: path}), ``nomogram`` (the JSON dict) and
        ``selected`` (multivariate variables).
    """
    from dlmvi.io.atomic import atomic_dir
    from dlmvi.io.skipped import SKIPPED_CSV, Skipped

    result = analyse_clinical(table, predictions, develop_cohort, config, synthetic=synthetic,
                              column_map=column_map)
    out = Path(out_dir)
    skipped = Skipped("the clinical analysis", list(result.summary.get("skipped", [])))
    with atomic_dir(out, marker=FILES["nomogram_json"]) as tmp:  # a failure leaves nothing
        written = result.write(tmp)
        written["skipped"] = skipped.write(tmp / SKIPPED_CSV)
    files = {k: str(out / Path(v).relative_to(tmp)) for k, v in written.items()}
    skipped.warn(StatisticsWarning, out / SKIPPED_CSV)
    return {"files": files, "nomogram": result.nomogram, "selected": result.selected, "result": result}
