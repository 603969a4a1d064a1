"""What R's ``survival`` prints about a Cox model beyond the hazard ratios.

lifelines fits the model (Efron ties); this module adds the pieces lifelines computes
differently or not at all, each as R's ``survival`` 3.x does it:

* :func:`cox_tests` - likelihood-ratio and score tests of all coefficients
  (``summary(coxph)$logtest`` and ``$sctest``), from the Efron partial likelihood.
* :func:`cox_zph` - the proportional-hazards test of ``cox.zph(fit, transform = "km")``:
  since survival 3.0 a score test for adding ``x * g(t)`` to the model (``g`` = 1 - the
  Kaplan-Meier estimate just before t, centred on the events) with the full information
  matrix, per term and global. lifelines' ``proportional_hazard_test`` is the older
  approximation (a regression of scaled Schoenfeld residuals) and differs.
* :func:`concordance` - Harrell's C of the linear predictor with its infinitesimal-jackknife
  standard error (``concordance(coxph)``); pairs tied in time are not comparable, pairs tied
  in risk count one half, a patient censored at another's event time counts as at risk.
* :func:`multivariable_cox` - a Cox model of several covariates with HR, CI and p per term,
  the tests above and the complete cases used.

Times are in months; the arrays are one entry per patient.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from dlmvi.errors import StatisticsError

__all__ = ["efron_loglik", "cox_tests", "cox_zph", "concordance", "fit_cox", "multivariable_cox"]

# lifelines' Newton-Raphson tolerances tightened so coefficients agree with R's coxph to ~1e-9
_FIT_OPTIONS = {"precision": 1e-12, "r_precision": 1e-14, "max_steps": 100}


def _chi2(stat: float, df: int) -> dict[str, float]:
    stat = float(max(stat, 0.0))
    return {"chi2": stat, "df": int(df), "p": float(stats.chi2.sf(stat, df))}


def _efron(time: np.ndarray, event: np.ndarray, x: np.ndarray, eta: np.ndarray,
           g: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Efron log partial likelihood, score and information at linear predictor ``eta``.

    With ``g`` (one value per patient, a function of its time) the covariates are extended
    to ``[x, x * g(t)]`` evaluated at each event time, as ``survival``'s ``zph1`` C routine;
    the score and information are then of length / size ``2p``.
    """
    n, p = x.shape
    x = x - x.mean(axis=0)  # as survival's C code: centring changes nothing but rounding
    r = np.exp(eta - eta.max())
    order = np.argsort(time, kind="stable")
    t, e, xs, rs = time[order], event[order].astype(bool), x[order], r[order]
    gs = None if g is None else g[order]
    # sums over {time >= t}: reverse cumulative sums, read at each time's first index
    s0 = np.cumsum(rs[::-1])[::-1]
    s1 = np.cumsum((rs[:, None] * xs)[::-1], axis=0)[::-1]
    s2 = np.cumsum((rs[:, None, None] * xs[:, :, None] * xs[:, None, :])[::-1], axis=0)[::-1]
    q = 2 * p if g is not None else p
    u, info, ll = np.zeros(q), np.zeros((q, q)), 0.0
    for tt in np.unique(t[e]):
        first = np.searchsorted(t, tt, side="left")
        dead = np.flatnonzero((t == tt) & e)
        d = dead.size
        d0 = rs[dead].sum()
        d1 = (rs[dead, None] * xs[dead]).sum(axis=0)
        d2 = (rs[dead, None, None] * xs[dead, :, None] * xs[dead, None, :]).sum(axis=0)
        w = 1.0 if gs is None else gs[dead[0]]
        xd = xs[dead].sum(axis=0)
        u[:p] += xd
        if gs is not None:
            u[p:] += w * xd
        ll += float(np.sum(np.log(rs[dead])))
        for k in range(d):
            f = k / d
            a0 = s0[first] - f * d0
            a1 = s1[first] - f * d1
            a2 = s2[first] - f * d2
            mean = a1 / a0
            v = a2 / a0 - np.outer(mean, mean)
            ll -= np.log(a0)
            u[:p] -= mean
            info[:p, :p] += v
            if gs is not None:
                u[p:] -= w * mean
                info[:p, p:] += w * v
                info[p:, :p] += w * v
                info[p:, p:] += w * w * v
    # log(r) was shifted by max(eta) for stability; the likelihood is shift-invariant
    return ll, u, info


def efron_loglik(time, event, eta) -> float:
    """Efron log partial likelihood of linear predictor ``eta`` (R ``coxph``'s ``loglik``)."""
    time, event, eta = (np.asarray(v, dtype=float) for v in (time, event, eta))
    return _efron(time, event, np.zeros((time.size, 1)), eta)[0]


