"""Logistic regression of MVI on clinical variables, with Wald intervals (maximum likelihood by
dlmvi's one fitter, :func:`dlmvi.evaluate.logit.fit_binomial`: statsmodels ``Logit``).

Two methods:

* ``method="ml"`` (default): maximum likelihood, as R's ``glm(family = binomial)`` with
  ``confint.default`` (Wald CIs) and ``summary()``'s Wald p-values.
* ``method="firth"``: Firth's penalised likelihood (firthmodels' ``FirthLogisticRegression``),
  as R's ``logistf``: coefficients, standard errors from the inverse Fisher information,
  profile penalised-likelihood CIs and penalised likelihood-ratio p-values. Estimates stay
  finite under separation.

Separation (an infinite maximum-likelihood estimate) is detected exactly by Konis' linear
program (firthmodels' ``detect_separation``, as R's ``detectseparation``), not guessed from
the size of a coefficient. Fits are complete-case: rows with a missing outcome or predictor
are dropped with a :class:`~dlmvi.errors.StatisticsWarning` saying how many and which.
Unreliable fits (separation under maximum likelihood, fewer than 10 events per variable)
also warn; impossible ones (one outcome class, a constant predictor, a non-numeric or missing
column) raise :class:`~dlmvi.errors.StatisticsError` / :class:`~dlmvi.errors.ClinicalTableError`.
:func:`lr_test` compares nested models (R ``anova(glm0, glm1, test = "LRT")``);
:func:`model_fit_indexes` gives ``rms::lrm``'s model LR, AIC and Nagelkerke R2.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from dlmvi.errors import ClinicalTableError, StatisticsError, StatisticsWarning

__all__ = [
    "LogitResult",
    "require_numeric",
    "fit_logit",
    "univariate_logit",
    "lr_test",
    "model_fit_indexes",
    "SUMMARY_COLUMNS",
    "METHODS",
    "NOT_ESTIMABLE",
    "null_loglik",
]

#: Columns of every per-variable summary table (univariate.csv, multivariate.csv).
SUMMARY_COLUMNS = ("variable", "coef", "se", "z", "odds_ratio", "ci_low", "ci_high", "p_value")

#: Fitting methods and how their intervals and p-values are obtained.
METHODS = {
    "ml": "maximum likelihood; Wald CI and p",
    "firth": "Firth penalised likelihood; profile penalised-likelihood CI, penalised LR p",
}

#: What tables print instead of an infinite maximum-likelihood odds ratio.
NOT_ESTIMABLE = "not estimable (separation)"


def _row_names(frame: pd.DataFrame, mask: np.ndarray, id_column: str, limit: int = 5) -> str:
    """Name the first offending rows by patient id when there is one, else by row index."""
    rows = frame.loc[mask]
    if id_column in frame.columns:
        names = [f"patient {v}" for v in rows[id_column].astype(str).head(limit)]
    else:
        names = [f"row {v}" for v in rows.index[:limit]]
    more = f" and {int(mask.sum()) - limit} more" if mask.sum() > limit else ""
    return ", ".join(names) + more


def require_numeric(frame: pd.DataFrame, columns: Sequence[str],
                    id_column: str = "patient_id") -> pd.DataFrame:
    """Check that ``columns`` exist and hold numbers (NaN allowed); return them as float.

    Raises:
        ClinicalTableError: a column is missing, or holds text that is not a number (the
            message names the column and the first offending patients).
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ClinicalTableError(
            f"column(s) {missing} requested for the analysis are not in the clinical table "
            f"(it has: {list(frame.columns)}); add them or remove them from the configuration"
        )
    out = {}
    for col in columns:
        raw = frame[col]
        num = pd.to_numeric(raw, errors="coerce")
        bad = (num.isna() & raw.notna()).to_numpy()
        if bad.any():
            examples = ", ".join(repr(v) for v in raw[bad].head(3))
            raise ClinicalTableError(
                f"column {col!r}: non-numeric values ({examples}) at "
                f"{_row_names(frame, bad, id_column)}; fix them or leave the cell empty"
            )
        out[col] = num.astype(float)
    return pd.DataFrame(out, index=frame.index)


