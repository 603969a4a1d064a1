"""Survival analysis: Kaplan-Meier, median survival, log-rank test and Cox hazard ratios.

Thin glue over lifelines (``KaplanMeierFitter``, ``multivariate_logrank_test``,
``CoxPHFitter``) plus the few pieces needed to agree with R's ``survival`` package, which is
what clinical papers report:

* The 95 % confidence band of the Kaplan-Meier curve uses R's default
  ``conf.type = "log"``: ``S(t) * exp(+-z * se)`` with Greenwood's
  ``se = sqrt(sum d / (n (n - d)))``, upper limit capped at 1. lifelines' own band is the
  log(-log) ("exponential Greenwood") band, which differs, so the band is computed here from
  lifelines' event table.
* The median and its confidence interval follow ``print.survfit`` (``survival:::survmean``):
  the median is the first time the curve falls below 0.5 (within ``sqrt(eps)``); where the
  curve is exactly 0.5 over an interval, the midpoint of that interval. The interval's lower
  and upper limits apply the same rule to the lower and upper band. A limit that is never
  reached is ``None`` (R's ``NA``).
* The log-rank test is ``survdiff`` (chi-square with ``k - 1`` degrees of freedom).
* Cox regression uses Efron's handling of tied times (R's and lifelines' default). ``hr`` is
  ``exp(coef)``, ``ci`` is ``exp(confint)`` (Wald, 95 %) and ``p`` is the Wald test of the
  coefficient, ``Pr(>|z|)`` in ``summary(coxph)``. With more than two groups each
  non-reference level gets its own hazard ratio, and ``overall_p`` is the joint Wald test
  (``summary(coxph)$waldtest``). The likelihood-ratio and score tests
  (``summary(coxph)$logtest``, ``$sctest``), the concordance and the proportional-hazards
  test (``cox.zph(transform = "km")``) come from :mod:`dlmvi.stats.cox`.
* Survival at 12, 36 and 60 months (:func:`survival_at`) is ``summary(survfit(...), times =
  ...)``: the curve's value at the last event time at or before, its Greenwood standard
  error and the ``conf.type = "log"`` interval; times after the last follow-up are dropped.
* Median follow-up (:func:`median_follow_up`) is the reverse Kaplan-Meier median
  (censoring as the event), ``survfit(Surv(time, 1 - status) ~ 1)``.

Times are in months. Tables with dates are converted by :func:`durations_from_dates` with
``months = days / (365.25 / 12)`` (a mean Gregorian month of 30.4375 days).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _sstats

from dlmvi.errors import ClinicalTableError, StatisticsError, StatisticsWarning

#: Days in one month: a mean Gregorian year of 365.25 days over 12 months.
DAYS_PER_MONTH: float = 365.25 / 12

#: Duration and event columns of each outcome in clinical.csv.
OUTCOMES: dict[str, tuple[str, str]] = {
    "os": ("os_months", "os_event"),
    "rfs": ("rfs_months", "rfs_event"),
}

#: Times (months) of the survival rates in survival.json: 1, 3 and 5 years.
RATE_TIMES: tuple[float, ...] = (12.0, 36.0, 60.0)

#: Date columns understood by :func:`durations_from_dates`.
DATE_COLUMNS: tuple[str, ...] = (
    "surgery_date", "recurrence_date", "death_date", "last_followup_date",
)

# R's sqrt(.Machine$double.eps), the tolerance of survival:::survmean.
_R_TOLERANCE = math.sqrt(np.finfo(float).eps)

_MAX_LISTED = 10


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class GroupSurvival:
    """Kaplan-Meier summary of one group.

    Attributes:
        label: group name as shown in outputs.
        n: number of patients.
        events: number of events (death for OS; recurrence or death for RFS).
        median: median survival (months); ``None`` when the curve never falls below 0.5.
        median_ci: ``(lower, upper)`` 95 % confidence limits of the median (months), R's
            ``conf.type = "log"``; each limit is ``None`` when not reached.
        curve: the Kaplan-Meier table, see :func:`km_curve`.
    """

    label: str
    n: int
    events: int
    median: float | None
    median_ci: tuple[float | None, float | None]
    curve: pd.DataFrame = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the curve)."""
        return {
            "n": self.n,
            "events": self.events,
            "median": self.median,
            "median_ci": list(self.median_ci),
        }


