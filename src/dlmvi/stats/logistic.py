"""Logistic regression of MVI on clinical variables (statsmodels ``Logit``), with Wald intervals.

Results match R's ``glm(family = binomial)`` with ``confint.default`` (Wald CIs) and
``summary()``'s Wald p-values. Fits are complete-case: rows with a missing outcome or
predictor are dropped with a :class:`~dlmvi.errors.StatisticsWarning` saying how many and which.
Unreliable fits (perfect or quasi-complete separation, fewer than 10 events per variable)
also warn; impossible ones (one outcome class, a constant predictor, a non-numeric or missing
column) raise :class:`~dlmvi.errors.StatisticsError` / :class:`~dlmvi.errors.ClinicalTableError`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from dlmvi.errors import ClinicalTableError, StatisticsError, StatisticsWarning

__all__ = [
    "LogitResult",
    "require_numeric",
    "fit_logit",
    "univariate_logit",
    "SUMMARY_COLUMNS",
]

#: Columns of every per-variable summary table (univariate.csv, multivariate.csv).
SUMMARY_COLUMNS = ("variable", "coef", "se", "z", "odds_ratio", "ci_low", "ci_high", "p_value")

#: |coefficient| above which a fit is reported as (quasi-)separated: an OR beyond e^10.
_SEPARATION_COEF = 10.0


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
        separation: terms whose estimate suggests (quasi-)complete separation.
        llf: log-likelihood at the optimum.
    """

    summary: pd.DataFrame
    params: pd.Series
    cov: pd.DataFrame
    n: int
    n_events: int
    dropped: list
    separation: list
    llf: float

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
              check_epv: bool = True) -> LogitResult:
    """Fit ``logit P(outcome = 1) = b0 + sum(b_j * x_j)`` by maximum likelihood.

    Args:
        data: one row per patient.
        outcome: 0/1 column (1 = MVI present).
        predictors: numeric columns (0/1 after dichotomising, or continuous).
        id_column: column naming patients in messages.
        level: confidence level of the Wald intervals.
        check_epv: warn when fewer than 10 events (the rarer outcome) per predictor.

    Returns:
        A :class:`LogitResult`; odds ratios and Wald CIs are ``exp(coef +- z * se)``
        (R's ``exp(confint.default(fit))``).

    Raises:
        ClinicalTableError: a column is missing or non-numeric.
        StatisticsError: no predictors, one outcome class, a constant predictor, or a
            perfectly collinear design.
    """
    import statsmodels.api as sm

    predictors = list(predictors)
    if not predictors:
        raise StatisticsError("no predictors given for the logistic regression")
    if len(set(predictors)) != len(predictors):
        raise StatisticsError(f"predictors repeated: {predictors}")
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
            StatisticsWarning, stacklevel=2,
        )
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
    terms = ["(Intercept)", *predictors]
    design = np.column_stack([np.ones(n), x.to_numpy()])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise StatisticsError(
            f"predictors {predictors} are perfectly collinear (one is a combination of the "
            "others); drop one of them"
        )
    k = len(predictors)
    epv = min(n_events, n - n_events) / k
    if check_epv and epv < 10:
        warnings.warn(
            f"logistic regression on {predictors}: {epv:.1f} events per variable "
            f"({min(n_events, n - n_events)} in the rarer class, {k} predictors) is below 10; "
            "estimates may be biased and unstable",
            StatisticsWarning, stacklevel=2,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence trouble is reported as separation below
        fit = sm.Logit(y, design).fit(method="newton", maxiter=200, tol=1e-12, disp=0)
    params = pd.Series(np.asarray(fit.params, dtype=float), index=terms)
    cov = pd.DataFrame(np.asarray(fit.cov_params(), dtype=float), index=terms, columns=terms)
    se = np.sqrt(np.diag(cov.to_numpy()))
    separation = [t for t, b in params.items()
                  if t != "(Intercept)" and (abs(b) > _SEPARATION_COEF or not np.isfinite(b))]
    converged = bool(fit.mle_retvals.get("converged", True))
    if separation or not converged:
        warnings.warn(
            f"logistic regression on {predictors}: perfect or quasi-complete separation "
            f"(terms {separation or predictors}: some level has only patients with or only "
            "without MVI); odds ratios are unreliable - consider merging levels or Firth's "
            "penalised regression",
            StatisticsWarning, stacklevel=2,
        )
        if not separation:
            separation = list(predictors)
    summary = _summary_table(params, se, level)
    return LogitResult(summary=summary, params=params, cov=cov, n=n, n_events=n_events,
                       dropped=dropped, separation=separation, llf=float(fit.llf))


def _summary_table(params: pd.Series, se: np.ndarray, level: float) -> pd.DataFrame:
    q = stats.norm.ppf(1 - (1 - level) / 2)
    coef = params.to_numpy()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = coef / se
        return pd.DataFrame({
            "variable": params.index,
            "coef": coef,
            "se": se,
            "z": z,
            "odds_ratio": np.exp(coef),
            "ci_low": np.exp(coef - q * se),
            "ci_high": np.exp(coef + q * se),
            "p_value": 2 * stats.norm.sf(np.abs(z)),
        })


def univariate_logit(data: pd.DataFrame, outcome: str, predictors: Sequence[str], *,
                     id_column: str = "patient_id", level: float = 0.95) -> pd.DataFrame:
    """One logistic regression per predictor (each complete-case on its own column).

    A predictor that cannot be estimated (constant, all missing) gets a row of NaN and a
    :class:`~dlmvi.errors.StatisticsWarning` instead of stopping the whole table.

    Returns:
        DataFrame with one row per predictor: :data:`SUMMARY_COLUMNS` plus ``n`` and
        ``n_events``.
    """
    rows = []
    for col in predictors:
        try:
            # events per variable matter for the joint model, not for one-variable fits
            res = fit_logit(data, outcome, [col], id_column=id_column, level=level,
                            check_epv=False)
            row = res.summary.iloc[1].to_dict()
            row.update(n=res.n, n_events=res.n_events)
        except StatisticsError as exc:
            if "one class only" in str(exc):
                raise
            warnings.warn(f"univariate analysis of {col!r} skipped: {exc}",
                          StatisticsWarning, stacklevel=2)
            row = {c: np.nan for c in SUMMARY_COLUMNS}
            row.update(variable=col, n=int(pd.to_numeric(data[col], errors="coerce")
                                             .notna().sum()), n_events=np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS, "n", "n_events"])
