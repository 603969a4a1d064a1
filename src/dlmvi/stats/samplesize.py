"""Is the cohort big enough? Minimum sample size of a logistic prediction model (Riley 2020).

Riley RD et al., "Calculating the sample size required for developing a clinical prediction
model", BMJ 2020;368:m441 (binary outcome, the formulas of R ``pmsampsize``, type ``"b"``).
With ``p`` candidate predictor parameters, outcome prevalence ``phi`` and the anticipated
Cox-Snell R-squared ``R2cs`` of the model, the minimum ``n`` is the largest of:

1. expected uniform shrinkage ``S`` >= 0.9:
   ``n1 = p / ((S - 1) * ln(1 - R2cs / S))``;
2. a small optimism in the apparent Nagelkerke R-squared (<= 0.05):
   ``S2 = R2cs / (R2cs + 0.05 * max(R2cs))``, ``n2 = p / ((S2 - 1) * ln(1 - R2cs / S2))``
   with ``max(R2cs) = 1 - (phi^phi * (1 - phi)^(1 - phi))^2``;
3. the overall risk (intercept) estimated within +-0.05:
   ``n3 = (1.96 / 0.05)^2 * phi * (1 - phi)``.

Each ``n`` is rounded up, as pmsampsize does; events = ``n * phi`` (rounded up), events per
parameter = events / p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dlmvi.errors import StatisticsError

__all__ = ["SampleSize", "riley_sample_size", "cox_snell_r2"]


@dataclass(frozen=True)
class SampleSize:
    """The minimum sample size and what decided it (one row per criterion in :meth:`to_dict`)."""

    parameters: int
    prevalence: float
    r2_cs: float
    max_r2_cs: float
    shrinkage: float
    n_criteria: tuple[int, int, int]
    shrinkage_2: float

    @property
    def n(self) -> int:
        return max(self.n_criteria)

    @property
    def events(self) -> int:
        return math.ceil(self.n * self.prevalence)

    @property
    def events_per_parameter(self) -> float:
        return self.events / self.parameters

    @property
    def deciding(self) -> int:
        """The criterion (1, 2 or 3) that needs the most patients."""
        return 1 + self.n_criteria.index(self.n)

    def to_dict(self) -> dict:
        return {"method": "Riley et al. 2020 (BMJ 368:m441), binary outcome; the formulas of R pmsampsize",
                "parameters": self.parameters, "prevalence": self.prevalence, "r2_cs": self.r2_cs,
                "max_r2_cs": self.max_r2_cs, "shrinkage": self.shrinkage, "shrinkage_criterion_2": self.shrinkage_2,
                "n_criterion_1": self.n_criteria[0], "n_criterion_2": self.n_criteria[1],
                "n_criterion_3": self.n_criteria[2], "n": self.n, "events": self.events,
                "events_per_parameter": self.events_per_parameter, "deciding_criterion": self.deciding}


def _n_for_shrinkage(p: int, r2: float, s: float) -> int:
    return math.ceil(p / ((s - 1) * math.log(1 - r2 / s)))


def riley_sample_size(parameters: int, prevalence: float, r2_cs: float, shrinkage: float = 0.9,
                      mmoe: float = 0.05) -> SampleSize:
    """Minimum ``n`` for a logistic model (R ``pmsampsize(type = "b", rsquared = r2_cs,
    parameters = parameters, prevalence = prevalence)``).

    Args:
        parameters: candidate predictor parameters (coefficients besides the intercept).
        prevalence: outcome proportion (0-1).
        r2_cs: anticipated Cox-Snell R-squared (e.g. of an existing model, :func:`cox_snell_r2`).
        shrinkage: target expected shrinkage (0.9).
        mmoe: margin of error of the overall risk (0.05).

    Raises:
        StatisticsError: parameters < 1, prevalence outside (0, 1), or ``r2_cs`` outside
            (0, max R2cs) (no model can explain more).
    """
    if parameters < 1:
        raise StatisticsError(f"sample size: {parameters} predictor parameters; the model needs at least one")
    if not 0 < prevalence < 1:
        raise StatisticsError(f"sample size: prevalence {prevalence} must lie strictly between 0 and 1")
    max_r2 = 1 - (prevalence**prevalence * (1 - prevalence) ** (1 - prevalence)) ** 2
    if not 0 < r2_cs < max_r2:
        raise StatisticsError(f"sample size: Cox-Snell R-squared {r2_cs:.4g} must lie in (0, {max_r2:.4g}), "
                              f"the largest possible at prevalence {prevalence:.3g}")
    n1 = _n_for_shrinkage(parameters, r2_cs, shrinkage)
    s2 = r2_cs / (r2_cs + 0.05 * max_r2)
    n2 = _n_for_shrinkage(parameters, r2_cs, s2)
    n3 = math.ceil((1.96 / mmoe) ** 2 * prevalence * (1 - prevalence))
    return SampleSize(parameters, float(prevalence), float(r2_cs), float(max_r2), float(shrinkage),
                      (n1, n2, n3), float(s2))


def cox_snell_r2(llf: float, llnull: float, n: int) -> float:
    """Cox-Snell R-squared ``1 - exp(2 (llnull - llf) / n)`` of a fitted model."""
    return float(1 - math.exp(2 * (llnull - llf) / n))
