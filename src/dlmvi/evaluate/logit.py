"""The one logistic-regression fitter of dlmvi: maximum likelihood by statsmodels' ``Logit``.

Every maximum-likelihood logistic fit goes through :func:`fit_binomial`: the clinical
regressions (:func:`dlmvi.stats.logistic.fit_logit`, its likelihood-ratio tests), the
calibration intercept, slope and calibration-in-the-large of every probability metric
(:mod:`dlmvi.evaluate.calibration`), a site's recalibration (:mod:`dlmvi.stats.recalibration`)
and the bootstrap of a fixed prediction's calibration (:mod:`dlmvi.stats.bootstrap`). It is
Newton-Raphson from zero (statsmodels' ``method="newton"``, tolerance 1e-12 on the
coefficients), which converges to the MLE of R's ``glm(family = binomial)``; the covariance is
the inverse information at the optimum (R's ``vcov``).

The result says whether it converged and whether statsmodels saw perfect prediction; it never
hides a failed fit behind a number. Callers decide what a failed fit means for them: an error
(a recalibration that cannot be fitted), a named :class:`~dlmvi.errors.NotEstimableWarning`
with NaN (a calibration slope of a cohort that the predictions separate), or the separation
report of a regression table.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from dlmvi.errors import StatisticsError

#: Newton-Raphson settings of every fit (statsmodels' names).
MAX_ITER = 200
TOL = 1e-12


@dataclass(frozen=True)
class LogitFit:
    """A maximum-likelihood logistic fit.

    Attributes:
        params: coefficients (log odds), one per design column.
        cov: their covariance (inverse information), or None when it is singular.
        llf: log-likelihood at the last iterate (at separation: the supremum, approached).
        converged: the coefficients moved less than the tolerance within the iteration limit.
        separated: statsmodels found perfect prediction (some fitted probability 0 or 1):
            the maximum-likelihood estimate does not exist; ``params`` diverge.
        iterations: Newton-Raphson steps taken.
    """

    params: np.ndarray
    cov: np.ndarray | None
    llf: float
    converged: bool
    separated: bool
    iterations: int

    @property
    def ok(self) -> bool:
        """Converged to a finite estimate with a covariance: the numbers mean what they say."""
        return self.converged and not self.separated and self.cov is not None and bool(np.all(np.isfinite(self.params)))

    @property
    def se(self) -> np.ndarray:
        """Standard errors (NaN without a covariance)."""
        if self.cov is None:
            return np.full(self.params.shape, np.nan)
        return np.sqrt(np.diag(self.cov))

    def problem(self) -> str:
        """Why the fit is not usable ('' when it is)."""
        if self.separated:
            return "the outcome is perfectly predicted (separation): the maximum-likelihood estimate does not exist"
        if not self.converged:
            return f"the fit did not converge in {self.iterations} Newton-Raphson steps"
        if self.cov is None or not np.all(np.isfinite(self.params)):
            return "the information matrix is singular"
        return ""


def fit_binomial(design, y, *, offset=None, counts=None) -> LogitFit:
    """Maximum likelihood of ``logit P(y = 1) = offset + design @ beta``.

    Args:
        design: (n, k) design matrix (include the intercept column yourself).
        y: (n,) 0/1 outcome.
        offset: (n,) known part of the linear predictor (e.g. ``logit(p)`` with the slope fixed
            at 1: calibration-in-the-large), or None.
        counts: (n,) non-negative whole numbers: row i counts ``counts[i]`` times (a bootstrap
            resample as multinomial counts); the fit is that of the repeated rows.

    Raises:
        StatisticsError: shapes that do not match, or an outcome that is not 0/1.
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    x = np.asarray(design, dtype=float)
    yy = np.asarray(y, dtype=float)
    off = None if offset is None else np.asarray(offset, dtype=float)
    if x.ndim != 2 or yy.shape != (x.shape[0],) or (off is not None and off.shape != yy.shape):
        raise StatisticsError(f"logistic fit: design {x.shape}, outcome {yy.shape} and offset "
                              f"{None if off is None else off.shape} do not match")
    if not np.isin(yy, (0.0, 1.0)).all():
        raise StatisticsError("logistic fit: the outcome must be 0/1")
    if counts is not None:
        reps = np.asarray(counts)
        if reps.shape != yy.shape or (reps < 0).any() or not np.all(reps == np.round(reps)):
            raise StatisticsError("logistic fit: counts must be whole numbers >= 0, one per row")
        reps = reps.astype(np.int64)
        x, yy = np.repeat(x, reps, axis=0), np.repeat(yy, reps)
        off = None if off is None else np.repeat(off, reps)
    separated = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = sm.Logit(yy, x, offset=off).fit(method="newton", maxiter=MAX_ITER, tol=TOL, disp=0)
        except np.linalg.LinAlgError:
            return LogitFit(np.full(x.shape[1], np.nan), None, float("nan"), False, False, 0)
    for w in caught:
        if issubclass(w.category, PerfectSeparationWarning):
            separated = True
        elif not issubclass(w.category, (ConvergenceWarning, RuntimeWarning)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)  # not ours to swallow
    params = np.asarray(fit.params, dtype=float)
    try:
        cov = np.asarray(fit.cov_params(), dtype=float)
        if not np.all(np.isfinite(cov)):
            cov = None
    except (np.linalg.LinAlgError, ValueError):
        cov = None
    retvals = fit.mle_retvals or {}
    return LogitFit(params=params, cov=cov, llf=float(fit.llf), converged=bool(retvals.get("converged", False)),
                    separated=separated, iterations=int(retvals.get("iterations", 0)))


__all__ = ["LogitFit", "fit_binomial", "MAX_ITER", "TOL"]