@dataclass
class SurvivalComparison:
    """Survival compared between groups: per-group summaries, log-rank test and Cox model.

    Attributes:
        groups: one :class:`GroupSurvival` per level, reference level first. A level with no
            patients has ``n = 0`` and an empty curve.
        overall: all patients together.
        logrank: ``{"chi2", "df", "p"}`` or ``None`` where the test is impossible.
        cox: see :func:`cox_hazard_ratios`, or ``None`` where the model is impossible.
        notes: why a test is missing or unreliable (also issued as StatisticsWarning).
        rates: ``{"times", "overall": [...], "groups": {label: [...]}}`` of
            :func:`survival_at` entries.
        follow_up: :func:`median_follow_up` of all patients.
        concordance: ``{"c", "se"}`` of the Cox model (R ``concordance(coxph)``) or None.
        ph_test: :func:`~dlmvi.stats.cox.cox_zph` of the Cox model or None.
    """

    groups: list[GroupSurvival]
    overall: GroupSurvival
    logrank: dict[str, float] | None
    cox: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    rates: dict[str, Any] | None = None
    follow_up: dict[str, Any] | None = None
    concordance: dict[str, float] | None = None
    ph_test: dict[str, Any] | None = None

    @property
    def reference(self) -> str:
        """Label of the reference group (hazard ratios are relative to it)."""
        return self.groups[0].label

    def curves(self) -> pd.DataFrame:
        """All groups' Kaplan-Meier tables stacked, with a ``group`` column first."""
        frames = [g.curve.assign(group=g.label) for g in self.groups if len(g.curve)]
        if not frames:
            return pd.DataFrame(columns=["group", *_CURVE_COLUMNS])
        out = pd.concat(frames, ignore_index=True)
        return out[["group", *_CURVE_COLUMNS]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary in the schema of ``survival.json``."""
        return {
            "n": self.overall.n,
            "events": self.overall.events,
            "overall": self.overall.to_dict(),
            "reference": self.reference,
            "groups": {g.label: g.to_dict() for g in self.groups},
            "logrank": self.logrank,
            "cox": self.cox,
            "rates": self.rates,
            "median_follow_up": self.follow_up,
            "concordance": self.concordance,
            "ph_test": self.ph_test,
            "notes": list(self.notes),
        }


_CURVE_COLUMNS = [
    "time", "n_risk", "n_event", "n_censor", "survival", "std_err", "ci_lower", "ci_upper",
]


# --------------------------------------------------------------------------------------------
# Input checks


def _name_rows(ids: Sequence[Any], rows: Sequence[int]) -> str:
    """'patient P01 (row 3), ...' for at most _MAX_LISTED rows; rows are 1-based data rows."""
    parts = [f"patient {pid} (row {row})" for pid, row in zip(ids, rows)]
    more = len(parts) - _MAX_LISTED
    text = ", ".join(parts[:_MAX_LISTED])
    return text + (f" and {more} more" if more > 0 else "")


def check_outcome(
    durations: Iterable[Any],
    events: Iterable[Any],
    ids: Sequence[Any] | None = None,
    time_column: str = "time",
    event_column: str = "event",
    rows: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate survival times and event indicators.

    Args:
        durations: follow-up times (months); must be present, finite and >= 0.
        events: event indicators, 0 (censored) or 1 (event); booleans are accepted.
        ids: patient ids used in messages (default: row numbers).
        time_column, event_column: column names used in messages.
        rows: 1-based table row of each value, for messages (default 1, 2, ...).

    Returns:
        ``(durations, events)`` as float and int arrays.

    Raises:
        ClinicalTableError: naming the patients and rows at fault.
    """
    raw_t = pd.Series(list(durations), dtype=object)
    raw_e = pd.Series(list(events), dtype=object)
    if len(raw_t) != len(raw_e):
        raise StatisticsError(
            f"{len(raw_t)} survival times but {len(raw_e)} event indicators; give one per patient"
        )
    t = pd.to_numeric(raw_t, errors="coerce").astype(float)
    if ids is None:
        ids = [str(i + 1) for i in range(len(t))]
    ids = list(ids)
    rows = np.arange(1, len(t) + 1) if rows is None else np.asarray(rows)

    def who(mask: np.ndarray) -> str:
        idx = np.flatnonzero(mask)
        return _name_rows([ids[i] for i in idx], rows[idx])

    problems = []
    blank = (raw_t.isna() | (raw_t.astype(str).str.strip() == "")).to_numpy()
    not_number = (t.isna().to_numpy() & ~blank) | np.isinf(t.to_numpy())
    if blank.any():
        problems.append(f"{time_column} is missing for {who(blank)}")
    if not_number.any():
        problems.append(f"{time_column} is not a finite number for {who(not_number)}")
    negative = (t < 0).to_numpy()
    if negative.any():
        problems.append(f"{time_column} is negative for {who(negative)}")

    e = raw_e.map(_as_event)
    bad_e = e.isna().to_numpy()
    if bad_e.any():
        shown = sorted({repr(raw_e.iloc[i]) for i in np.flatnonzero(bad_e)})[:5]
        problems.append(
            f"{event_column} must be 0 (censored) or 1 (event) but is {', '.join(shown)} for "
            f"{who(bad_e)}"
        )
    if problems:
        raise ClinicalTableError(
            "; ".join(problems)
            + ". Fix or remove these rows of the table (times in months from surgery, >= 0)."
        )
    return t.to_numpy(dtype=float), e.to_numpy(dtype=int)


def _as_event(value: Any) -> float:
    """0/1/True/False (also '0', '1.0') -> 0 or 1; anything else -> NaN."""
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if value is None:
        return np.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return np.nan
    return number if number in (0.0, 1.0) else np.nan


# --------------------------------------------------------------------------------------------
# Kaplan-Meier


def km_curve(durations: np.ndarray, events: np.ndarray, conf_level: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier table with R's ``conf.type = "log"`` confidence band.

    Args:
        durations: times (months), >= 0.
        events: 0/1 event indicators.
        conf_level: confidence level of the band.

    Returns:
        One row per distinct observed time (as R's ``survfit``): ``time`` (months),
        ``n_risk``, ``n_event``, ``n_censor``, ``survival``, ``std_err`` (Greenwood standard
        error of log S), ``ci_lower``, ``ci_upper`` (NaN where S = 0, as R's NA).
    """
    from lifelines import KaplanMeierFitter

    durations = np.asarray(durations, dtype=float)
    events = np.asarray(events, dtype=int)
    if durations.size == 0:
        return pd.DataFrame(columns=_CURVE_COLUMNS)
    kmf = KaplanMeierFitter().fit(durations, events)
    table = kmf.event_table
    table = table[table["removed"] > 0]
    time = table.index.to_numpy(dtype=float)
    n_risk = table["at_risk"].to_numpy(dtype=float)
    n_event = table["observed"].to_numpy(dtype=float)
    surv = kmf.survival_function_.iloc[:, 0].reindex(time).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Greenwood's variance of log S; n == d gives +inf (S = 0, band undefined, as in R).
        terms = np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0)
        std_err = np.sqrt(np.cumsum(terms))
        z = _sstats.norm.ppf(1 - (1 - conf_level) / 2)
        log_s = np.where(surv > 0, np.log(np.where(surv > 0, surv, 1.0)), np.nan)
        lower = np.exp(log_s - z * std_err)
        upper = np.minimum(np.exp(log_s + z * std_err), 1.0)
    return pd.DataFrame({
        "time": time,
        "n_risk": n_risk.astype(int),
        "n_event": n_event.astype(int),
        "n_censor": table["censored"].to_numpy(dtype=int),
        "survival": surv,
        "std_err": std_err,
        "ci_lower": lower,
        "ci_upper": upper,
    })


def _r_median(values: np.ndarray, times: np.ndarray) -> float | None:
    """``survival:::survmean``'s ``minmin``: first time the curve is below 0.5 (see module)."""
    keep = ~np.isnan(values) & (values < 0.5 + _R_TOLERANCE)
    if not keep.any():
        return None
    x, y = times[keep], values[keep]
    if abs(y[0] - 0.5) < _R_TOLERANCE and np.any(y < y[0]):
        return float((x[0] + x[np.flatnonzero(y < y[0])[0]]) / 2)
    return float(x[0])


def median_survival(curve: pd.DataFrame) -> tuple[float | None, tuple[float | None, float | None]]:
    """Median survival and its confidence limits from a :func:`km_curve` table.

    Returns:
        ``(median, (lower, upper))`` in the curve's time unit; ``None`` where not reached.
        Agrees with R's ``print(survfit(...))`` (columns median, 0.95LCL, 0.95UCL).
    """
    if len(curve) == 0:
        return None, (None, None)
    t = curve["time"].to_numpy(dtype=float)
    return (
        _r_median(curve["survival"].to_numpy(dtype=float), t),
        (
            _r_median(curve["ci_lower"].to_numpy(dtype=float), t),
            _r_median(curve["ci_upper"].to_numpy(dtype=float), t),
        ),
    )


def summarize_group(
    durations: np.ndarray, events: np.ndarray, label: str = "all", conf_level: float = 0.95
) -> GroupSurvival:
    """Number of patients and events, median survival and its CI for one group."""
    curve = km_curve(durations, events, conf_level)
    median, ci = median_survival(curve)
    return GroupSurvival(
        label=str(label),
        n=int(len(durations)),
        events=int(np.sum(events)),
        median=median,
        median_ci=ci,
        curve=curve,
    )


# --------------------------------------------------------------------------------------------
# Tests between groups


def logrank(durations: np.ndarray, events: np.ndarray, groups: Sequence[Any]) -> dict[str, float]:
    """Log-rank test of equal survival across groups (R's ``survdiff``, rho = 0).

    Returns:
        ``{"chi2": statistic, "df": k - 1, "p": p-value}``.

    Raises:
        StatisticsError: fewer than two groups or no events.
    """
    from lifelines.statistics import multivariate_logrank_test

    groups = np.asarray(groups, dtype=object)
    levels = pd.unique(groups)
    if len(levels) < 2:
        raise StatisticsError("the log-rank test needs patients in at least two groups")
    if np.sum(events) == 0:
        raise StatisticsError("the log-rank test needs at least one event")
    result = multivariate_logrank_test(durations, groups, events)
    return {
        "chi2": float(result.test_statistic),
        "df": int(len(levels) - 1),
        "p": float(result.p_value),
    }


def _group_design(groups: np.ndarray, levels: Sequence[str]) -> pd.DataFrame:
    """Indicator columns of the non-reference levels (R's treatment contrasts)."""
    return pd.DataFrame({f"_g{i}": (groups == lv).astype(float) for i, lv in enumerate(levels[1:])})


def survival_at(durations, events, times: Sequence[float] = RATE_TIMES,
                conf_level: float = 0.95) -> list[dict[str, Any] | None]:
    """Kaplan-Meier survival at fixed times, as R's ``summary(survfit(...), times = times)``.

    Returns:
        One entry per time: ``{"time", "survival", "std_err" (of S, Greenwood), "ci": [lower,
        upper] (conf.type = "log"), "n_risk"}``; ``None`` for a time after the last follow-up
        (R drops it: ``extend = FALSE``).
    """
    t = np.asarray(durations, dtype=float)
    curve = km_curve(t, np.asarray(events, dtype=int), conf_level)
    out: list[dict[str, Any] | None] = []
    for tau in times:
        if t.size == 0 or tau > t.max():
            out.append(None)
            continue
        before = curve[curve["time"] <= tau]
        if before.empty:
            surv, se_log, lo, hi = 1.0, 0.0, 1.0, 1.0
        else:
            last = before.iloc[-1]
            surv, se_log = float(last["survival"]), float(last["std_err"])
            lo, hi = float(last["ci_lower"]), float(last["ci_upper"])
        out.append({"time": float(tau), "survival": surv, "std_err": surv * se_log,
                    "ci": [None if np.isnan(lo) else lo, None if np.isnan(hi) else hi],
                    "n_risk": int(np.sum(t >= tau))})
    return out


def median_follow_up(durations, events, conf_level: float = 0.95) -> dict[str, Any]:
    """Median follow-up by the reverse Kaplan-Meier method (censoring is the "event").

    As R's ``survfit(Surv(time, 1 - status) ~ 1)``: ``{"median", "ci": [lower, upper],
    "method": "reverse Kaplan-Meier"}``; a value not reached is ``None``.
    """
    e = np.asarray(events, dtype=int)
    g = summarize_group(np.asarray(durations, dtype=float), 1 - e, "follow-up", conf_level)
    return {"median": g.median, "ci": list(g.median_ci), "method": "reverse Kaplan-Meier"}


def cox_hazard_ratios(
    durations: np.ndarray,
    events: np.ndarray,
    groups: Sequence[Any],
    levels: Sequence[str],
    conf_level: float = 0.95,
) -> dict[str, Any]:
    """Cox proportional-hazards model of survival on group (Efron ties), as R's ``coxph``.

    Args:
        durations, events: survival data.
        groups: group label of each patient.
        levels: group labels, reference first; levels without patients must be left out.
        conf_level: confidence level of the hazard-ratio interval.

    Returns:
        With two levels: ``{"reference", "comparison", "hr", "ci": [lower, upper], "p",
        "p_test": "wald", "ties": "efron"}``, where ``hr`` is the hazard of ``comparison``
        relative to ``reference`` and ``p`` the Wald test (``Pr(>|z|)`` of ``summary(coxph)``).
        With more levels, ``hr``, ``ci`` and ``p`` are dicts keyed by the non-reference level,
        and ``overall_p`` is the joint Wald test (``summary(coxph)$waldtest``). Always also
        ``coef`` (log hazard ratio(s)), ``lr_test`` and ``score_test`` ({chi2, df, p}, R's
        ``summary(coxph)$logtest`` and ``$sctest``).

    Raises:
        StatisticsError: a group has no events (the hazard ratio is 0 or infinite), fewer than
            two levels, or the fit does not converge.
    """
    from dlmvi.stats.cox import cox_tests, fit_cox

    groups = np.asarray(groups, dtype=object)
    levels = [str(v) for v in levels]
    if len(levels) < 2:
        raise StatisticsError("a Cox model needs patients in at least two groups")
    for level in levels:
        mask = groups == level
        if not mask.any():
            raise StatisticsError(f"group {level!r} has no patients; leave it out")
        if events[mask].sum() == 0:
            raise StatisticsError(
                f"group {level!r} has no events, so its hazard ratio is 0 or infinite "
                "and cannot be estimated"
            )
    others = levels[1:]
    design = _group_design(groups, levels)
    try:
        fitter = fit_cox(durations, events, design, conf_level)
    except StatisticsError as exc:
        raise StatisticsError(f"{exc}; the groups may separate the outcome completely") from None
    summary = fitter.summary
    coef = summary["coef"].to_numpy(dtype=float)
    se = summary["se(coef)"].to_numpy(dtype=float)
    z = _sstats.norm.ppf(1 - (1 - conf_level) / 2)
    hr = np.exp(coef)
    lo, hi = np.exp(coef - z * se), np.exp(coef + z * se)
    p = 2 * _sstats.norm.sf(np.abs(coef / se))
    base = {"reference": levels[0], "p_test": "wald", "ties": "efron", "conf_level": conf_level,
            **cox_tests(durations, events, design.to_numpy(float), coef)}
    if len(others) == 1:
        return {
            **base,
            "comparison": others[0],
            "hr": float(hr[0]),
            "ci": [float(lo[0]), float(hi[0])],
            "p": float(p[0]),
            "coef": float(coef[0]),
        }
    cov = fitter.variance_matrix_.to_numpy(dtype=float)
    wald = float(coef @ np.linalg.solve(cov, coef))
    return {
        **base,
        "comparison": others,
        "hr": {lv: float(v) for lv, v in zip(others, hr)},
        "ci": {lv: [float(a), float(b)] for lv, a, b in zip(others, lo, hi)},
        "p": {lv: float(v) for lv, v in zip(others, p)},
        "coef": {lv: float(v) for lv, v in zip(others, coef)},
        "overall_chi2": wald,
        "overall_df": len(others),
        "overall_p": float(_sstats.chi2.sf(wald, len(others))),
    }


def compare_survival(
    durations: Iterable[Any],
    events: Iterable[Any],
    groups: Iterable[Any],
    levels: Sequence[str] | None = None,
    ids: Sequence[Any] | None = None,
    conf_level: float = 0.95,
    time_column: str = "time",
    event_column: str = "event",
    rows: Sequence[int] | None = None,
) -> SurvivalComparison:
    """Kaplan-Meier per group, log-rank test and Cox hazard ratios.

    Args:
        durations: follow-up times (months).
        events: 0/1 event indicators.
        groups: group label of each patient (converted to ``str``).
        levels: group labels to report, reference first (default: sorted labels present).
            A listed level without patients is reported with ``n = 0``.
        ids: patient ids for messages.
        conf_level: confidence level of every interval.
        time_column, event_column: column names for messages.
        rows: 1-based table rows of the patients, for messages.

    Returns:
        A :class:`SurvivalComparison`. Where a test is impossible (one group only, no events,
        a group without events for Cox) it is ``None``, a note says why and a
        :class:`~dlmvi.errors.StatisticsWarning` is issued.

    Raises:
        ClinicalTableError: negative, missing or non-numeric times; events not 0/1.
    """
    t, e = check_outcome(durations, events, ids, time_column, event_column, rows)
    g = np.asarray([str(v) for v in groups], dtype=object)
    levels = _group_levels(g, len(t), levels)

    summaries = [summarize_group(t[g == lv], e[g == lv], lv, conf_level) for lv in levels]
    overall = summarize_group(t, e, "all", conf_level)
    notes: list[str] = []
    nonempty = [s.label for s in summaries if s.n > 0]
    for s in summaries:
        if s.n == 0:
            notes.append(f"group {s.label!r} has no patients")
        elif s.events == 0:
            notes.append(f"group {s.label!r} has no events")

    lr = cox = conc = ph = None
    if len(nonempty) < 2:
        notes.append("fewer than two groups with patients: no log-rank test or Cox model")
    elif e.sum() == 0:
        notes.append("no events in any group: no log-rank test or Cox model")
    else:
        lr = logrank(t, e, g)
        try:
            cox = cox_hazard_ratios(t, e, g, nonempty, conf_level)
        except StatisticsError as exc:
            notes.append(f"no Cox model: {exc}")
    if cox is not None:
        conc, ph = _concordance_and_ph(t, e, g, nonempty, cox["coef"])
    rates = {"times": list(RATE_TIMES), "overall": survival_at(t, e, RATE_TIMES, conf_level),
             "groups": {lv: survival_at(t[g == lv], e[g == lv], RATE_TIMES, conf_level) for lv in levels}}
    for note in notes:
        warnings.warn(note, StatisticsWarning, stacklevel=2)
    return SurvivalComparison(groups=summaries, overall=overall, logrank=lr, cox=cox, notes=notes,
                              rates=rates, follow_up=median_follow_up(t, e, conf_level),
                              concordance=conc, ph_test=ph)


def _group_levels(g: np.ndarray, n: int, levels: Sequence[str] | None) -> list[str]:
    """The levels to report (default: the sorted labels present), as text.

    Raises:
        StatisticsError: not one label per patient, or a label not among ``levels``.
    """
    if len(g) != n:
        raise StatisticsError(f"{len(g)} group labels for {n} patients; give one per patient")
    present = [str(v) for v in pd.unique(g)]
    if levels is None:
        levels = sorted(present)
    levels = [str(v) for v in levels]
    unknown = sorted(set(present) - set(levels))
    if unknown:
        raise StatisticsError(f"group labels {unknown} are not among the levels {levels}")
    return levels


def _concordance_and_ph(t: np.ndarray, e: np.ndarray, g: np.ndarray, nonempty: list[str],
                        coef) -> tuple[dict, dict]:
    """Harrell's concordance ``{c, se}`` and the proportional-hazards test (R ``cox.zph``) of
    the Cox model of the groups with coefficient(s) ``coef``."""
    from dlmvi.stats.cox import concordance, cox_zph

    x = _group_design(g, nonempty).to_numpy(float)
    beta = np.array([coef] if not isinstance(coef, dict) else [coef[lv] for lv in nonempty[1:]])
    c = concordance(t, e, x @ beta)
    conc = {"c": c["c"], "se": c["se"]}
    # one term, as R's coxph(Surv ~ group): its df = number of levels - 1
    ph = cox_zph(t, e, x, beta, nonempty[1:], terms={"group": range(x.shape[1])})
    return conc, ph


# --------------------------------------------------------------------------------------------
# Dates to durations


def _parse_dates(table: pd.DataFrame, column: str, ids: list[str]) -> pd.Series:
    """Parse one ISO date column (YYYY-MM-DD); other formats raise (01/02/2020 is ambiguous)."""
    from dlmvi.io.tables import MISSING_TOKENS

    raw = table[column]
    blank = raw.isna() | raw.astype(str).str.strip().str.lower().isin(MISSING_TOKENS)
    parsed = pd.to_datetime(raw.where(~blank), errors="coerce", format="ISO8601")
    bad = parsed.isna() & ~blank
    if bad.any():
        idx = np.flatnonzero(bad.to_numpy())
        shown = ", ".join(
            f"patient {ids[i]} (row {i + 1}): {raw.iloc[i]!r}" for i in idx[:_MAX_LISTED]
        )
        raise ClinicalTableError(
            f"{column} is not a date for {shown}; write dates as YYYY-MM-DD"
        )
    return parsed


def durations_from_dates(
    table: pd.DataFrame,
    censor_date: str | pd.Timestamp | None = None,
    rfs_death_is_event: bool = True,
) -> pd.DataFrame:
    """Convert surgery/recurrence/death/follow-up dates to survival times in months.

    ``months = days / (365.25 / 12)``. Overall survival (OS) runs from ``surgery_date`` to
    ``death_date`` (event) or, for patients alive, to ``last_followup_date`` (censored).
    Recurrence-free survival (RFS) runs to the first of ``recurrence_date`` and, when
    ``rfs_death_is_event`` (the usual definition), ``death_date``; otherwise it is censored at
    the last follow-up. A recurrence recorded after the last follow-up date extends the
    follow-up to that date (the patient was seen alive then). With ``censor_date``, events
    after that date are ignored and follow-up is cut at that date (administrative censoring).

    Args:
        table: one row per patient with ``patient_id`` and ``surgery_date`` plus
            ``last_followup_date`` and at least one of ``death_date`` (for OS) and
            ``recurrence_date`` (for RFS). Empty cells mean "no such event".
        censor_date: administrative censoring date (YYYY-MM-DD), or None.
        rfs_death_is_event: count death without recorded recurrence as an RFS event.

    Returns:
        A copy of ``table`` with ``os_months``/``os_event`` (when ``death_date`` is a column)
        and ``rfs_months``/``rfs_event`` (when ``recurrence_date`` is a column) set.

    Raises:
        ClinicalTableError: missing columns, unreadable dates, an event or follow-up dated
            before surgery, a recurrence after death, a patient without any end of follow-up,
            or surgery after ``censor_date``; the message names the patients.
    """
    _check_date_columns(table)
    ids = [str(v) for v in table.get("patient_id", pd.Series(range(1, len(table) + 1)))]
    dates = {c: _parse_dates(table, c, ids) for c in DATE_COLUMNS if c in table.columns}
    n = len(table)
    nat = pd.Series(pd.NaT, index=table.index, dtype="datetime64[ns]")
    surgery = dates["surgery_date"]
    recurrence = dates.get("recurrence_date", nat)
    death = dates.get("death_date", nat)
    followup = dates.get("last_followup_date", nat)
    censor = _check_date_order(dates, surgery, recurrence, death, followup, ids, censor_date)

    alive_until = pd.concat([followup, recurrence], axis=1).max(axis=1)
    out = table.copy()
    if "death_date" in dates:
        died = death.notna()
        _set_duration(out, death.where(died, alive_until), died, surgery, censor, "os")
    if "recurrence_date" in dates:
        first = recurrence
        if rfs_death_is_event and "death_date" in dates:
            first = pd.concat([recurrence, death], axis=1).min(axis=1)
        had = first.notna()
        _set_duration(out, first.where(had, alive_until), had, surgery, censor, "rfs")
    assert len(out) == n
    return out


def _check_date_columns(table: pd.DataFrame) -> None:
    """Raise unless the table has ``surgery_date`` and ``death_date`` or ``recurrence_date``."""
    if "surgery_date" not in table.columns:
        raise ClinicalTableError(
            "the table has no surgery_date column; give either os_months/os_event and "
            "rfs_months/rfs_event, or surgery_date with last_followup_date and death_date / "
            "recurrence_date"
        )
    if "death_date" not in table.columns and "recurrence_date" not in table.columns:
        raise ClinicalTableError(
            "the table has surgery_date but neither death_date nor recurrence_date; add them "
            "(empty cells where the event did not happen)"
        )


def _check_date_order(dates: dict[str, pd.Series], surgery: pd.Series, recurrence: pd.Series,
                      death: pd.Series, followup: pd.Series, ids: list[str],
                      censor_date) -> pd.Timestamp | None:
    """Raise for a missing surgery date, an event or follow-up before surgery, a recurrence
    after death, a follow-up without an end, or surgery after ``censor_date``; returns the
    censor date as a timestamp (None without one)."""

    def fail(mask: pd.Series, what: str) -> None:
        if mask.any():
            idx = np.flatnonzero(mask.to_numpy())
            raise ClinicalTableError(
                f"{what} for {_name_rows([ids[i] for i in idx], idx + 1)}"
            )

    fail(surgery.isna(), "surgery_date is missing")
    for column in ("recurrence_date", "death_date", "last_followup_date"):
        if column in dates:
            fail(dates[column] < surgery, f"{column} is before surgery_date")
    fail(recurrence > death, "recurrence_date is after death_date")
    fail(death.isna() & followup.isna(),
         "last_followup_date is missing (and no death_date) so follow-up has no end")
    censor = None
    if censor_date is not None:
        censor = pd.Timestamp(censor_date)
        fail(surgery > censor, f"surgery_date is after the censor date {censor.date()}")
    return censor


def _set_duration(out: pd.DataFrame, end: pd.Series, event: pd.Series, surgery: pd.Series,
                  censor: pd.Timestamp | None, name: str) -> None:
    """Set ``<name>_months`` (surgery to ``end``) and ``<name>_event`` in ``out``, cut at the
    censor date (events after it ignored)."""
    end = end.copy()
    event = event.copy()
    if censor is not None:
        late = end > censor
        end[late] = censor
        event[late] = False
    days = (end - surgery).dt.days.astype(float)
    out[f"{name}_months"] = days / DAYS_PER_MONTH
    out[f"{name}_event"] = event.astype(int).to_numpy()