@dataclass
class LogitResult:
    """A fitted logistic regression.

    Attributes:
        summary: one row per term, ``(Intercept)`` first, columns :data:`SUMMARY_COLUMNS`.
        params: coefficients (log odds), indexed by term.
        cov: covariance matrix of ``params`` (inverse observed information).
        n: patients used; n_events: of them with MVI.
        dropped: patient ids (or row labels) dropped for missing values.
        separation: predictors whose maximum-likelihood estimate is infinite ((quasi-)
            complete separation, Konis' linear program). Under ``method="ml"`` their
            estimates, odds ratios and CIs are meaningless (tables print
            :data:`NOT_ESTIMABLE`); under ``"firth"`` they are finite and valid.
        llf: log-likelihood at the optimum (penalised for Firth).
        method: ``"ml"`` or ``"firth"`` (see :data:`METHODS`).
    """

    summary: pd.DataFrame
    params: pd.Series
    cov: pd.DataFrame
    n: int
    n_events: int
    dropped: list
    separation: list
    llf: float
    method: str = "ml"
    intercept_infinite: bool = False

    @property
    def not_estimable(self) -> list[str]:
        """Terms whose estimate is infinite in this fit (only under maximum likelihood): the
        separated predictors, and the intercept when it diverges with them."""
        if self.method != "ml":
            return []
        return list(self.separation) + (["(Intercept)"] if self.intercept_infinite else [])

    @property
    def predictors(self) -> list[str]:
        """The predictor names (without the intercept)."""
        return [t for t in self.params.index if t != "(Intercept)"]

    def linear_predictor(self, x: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Log odds for new rows ``x`` (columns in the order of :attr:`predictors`)."""
        x = np.asarray(x[self.predictors] if isinstance(x, pd.DataFrame) else x, dtype=float)
        return self.params.iloc[0] + x @ self.params.iloc[1:].to_numpy()


def fit_logit(data: pd.DataFrame, outcome: str, predictors: Sequence[str], *,
              id_column: str = "patient_id", level: float = 0.95,
              check_epv: bool = True, method: str = "ml") -> LogitResult:
    """Fit ``logit P(outcome = 1) = b0 + sum(b_j * x_j)``.

    Args:
        data: one row per patient.
        outcome: 0/1 column (1 = MVI present).
        predictors: numeric columns (0/1 after dichotomising, or continuous).
        id_column: column naming patients in messages.
        level: confidence level of the intervals.
        check_epv: warn when fewer than 10 events (the rarer outcome) per predictor.
        method: ``"ml"`` (maximum likelihood, R ``glm``) or ``"firth"`` (R ``logistf``).

    Returns:
        A :class:`LogitResult`. ML: odds ratios and Wald CIs are ``exp(coef +- z * se)``
        (R's ``exp(confint.default(fit))``). Firth: profile penalised-likelihood CIs and
        penalised likelihood-ratio p-values (R's ``logistf`` defaults).

    Raises:
        ClinicalTableError: a column is missing or non-numeric.
        StatisticsError: no predictors, one outcome class, a constant predictor, a
            perfectly collinear design, or an unknown method.
    """
    if method not in METHODS:
        raise StatisticsError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    predictors = list(predictors)
    if not predictors:
        raise StatisticsError("no predictors given for the logistic regression")
    if len(set(predictors)) != len(predictors):
        raise StatisticsError(f"predictors repeated: {predictors}")
    num, incomplete, dropped = _complete_cases(data, outcome, predictors, id_column)
    y, x, design = _logit_design(data, num, incomplete, outcome, predictors, id_column)
    n, n_events = y.size, int(y.sum())
    terms = ["(Intercept)", *predictors]
    k = len(predictors)
    epv = min(n_events, n - n_events) / k
    if check_epv and epv < 10:
        warnings.warn(
            f"logistic regression on {predictors}: {epv:.1f} events per variable "
            f"({min(n_events, n - n_events)} in the rarer class, {k} predictors) is below 10; "
            "estimates may be biased and unstable",
            StatisticsWarning, stacklevel=2,
        )
    infinite = separated_terms(x.to_numpy(), y, predictors)
    separation = [t for t in infinite if t != "(Intercept)"]
    if method == "firth":
        params, cov, ci, p, llf = _fit_firth(design, y, level)
        summary = _summary_table(params, np.sqrt(np.diag(cov)), level, ci=ci, p=p, terms=terms)
    else:
        params, cov, llf, converged = _fit_ml(design, y)
        if separation or not converged:
            warnings.warn(
                f"logistic regression on {predictors}: perfect or quasi-complete separation "
                f"(terms {separation or predictors}: some level has only patients with or only "
                "without MVI); their odds ratios are not estimable - consider merging levels "
                "or Firth's penalised regression (method = \"firth\")",
                StatisticsWarning, stacklevel=2,
            )
            if not separation:
                separation = list(predictors)
        summary = _summary_table(params, np.sqrt(np.diag(cov)), level, terms=terms)
    return LogitResult(summary=summary, params=pd.Series(params, index=terms),
                       cov=pd.DataFrame(cov, index=terms, columns=terms), n=n,
                       n_events=n_events, dropped=dropped, separation=separation, llf=llf,
                       method=method, intercept_infinite="(Intercept)" in infinite and bool(separation))


def _complete_cases(data: pd.DataFrame, outcome: str, predictors: list[str],
                    id_column: str) -> tuple[pd.DataFrame, np.ndarray, list]:
    """The numeric outcome and predictor columns, which rows are incomplete, and the ids of
    those rows (dropped, with a warning: complete-case analysis)."""
    num = require_numeric(data, [outcome, *predictors], id_column)
    incomplete = num.isna().any(axis=1).to_numpy()
    dropped: list = []
    if incomplete.any():
        per_col = {c: int(num[c].isna().sum()) for c in num.columns if num[c].isna().any()}
        dropped = (data.loc[incomplete, id_column].astype(str).tolist()
                   if id_column in data.columns else list(data.index[incomplete]))
        warnings.warn(
            f"logistic regression on {predictors}: {int(incomplete.sum())} of {len(num)} rows "
            f"dropped for missing values (missing per column: {per_col}; "
            f"{_row_names(data, incomplete, id_column)}); complete-case analysis",
            StatisticsWarning, stacklevel=3,
        )
    return num, incomplete, dropped


def _logit_design(data: pd.DataFrame, num: pd.DataFrame, incomplete: np.ndarray, outcome: str,
                  predictors: list[str], id_column: str) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """``(y, predictors, design with the intercept column)`` of the complete rows.

    Raises:
        StatisticsError: the outcome is not 0/1 or has one class only, a predictor is
            constant, or the design is perfectly collinear.
    """
    num = num.loc[~incomplete]
    y = num[outcome].to_numpy()
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise StatisticsError(
            f"outcome {outcome!r} must be 0/1; got {sorted(set(y[bad]))[:5]} at "
            f"{_row_names(data.loc[~incomplete], bad, id_column)}"
        )
    n, n_events = y.size, int(y.sum())
    if n_events == 0 or n_events == n:
        raise StatisticsError(
            f"outcome {outcome!r} has one class only ({n} patients, {n_events} with MVI): "
            "a logistic regression needs patients with and without MVI"
        )
    x = num[predictors]
    for col in predictors:
        if x[col].nunique() < 2:
            raise StatisticsError(
                f"predictor {col!r} is constant ({x[col].iloc[0]:g} in all {n} complete rows): "
                "it cannot be estimated; remove it from the model or check the cut-off"
            )
    design = np.column_stack([np.ones(n), x.to_numpy()])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise StatisticsError(
            f"predictors {predictors} are perfectly collinear (one is a combination of the "
            "others); drop one of them"
        )
    return y, x, design


def separated_terms(x: np.ndarray, y: np.ndarray, names: Sequence[str]) -> list[str]:
    """Terms whose maximum-likelihood estimate is infinite (Konis' linear program, as R's
    ``detectseparation::detect_separation``); ``x`` without the intercept column, which is
    reported as ``"(Intercept)"`` after the predictors when it diverges too."""
    from firthmodels import detect_separation

    res = detect_separation(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    return [name for name, d in zip([*names, "(Intercept)"], res.directions) if d != 0]


def _fit_ml(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """The maximum-likelihood fit by :func:`dlmvi.evaluate.logit.fit_binomial`: ``(params, cov,
    llf, converged)``; trouble (no convergence, perfect prediction) is reported by the caller as
    separation, whose exact test is :func:`separated_terms`."""
    from dlmvi.evaluate.logit import fit_binomial

    fit = fit_binomial(design, y)
    cov = fit.cov if fit.cov is not None else np.full((design.shape[1],) * 2, np.nan)
    return fit.params, cov, fit.llf, fit.converged and not fit.separated


def _fit_firth(design: np.ndarray, y: np.ndarray, level: float):
    """Firth fit as R's logistf: ``(params, cov, ci (k x 2), p, penalised loglik)``."""
    from firthmodels import FirthLogisticRegression

    def reorder(v):  # firthmodels puts the intercept last; dlmvi first
        return np.concatenate([v[-1:], v[:-1]])

    # logistf's default tolerances are 1e-5; firthmodels' 1e-6 here (tighter ones make its
    # step-halving in the constrained fits give up)
    model = FirthLogisticRegression(backend="numpy", gtol=1e-6, xtol=1e-6, max_iter=100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(design[:, 1:], y)
        model.lrt()
        ci = model.conf_int(alpha=1 - level, method="pl", tol=1e-6, max_iter=100)
    if not model.converged_ or caught and any("converge" in str(w.message).lower() for w in caught):
        msgs = "; ".join(sorted({str(w.message).splitlines()[0] for w in caught}))
        raise StatisticsError(f"Firth's penalised regression did not converge ({msgs or 'no convergence'})")
    params = reorder(np.concatenate([model.coef_, [model.intercept_]]))
    # logistf's var: the inverse Fisher information X'WX at the penalised estimate
    mu = 1.0 / (1.0 + np.exp(-(design @ params)))
    cov = np.linalg.inv(design.T @ (design * (mu * (1.0 - mu))[:, None]))
    return params, cov, reorder(ci), reorder(model.lrt_pvalues_), float(model.loglik_)


def _summary_table(coef: np.ndarray, se: np.ndarray, level: float, *, terms: Sequence[str],
                   ci: np.ndarray | None = None, p: np.ndarray | None = None) -> pd.DataFrame:
    """Per-term table; Wald CI and p unless ``ci`` (k x 2, log-odds scale) and ``p`` are given."""
    from scipy import stats  # here, not at the top: seconds of a cold predict-patient
    q = stats.norm.ppf(1 - (1 - level) / 2)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = coef / se
        lo, hi = (coef - q * se, coef + q * se) if ci is None else (ci[:, 0], ci[:, 1])
        return pd.DataFrame({
            "variable": list(terms),
            "coef": coef,
            "se": se,
            "z": z,
            "odds_ratio": np.exp(coef),
            "ci_low": np.exp(lo),
            "ci_high": np.exp(hi),
            "p_value": 2 * stats.norm.sf(np.abs(z)) if p is None else p,
        })


def univariate_logit(data: pd.DataFrame, outcome: str, predictors: Sequence[str], *,
                     id_column: str = "patient_id", level: float = 0.95,
                     method: str = "ml") -> pd.DataFrame:
    """One logistic regression per predictor (each complete-case on its own column).

    A predictor that cannot be estimated (constant, all missing) gets a row of NaN and a
    :class:`~dlmvi.errors.StatisticsWarning` instead of stopping the whole table; under
    maximum likelihood a separated predictor gets NaN estimates and ``note`` =
    :data:`NOT_ESTIMABLE`.

    Returns:
        DataFrame with one row per predictor: :data:`SUMMARY_COLUMNS` plus ``n``,
        ``n_events`` and ``note``.
    """
    rows = []
    for col in predictors:
        try:
            # events per variable matter for the joint model, not for one-variable fits
            res = fit_logit(data, outcome, [col], id_column=id_column, level=level,
                            check_epv=False, method=method)
            row = res.summary.iloc[1].to_dict()
            row.update(n=res.n, n_events=res.n_events, note="")
            if res.not_estimable:
                row.update({c: np.nan for c in SUMMARY_COLUMNS[1:]}, note=NOT_ESTIMABLE)
        except StatisticsError as exc:
            if "one class only" in str(exc):
                raise
            warnings.warn(f"univariate analysis of {col!r} skipped: {exc}",
                          StatisticsWarning, stacklevel=2)
            row = {c: np.nan for c in SUMMARY_COLUMNS}
            row.update(variable=col, n=int(pd.to_numeric(data[col], errors="coerce")
                                             .notna().sum()), n_events=np.nan, note=str(exc))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS, "n", "n_events", "note"])


def lr_test(data: pd.DataFrame, outcome: str, base: Sequence[str], added: Sequence[str], *,
            id_column: str = "patient_id") -> dict:
    """Likelihood-ratio test of ``added`` predictors on top of ``base`` (nested models).

    Both models are fitted by maximum likelihood on the same patients (complete for the
    larger model), as R's ``anova(glm(y ~ base), glm(y ~ base + added), test = "LRT")``.
    An empty ``base`` compares with the intercept-only model.

    Returns:
        ``{"chi2", "df", "p", "n", "n_events", "base", "added"}``.
    """
    from scipy import stats  # here, not at the top: seconds of a cold predict-patient
    base, added = list(base), list(added)
    cols = [outcome, *base, *added]
    num = require_numeric(data, cols, id_column)
    keep = num.notna().all(axis=1).to_numpy()
    frame = data.loc[keep].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StatisticsWarning)  # reported by the main fits
        full = fit_logit(frame, outcome, base + added, id_column=id_column, check_epv=False)
        if base:
            ll0 = fit_logit(frame, outcome, base, id_column=id_column, check_epv=False).llf
        else:
            ll0 = null_loglik(num.loc[keep, outcome].to_numpy())
    chi2 = max(2.0 * (full.llf - ll0), 0.0)
    df = len(added)
    return {"chi2": float(chi2), "df": df, "p": float(stats.chi2.sf(chi2, df)), "n": full.n,
            "n_events": full.n_events, "base": base, "added": added}


def null_loglik(y: np.ndarray) -> float:
    """Log-likelihood of the intercept-only logistic model of a 0/1 outcome."""
    n, k = y.size, float(np.sum(y))
    return float(k * np.log(k / n) + (n - k) * np.log(1 - k / n))


def model_fit_indexes(result: LogitResult) -> dict:
    """``rms::lrm``'s model likelihood-ratio test, AIC and Nagelkerke R2 of an ML fit.

    ``model_lr`` = {chi2, df, p} against the intercept-only model (lrm's "Model L.R."),
    ``aic`` = ``-2 logL + 2 (k + 1)`` (R ``AIC(glm)``) and ``nagelkerke_r2`` =
    ``(1 - exp(-LR / n)) / (1 - exp(2 logL0 / n))`` (lrm's ``R2``).

    Raises:
        StatisticsError: ``result`` is not a maximum-likelihood fit (the indexes are defined
            for the unpenalised likelihood).
    """
    from scipy import stats  # here, not at the top: seconds of a cold predict-patient
    if result.method != "ml":
        raise StatisticsError("model_fit_indexes needs a maximum-likelihood fit (method='ml')")
    y_events, n = result.n_events, result.n
    ll0 = null_loglik(np.r_[np.ones(y_events), np.zeros(n - y_events)])
    llf = result.llf
    lr = max(2.0 * (llf - ll0), 0.0)
    df = len(result.predictors)
    return {"model_lr": {"chi2": float(lr), "df": df, "p": float(stats.chi2.sf(lr, df))},
            "aic": float(-2.0 * llf + 2.0 * (df + 1)),
            "nagelkerke_r2": float((1.0 - np.exp(-lr / n)) / (1.0 - np.exp(2.0 * ll0 / n)))}
