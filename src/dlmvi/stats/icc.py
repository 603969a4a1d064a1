"""Intraclass correlation of repeated measurements (readers, ROI perturbations), as R ``psych::ICC``.

Shrout & Fleiss (1979) forms from the two-way ANOVA of an ``n subjects x k raters`` table
(complete rows only):

* ``ICC1`` - one-way random effects, single rater (each subject rated by different raters);
* ``ICC2`` - two-way random effects, single rater, **absolute agreement** (Shrout & Fleiss
  ICC(2,1); McGraw & Wong ICC(A,1)): the raters are a sample of possible readers and a
  systematic offset between them counts as disagreement. The default of dlmvi: two readers
  drawing boxes, or perturbed ROIs standing for other readers;
* ``ICC3`` - two-way mixed effects, single rater, consistency (ICC(3,1), ICC(C,1)): offsets
  between raters are ignored.

Confidence intervals are psych's (F distribution; for ICC2 the Satterthwaite-type degrees of
freedom of McGraw & Wong 1996). Koo & Li (2016): below 0.5 poor, 0.5-0.75 moderate, 0.75-0.9
good, above 0.9 excellent reliability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from dlmvi.errors import StatisticsError

FORMS = ("ICC1", "ICC2", "ICC3")
DESCRIPTIONS = {
    "ICC1": "one-way random effects, single rater (Shrout & Fleiss ICC(1,1))",
    "ICC2": "two-way random effects, single rater, absolute agreement (Shrout & Fleiss ICC(2,1), "
            "McGraw & Wong ICC(A,1))",
    "ICC3": "two-way mixed effects, single rater, consistency (Shrout & Fleiss ICC(3,1), McGraw & Wong ICC(C,1))",
}


@dataclass(frozen=True)
class ICCResult:
    """One ICC form: estimate, confidence interval and F test (as a row of ``psych::ICC``)."""

    form: str
    icc: float
    ci_low: float
    ci_high: float
    f: float
    df1: float
    df2: float
    p: float
    n: int
    k: int
    level: float

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.form]

    def to_dict(self) -> dict:
        return {"form": self.form, "icc": self.icc, "ci_low": self.ci_low, "ci_high": self.ci_high, "f": self.f,
                "df1": self.df1, "df2": self.df2, "p": self.p, "n": self.n, "k": self.k, "level": self.level,
                "description": self.description}


def _table(ratings) -> np.ndarray:
    try:
        x = np.asarray(ratings, dtype=float)
    except (TypeError, ValueError) as exc:
        raise StatisticsError("ICC ratings must be numbers (subjects x raters)") from exc
    if x.ndim != 2 or x.shape[1] < 2:
        raise StatisticsError(f"ICC needs a subjects x raters table with at least 2 raters, got shape {x.shape}")
    x = x[np.isfinite(x).all(axis=1)]  # complete subjects only
    if x.shape[0] < 2:
        raise StatisticsError(f"ICC needs at least 2 subjects rated by every rater; {x.shape[0]} are complete")
    return x


def icc_all(ratings, level: float = 0.95) -> dict[str, ICCResult]:
    """The three single-rater forms of ``psych::ICC(ratings)`` (its rows ICC1, ICC2, ICC3).

    Args:
        ratings: ``(n_subjects, k_raters)``; subjects with a missing rating are left out.
        level: confidence level.

    Raises:
        StatisticsError: fewer than 2 complete subjects or 2 raters, or no variation at all.
    """
    x = _table(ratings)
    n, k = x.shape
    grand = x.mean()
    ss_total = float(((x - grand) ** 2).sum())
    if ss_total == 0:
        raise StatisticsError(f"ICC undefined: all {n * k} ratings are equal ({grand:g})")
    ss_rows = k * float(((x.mean(axis=1) - grand) ** 2).sum())
    ss_cols = n * float(((x.mean(axis=0) - grand) ** 2).sum())
    ss_err = ss_total - ss_rows - ss_cols
    # numpy floats: perfect agreement (no residual) gives inf/nan where R does, not an exception
    msb, msj = np.float64(ss_rows / (n - 1)), np.float64(ss_cols / (k - 1))
    mse = np.float64(max(ss_err, 0.0) / ((n - 1) * (k - 1)))
    msw = np.float64((ss_cols + max(ss_err, 0.0)) / (n * (k - 1)))
    a = 1 - level
    out: dict[str, ICCResult] = {}

    with np.errstate(divide="ignore", invalid="ignore"):
        # ICC1
        f1, d1n, d1d = msb / msw, n - 1, n * (k - 1)
        icc1 = (msb - msw) / (msb + (k - 1) * msw)
        fl, fu = f1 / stats.f.ppf(1 - a / 2, d1n, d1d), f1 * stats.f.ppf(1 - a / 2, d1d, d1n)
        out["ICC1"] = ICCResult("ICC1", float(icc1), float((fl - 1) / (fl + k - 1)), float((fu - 1) / (fu + k - 1)),
                                float(f1), d1n, d1d, float(stats.f.sf(f1, d1n, d1d)), n, k, level)
        # ICC2 and ICC3 share the F test of subjects against the residual
        f3, d3n, d3d = msb / mse, n - 1, (n - 1) * (k - 1)
        p3 = float(stats.f.sf(f3, d3n, d3d))
        icc2 = (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n)
        fj = msj / mse
        vn = (k - 1) * (n - 1) * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        vd = (n - 1) * k**2 * icc2**2 * fj**2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        v = vn / vd
        fu2, fl2 = stats.f.ppf(1 - a / 2, n - 1, v), stats.f.ppf(1 - a / 2, v, n - 1)
        lo2 = n * (msb - fu2 * mse) / (fu2 * (k * msj + (k * n - k - n) * mse) + n * msb)
        hi2 = n * (fl2 * msb - mse) / (k * msj + (k * n - k - n) * mse + n * fl2 * msb)
        out["ICC2"] = ICCResult("ICC2", float(icc2), float(lo2), float(hi2), float(f3), d3n, d3d, p3, n, k, level)
        icc3 = (msb - mse) / (msb + (k - 1) * mse)
        fl, fu = f3 / stats.f.ppf(1 - a / 2, d3n, d3d), f3 * stats.f.ppf(1 - a / 2, d3d, d3n)
        out["ICC3"] = ICCResult("ICC3", float(icc3), float((fl - 1) / (fl + k - 1)), float((fu - 1) / (fu + k - 1)),
                                float(f3), d3n, d3d, p3, n, k, level)
    return out


def icc(ratings, form: str = "ICC2", level: float = 0.95) -> ICCResult:
    """One ICC form (default ``ICC2``: two-way random, single rater, absolute agreement).

    Args:
        ratings: ``(n_subjects, k_raters)`` table, e.g. a feature of each patient under the
            original ROI and under each perturbed ROI, or DL-MVI's probability with reader
            A's and reader B's boxes.
        form: ``"ICC1"``, ``"ICC2"`` or ``"ICC3"`` (see the module docstring).
    """
    if form not in FORMS:
        raise StatisticsError(f"ICC form {form!r}: use one of {', '.join(FORMS)}")
    return icc_all(ratings, level)[form]


__all__ = ["icc", "icc_all", "ICCResult", "FORMS", "DESCRIPTIONS"]
