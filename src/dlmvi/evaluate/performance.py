"""The one object that measures predicted probabilities: :class:`ProbabilityMetrics`.

Every performance figure of a probability that dlmvi writes - ``dlmvi evaluate`` per cohort,
the figures per cohort and scanner group (``groups.csv``), the nomogram's validation
(``clinical/``), the transport comparison, a site's recalibration before/after, the model card
and the report (which read those files) - is computed here, once, by the same code:

* discrimination: AUC (the Mann-Whitney statistic; DeLong's placements,
  :mod:`dlmvi.evaluate.roc`) with DeLong's CI when there are at least two patients of each
  class (one of each: the AUC without a CI; fewer: NaN);
* calibration (:mod:`dlmvi.evaluate.calibration`, as ``rms::val.prob``): Brier and scaled
  Brier, calibration-in-the-large, calibration intercept and slope with Wald CIs,
  Spiegelhalter's test, Eavg/E90/Emax; predictions of exactly 0 or 1 follow one rule
  (:data:`~dlmvi.evaluate.calibration.CALIBRATION_RULE`); constant predictions have no slope
  (NaN, with a note);
* classification at the model's threshold (or at a given 0/1 decision):
  :func:`dlmvi.evaluate.classification.classification_metrics` (counts, sensitivity,
  specificity, PPV, NPV, accuracy with exact CIs, F1).

A figure that these patients cannot give (one class only, a separated fit) is NaN and says why
in :attr:`ProbabilityMetrics.notes`; it never raises, because a valid table may hold a small
cohort.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from dlmvi.errors import StatisticsError, StatisticsWarning

NAN = float("nan")
#: Keys of the classification part (from :func:`~dlmvi.evaluate.classification.classification_metrics`).
CLASSIFICATION_KEYS = ("tp", "fp", "tn", "fn", "sensitivity", "specificity", "ppv", "npv", "accuracy", "f1")


@dataclass(frozen=True)
class ProbabilityMetrics:
    """Discrimination, calibration and classification of one set of predicted probabilities.

    Build it with :meth:`from_predictions`. Figures that cannot be computed are NaN (see
    ``notes``). Intervals are at ``level`` (DeLong for the AUC, Wald for the calibration fits,
    Clopper-Pearson for the proportions).
    """

    n: int
    n_events: int
    level: float
    auc: float = NAN
    auc_ci_low: float = NAN
    auc_ci_high: float = NAN
    brier: float = NAN
    brier_scaled: float = NAN
    calibration_in_the_large: float = NAN
    calibration_in_the_large_ci: tuple[float, float] = (NAN, NAN)
    calibration_intercept: float = NAN
    calibration_intercept_ci: tuple[float, float] = (NAN, NAN)
    calibration_slope: float = NAN
    calibration_slope_ci: tuple[float, float] = (NAN, NAN)
    calibration_excluded: int = 0
    spiegelhalter_z: float = NAN
    spiegelhalter_p: float = NAN
    eavg: float = NAN
    e90: float = NAN
    emax: float = NAN
    threshold: float | None = None
    classification: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @classmethod
    def from_predictions(cls, y_true, prob, *, threshold: float | None = None, decision=None,
                         level: float = 0.95) -> "ProbabilityMetrics":
        """Measure ``prob`` against the 0/1 outcome ``y_true``.

        Args:
            y_true: 0/1 outcome (1 = MVI present); rows where it or ``prob`` is missing are
                left out.
            prob: predicted probability of MVI, in [0, 1].
            threshold: classify ``prob >= threshold`` as positive (the model's threshold).
            decision: or the 0/1 decision itself (e.g. a predictions file's ``dl_mvi``);
                ``threshold`` then only labels it.
            level: confidence level of every interval.

        Raises:
            StatisticsError: an outcome that is not 0/1 or a probability outside [0, 1].
        """
        from dlmvi.evaluate.calibration import check_probabilities, val_prob

        y = np.asarray(y_true, dtype=float)
        p = np.asarray(prob, dtype=float)
        d = None if decision is None else np.asarray(decision, dtype=float)
        if y.shape != p.shape or (d is not None and d.shape != y.shape):
            raise StatisticsError(f"outcome {y.shape}, probabilities {p.shape} and decisions "
                                  f"{None if d is None else d.shape} differ in shape")
        keep = np.isfinite(y) & np.isfinite(p) & (np.isfinite(d) if d is not None else True)
        y, p = check_probabilities(y[keep], p[keep])
        d = None if d is None else d[keep]
        n, n_events = int(y.size), int(y.sum())
        notes: list[str] = []
        values: dict = {}
        if n:
            ybar = n_events / n
            values["brier"] = float(np.mean((y - p) ** 2))
            if 0 < n_events < n:
                values.update(_discrimination(y, p, level, notes))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", StatisticsWarning)  # recorded in the figures
                    v = val_prob(y, p, level)
                for k in ("brier_scaled", "calibration_in_the_large", "calibration_intercept", "calibration_slope",
                          "calibration_excluded", "spiegelhalter_z", "spiegelhalter_p", "eavg", "e90", "emax"):
                    values[k] = v[k]
                for k in ("calibration_in_the_large_ci", "calibration_intercept_ci", "calibration_slope_ci"):
                    values[k] = tuple(float(x) for x in v[k])
                if v["calibration_excluded"]:
                    notes.append(f"{v['calibration_excluded']} prediction(s) of exactly 0 or 1 left out of the "
                                 "calibration fits (no logit)")
                if np.unique(p).size == 1:
                    values["calibration_slope"], values["calibration_slope_ci"] = NAN, (NAN, NAN)
                    values["calibration_intercept_ci"] = (NAN, NAN)
                    notes.append("predictions are constant: the calibration slope is undefined")
                for k in ("calibration_in_the_large", "calibration_intercept", "calibration_slope"):
                    if not math.isfinite(values[k]) and np.unique(p).size > 1:
                        notes.append(f"{k.replace('_', ' ')} not estimable (the predictions separate the outcomes)")
            else:
                notes.append(f"all {n} patients have outcome {int(y[0])}: AUC and calibration are undefined")
                if ybar in (0.0, 1.0):
                    values["brier_scaled"] = NAN
        out = cls(n=n, n_events=n_events, level=level, threshold=None if threshold is None else float(threshold),
                  notes=tuple(dict.fromkeys(notes)), **values)
        if n and (d is not None or threshold is not None):
            from dlmvi.evaluate.classification import classification_metrics

            positive = d if d is not None else (p >= float(threshold)).astype(float)
            object.__setattr__(out, "classification", classification_metrics(y, positive, level))
        return out

    # ---- views for the files that show these figures
    def to_dict(self) -> dict:
        """Every figure (intervals as lists), the classification flattened in."""
        d = asdict(self)
        c = d.pop("classification")
        for k in ("calibration_in_the_large_ci", "calibration_intercept_ci", "calibration_slope_ci"):
            d[k] = list(d[k])
        d["notes"] = list(d["notes"])
        d.update({k: v for k, v in c.items() if k != "n"})
        return d

    def validation(self) -> dict:
        """The per-cohort entry of ``nomogram.json``'s ``validation`` (and ``dlmvi clinical``)."""
        return {"n": self.n, "n_events": self.n_events, "brier": self.brier, "brier_scaled": self.brier_scaled,
                "calibration_in_the_large": self.calibration_in_the_large,
                "calibration_in_the_large_ci": list(self.calibration_in_the_large_ci),
                "calibration_intercept": self.calibration_intercept,
                "calibration_intercept_ci": list(self.calibration_intercept_ci),
                "calibration_slope": self.calibration_slope, "calibration_slope_ci": list(self.calibration_slope_ci),
                "spiegelhalter_z": self.spiegelhalter_z, "spiegelhalter_p": self.spiegelhalter_p,
                "eavg": self.eavg, "e90": self.e90, "emax": self.emax,
                "auc": self.auc, "auc_ci": [self.auc_ci_low, self.auc_ci_high],
                "calibration_excluded": self.calibration_excluded}

    def summary(self) -> dict:
        """The short set of a comparison row: n, events, AUC with CI, calibration intercept and
        slope, Brier (``groups.csv``, ``transport.csv``, a site's before/after)."""
        return {"n": self.n, "n_events": self.n_events, "auc": self.auc, "auc_ci_low": self.auc_ci_low,
                "auc_ci_high": self.auc_ci_high, "calibration_intercept": self.calibration_intercept,
                "calibration_slope": self.calibration_slope, "brier": self.brier,
                "calibration_excluded": self.calibration_excluded}

    def get(self, key: str, default=NAN):
        """A figure by name, classification figures included."""
        if key in self.classification:
            return self.classification[key]
        return getattr(self, key, default)


def _discrimination(y: np.ndarray, p: np.ndarray, level: float, notes: list[str]) -> dict:
    from dlmvi.evaluate.roc import delong_auc_ci, delong_placements

    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos < 2 or n_neg < 2:
        notes.append(f"{min(n_pos, n_neg)} patient(s) of one class: the AUC has no DeLong interval")
        return {"auc": float(delong_placements(y, p)[0])}
    auc, lo, hi = delong_auc_ci(y.astype(int), p, level=level)
    return {"auc": auc, "auc_ci_low": lo, "auc_ci_high": hi}


__all__ = ["ProbabilityMetrics", "CLASSIFICATION_KEYS"]