def cox_tests(time, event, x, beta) -> dict[str, dict[str, float]]:
    """Likelihood-ratio and score tests that all coefficients are 0.

    Args:
        time, event: survival data (months, 0/1).
        x: covariates, shape (n, p). beta: the fitted coefficients (Efron).

    Returns:
        ``{"lr_test": {chi2, df, p}, "score_test": {chi2, df, p}}`` as
        ``summary(coxph)$logtest`` and ``$sctest``.
    """
    time, event = np.asarray(time, float), np.asarray(event, float)
    x = np.asarray(x, float).reshape(time.size, -1)
    beta = np.asarray(beta, float)
    ll1 = _efron(time, event, x, x @ beta)[0]
    ll0, u0, i0 = _efron(time, event, x, np.zeros(time.size))
    score = float(u0 @ np.linalg.solve(i0, u0))
    return {"lr_test": _chi2(2.0 * (ll1 - ll0), x.shape[1]), "score_test": _chi2(score, x.shape[1])}


def _km_before(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Kaplan-Meier survival of all patients just before each patient's own time, S(t-)."""
    ut = np.unique(time)
    n_risk = np.array([(time >= v).sum() for v in ut], dtype=float)
    n_event = np.array([((time == v) & (event == 1)).sum() for v in ut], dtype=float)
    surv = np.cumprod(1.0 - n_event / n_risk)
    idx = np.searchsorted(ut, time, side="left")  # km times strictly below t: idx of them
    return np.concatenate([[1.0], surv])[idx]


def cox_zph(time, event, x, beta, names: Sequence[str],
            terms: dict[str, Sequence[int]] | None = None) -> dict[str, Any]:
    """Test of proportional hazards, R ``cox.zph(fit, transform = "km")`` (survival >= 3.0).

    Args:
        time, event: survival data. x: covariates (n, p). beta: fitted coefficients (Efron).
        names: column names (one term per column unless ``terms`` is given).
        terms: {term: column indices}, e.g. a factor's indicator columns tested together
            (R's default ``terms = TRUE``: one row per model term with its df).

    Returns:
        ``{"transform": "km", "terms": {name: {chisq, df, p}}, "global": {chisq, df, p}}``.
    """
    time, event = np.asarray(time, float), np.asarray(event, float)
    x = np.asarray(x, float).reshape(time.size, -1)
    p = x.shape[1]
    ttimes = 1.0 - _km_before(time, event)
    g = ttimes - ttimes[event == 1].mean()
    _, u, info = _efron(time, event, x, x @ np.asarray(beta, float), g=g)

    def test(cols: list[int]) -> dict[str, float]:
        kk = list(range(p)) + [p + c for c in cols]
        uu = np.concatenate([np.zeros(p), u[[p + c for c in cols]]])
        stat = float(uu @ np.linalg.solve(info[np.ix_(kk, kk)], uu))
        res = _chi2(stat, len(cols))
        return {"chisq": res["chi2"], "df": res["df"], "p": res["p"]}

    groups = terms if terms is not None else {str(nm): [j] for j, nm in enumerate(names)}
    return {"transform": "km", "terms": {str(k): test(list(v)) for k, v in groups.items()},
            "global": test(list(range(p)))}


def concordance(time, event, risk) -> dict[str, float]:
    """Harrell's C of a risk score (higher = earlier event) with R's standard error.

    As R's ``concordance(coxph_fit)`` (``timewt = "n"``): ``c`` = (concordant + tied / 2) /
    comparable pairs; ``se`` is the square root of its infinitesimal-jackknife variance.
    Also returns the pair counts ``concordant, discordant, tied_x, tied_y, tied_xy``.
    """
    time, event, risk = (np.asarray(v, dtype=float) for v in (time, event, risk))
    n = time.size
    infl = np.zeros((n, 3))  # per patient: concordant, discordant, tied.x pairs it is part of
    tied_y = tied_xy = 0
    for i in np.flatnonzero(event == 1):
        later = (time > time[i]) | ((time == time[i]) & (event == 0))
        same = (time == time[i]) & (event == 1) & (np.arange(n) > i)
        tied_xy += int(np.sum(same & (risk == risk[i])))
        tied_y += int(np.sum(same & (risk != risk[i])))
        for col, mask in enumerate((later & (risk < risk[i]), later & (risk > risk[i]),
                                    later & (risk == risk[i]))):
            k = mask.sum()
            infl[i, col] += k
            infl[mask, col] += 1
    conc, disc, tx = infl.sum(axis=0) / 2  # each pair was counted for both its patients
    npair = conc + disc + tx
    if npair == 0:
        raise StatisticsError("no comparable pairs: the concordance needs at least one event "
                              "before another patient's follow-up ends")
    somer = (conc - disc) / npair
    dfbeta = (infl[:, 0] - infl[:, 1]) / npair - somer / npair * infl.sum(axis=1)
    return {"c": float((somer + 1) / 2), "se": float(np.sqrt(np.sum(dfbeta ** 2) / 4)),
            "concordant": int(conc), "discordant": int(disc), "tied_x": int(tx),
            "tied_y": tied_y, "tied_xy": tied_xy}


def fit_cox(time, event, x: pd.DataFrame, conf_level: float = 0.95):
    """Efron Cox fit (lifelines, tolerances tightened to R's); the fitted ``CoxPHFitter``.

    Raises:
        StatisticsError: the fit does not converge (e.g. a covariate separates the events).
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError, ConvergenceWarning

    frame = x.reset_index(drop=True).astype(float)
    frame["_time"], frame["_event"] = np.asarray(time, float), np.asarray(event, float)
    fitter = CoxPHFitter(alpha=1 - conf_level)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            fitter.fit(frame, "_time", "_event", fit_options=dict(_FIT_OPTIONS))
    except (ConvergenceError, np.linalg.LinAlgError) as exc:
        raise StatisticsError(f"the Cox model did not converge ({str(exc).splitlines()[0]})") from exc
    for item in caught:
        message = str(item.message)
        # lifelines' checks before fitting (low variance, correlation with time) are advisory;
        # R fits such data too. Trouble in Newton-Raphson is not.
        if issubclass(item.category, ConvergenceWarning) and "Newton-Raphson" in message \
                or "suspiciously close to 0" in message:
            raise StatisticsError(f"the Cox model did not converge ({message.splitlines()[0]}); a "
                                  "covariate may separate the events completely")
    return fitter


def multivariable_cox(table: pd.DataFrame, time_column: str, event_column: str,
                      covariates: dict[str, pd.Series], id_column: str = "patient_id",
                      conf_level: float = 0.95) -> dict[str, Any]:
    """Cox model (Efron ties) of several covariates on the complete cases.

    Args:
        table: one row per patient with ``time_column``, ``event_column`` and ``id_column``.
        covariates: {term name: numeric Series aligned with ``table``} (0/1 or continuous);
            NaN marks a missing value.
        conf_level: confidence level of the hazard-ratio intervals.

    Returns:
        ``{"terms": {name: {hr, ci, p, coef, se}}, "n", "events", "excluded" (patients
        without complete data), "lr_test", "score_test", "wald_test", "concordance",
        "ph_test", "ties": "efron", "conf_level"}`` (R ``summary(coxph)``,
        ``concordance``, ``cox.zph(transform = "km")``).

    Raises:
        StatisticsError: no complete case with an event, a constant covariate, or no
            convergence.
    """
    names = list(covariates)
    x = pd.DataFrame({k: pd.to_numeric(v, errors="coerce") for k, v in covariates.items()},
                     index=table.index)
    t = pd.to_numeric(table[time_column], errors="coerce")
    e = pd.to_numeric(table[event_column], errors="coerce")
    ok = (x.notna().all(axis=1) & t.notna() & e.notna()).to_numpy()
    ids = table[id_column].astype(str).to_numpy() if id_column in table else np.arange(len(table)).astype(str)
    excluded = [str(v) for v in ids[~ok]]
    x, t, e = x.loc[ok], t[ok].to_numpy(float), e[ok].to_numpy(float)
    if e.sum() == 0:
        raise StatisticsError("no events among the patients with complete covariates")
    constant = [k for k in names if x[k].nunique() < 2]
    if constant:
        raise StatisticsError(f"covariates {constant} are constant among the {len(t)} complete "
                              "cases; leave them out")
    fitter = fit_cox(t, e, x, conf_level)
    beta = fitter.params_[names].to_numpy(float)
    se = fitter.standard_errors_[names].to_numpy(float)
    z = stats.norm.ppf(1 - (1 - conf_level) / 2)
    terms = {k: {"hr": float(np.exp(b)), "ci": [float(np.exp(b - z * s)), float(np.exp(b + z * s))],
                 "p": float(2 * stats.norm.sf(abs(b / s))), "coef": float(b), "se": float(s)}
             for k, b, s in zip(names, beta, se)}
    cov = fitter.variance_matrix_.loc[names, names].to_numpy(float)
    xv = x.to_numpy(float)
    return {"terms": terms, "n": int(len(t)), "events": int(e.sum()), "excluded": excluded,
            **cox_tests(t, e, xv, beta), "wald_test": _chi2(float(beta @ np.linalg.solve(cov, beta)), len(names)),
            "concordance": {k: v for k, v in concordance(t, e, xv @ beta).items() if k in ("c", "se")},
            "ph_test": cox_zph(t, e, xv, beta, names), "ties": "efron", "conf_level": conf_level}
