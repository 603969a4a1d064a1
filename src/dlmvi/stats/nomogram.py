"""The clinical nomogram: logistic model of MVI on dichotomised predictors, and its drawing.

The study's nomogram is ``logit(p) = -3.51 + 1.53 * [AFP > 20 ng/mL] + 3.58 * DL-MVI``.
:class:`NomogramModel` fits the same form on any predictors (a cut-off turns a continuous
column into 0/1: ``value > cut-off``), predicts probabilities with a 95 % CI from the
coefficient covariance, and exports itself as JSON. :class:`NomogramDisplay` draws the
points axes (one per predictor), total points and the probability axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from dlmvi.constants import CUTOFFS
from dlmvi.errors import StatisticsError
from dlmvi.stats.logistic import LogitResult, fit_logit, require_numeric

__all__ = ["NomogramModel", "NomogramDisplay", "DEFAULT_PREDICTORS"]

#: The study's nomogram predictors.
DEFAULT_PREDICTORS: tuple[str, ...] = ("afp", "dl_mvi")


def _fmt(v: float) -> str:
    return f"{v:g}"


class NomogramModel:
    """Logistic nomogram on (dichotomised) predictors, scikit-learn style.

    Args:
        predictors: clinical.csv / predictions.csv columns.
        cutoffs: {column: cut-off}; a column with a cut-off enters as ``value > cut-off``
            (1) vs ``<=`` (0). Default: the study's cut-offs (:data:`dlmvi.constants.CUTOFFS`)
            for the predictors that have one; other predictors enter as they are (0/1).
        level: confidence level of :meth:`predict_interval`.
        id_column: column naming patients in messages.
        method: ``"ml"`` (maximum likelihood) or ``"firth"`` (Firth's penalised likelihood,
            finite under separation); see :func:`~dlmvi.stats.logistic.fit_logit`.

    Attributes (after :meth:`fit`):
        intercept_, coef_ (pandas Series by column), cov_ (covariance of
        ``[intercept, coef...]``), result_ (:class:`~dlmvi.stats.logistic.LogitResult`),
        n_, n_events_, ranges_ ({column: (min, max)} of the model inputs), formula_,
        cutoffs_ ({column: cut-off} applied).
    """

    def __init__(self, predictors: Sequence[str] = DEFAULT_PREDICTORS,
                 cutoffs: Mapping[str, float] | None = None, level: float = 0.95,
                 id_column: str = "patient_id", method: str = "ml"):
        self.predictors = tuple(predictors)
        self.cutoffs = cutoffs
        self.level = level
        self.id_column = id_column
        self.method = method

    # -- inputs ---------------------------------------------------------------------------
    def _cutoffs(self) -> dict[str, float]:
        src = CUTOFFS if self.cutoffs is None else self.cutoffs
        return {c: float(src[c]) for c in self.predictors if c in src}

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        """Model inputs: predictors with a cut-off as 0/1 (``> cut-off``), NaN kept."""
        num = require_numeric(x, list(self.predictors), self.id_column)
        for col, cut in self._cutoffs().items():
            num[col] = np.where(num[col].isna(), np.nan, (num[col] > cut).astype(float))
        return num

    def term(self, col: str) -> str:
        """Human-readable name of a model input, e.g. ``afp > 20``."""
        cut = self._cutoffs().get(col)
        return f"{col} > {_fmt(cut)}" if cut is not None else col

    # -- fitting --------------------------------------------------------------------------
    def fit(self, x: pd.DataFrame, y=None, outcome: str = "mvi"):
        """Fit on a table with the predictor columns and a 0/1 outcome.

        Args:
            x: one row per patient.
            y: 0/1 outcome (1 = MVI present); if None, ``x[outcome]`` is used.
        """
        if not self.predictors:
            raise StatisticsError("the nomogram needs at least one predictor")
        data = self.transform(x)
        data["__y__"] = (pd.to_numeric(x[outcome], errors="coerce") if y is None
                         else np.asarray(y, dtype=float))
        if self.id_column in x.columns:
            data[self.id_column] = x[self.id_column].to_numpy()
        res: LogitResult = fit_logit(data, "__y__", list(self.predictors),
                                     id_column=self.id_column, level=self.level,
                                     method=self.method)
        self.result_ = res
        self.intercept_ = float(res.params.iloc[0])
        self.coef_ = res.params.iloc[1:].copy()
        self.cov_ = res.cov.copy()
        self.n_ = res.n
        self.n_events_ = res.n_events
        used = data.dropna(subset=[*self.predictors, "__y__"])
        self.ranges_ = {c: (float(used[c].min()), float(used[c].max())) for c in self.predictors}
        terms = " ".join(
            f"{'+' if b >= 0 else '-'} {abs(b):.3f} * [{self.term(c)}]"
            for c, b in self.coef_.items()
        )
        self.formula_ = f"logit(p) = {self.intercept_:.3f} {terms}"
        self.cutoffs_ = self._cutoffs()
        return self

    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise StatisticsError("the nomogram is not fitted yet; call fit() first")

    # -- prediction -----------------------------------------------------------------------
    def predict_lp(self, x: pd.DataFrame) -> np.ndarray:
        """Linear predictor (log odds of MVI); NaN where an input is missing."""
        self._check_fitted()
        z = self.transform(x)[list(self.predictors)].to_numpy()
        return self.intercept_ + z @ self.coef_.to_numpy()

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        """Probability of MVI, shape (n,)."""
        return 1.0 / (1.0 + np.exp(-self.predict_lp(x)))

    def predict_interval(self, x: pd.DataFrame, level: float | None = None) -> pd.DataFrame:
        """Probability with a Wald CI on the log-odds scale, from the coefficient covariance.

        Returns:
            DataFrame with ``prob, ci_low, ci_high``, the linear predictor ``lp`` and its
            standard error ``se`` (index of ``x``).
        """
        from scipy.special import expit, ndtri  # not scipy.stats: seconds of a cold predict-patient

        self._check_fitted()
        level = self.level if level is None else level
        z = self.transform(x)[list(self.predictors)].to_numpy()
        design = np.column_stack([np.ones(len(z)), z])
        lp = design @ np.concatenate([[self.intercept_], self.coef_.to_numpy()])
        se = np.sqrt(np.einsum("ij,jk,ik->i", design, self.cov_.to_numpy(), design))
        q = ndtri(1 - (1 - level) / 2)  # the normal quantile (scipy.stats.norm.ppf is ndtri)
        return pd.DataFrame({"prob": expit(lp), "ci_low": expit(lp - q * se),
                             "ci_high": expit(lp + q * se), "lp": lp, "se": se}, index=x.index)

    # -- export ---------------------------------------------------------------------------
    @classmethod
    def from_json(cls, doc: Mapping, level: float = 0.95) -> "NomogramModel":
        """A fitted model from :meth:`to_json` (also the nomogram of an exported model).

        Restores what prediction needs (coefficients, cut-offs, covariance); the drawing's
        ranges are not stored, so :meth:`points_table` is not available on it.

        Raises:
            StatisticsError: the document lacks the intercept, coefficients or covariance, or
                they do not match.
        """
        try:
            coefs = {str(c): float(b) for c, b in doc["coefficients"].items()}
            intercept = float(doc["intercept"])
            cov = np.asarray(doc["covariance"], dtype=float)
            terms = [str(t) for t in doc["covariance_terms"]]
            cutoffs = {str(c): float(v) for c, v in (doc.get("cutoffs") or {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StatisticsError(f"the nomogram lacks its intercept, coefficients or covariance ({exc})") from None
        if terms[1:] != list(coefs) or cov.shape != (len(terms), len(terms)):
            raise StatisticsError(f"the nomogram covariance ({cov.shape}, terms {terms}) does not match its "
                                  f"coefficients {list(coefs)}")
        model = cls(list(coefs), cutoffs=cutoffs, level=level, method=str(doc.get("method", "ml")))
        model.intercept_ = intercept
        model.coef_ = pd.Series(coefs, dtype=float)
        model.cov_ = pd.DataFrame(cov, index=terms, columns=terms)
        model.n_, model.n_events_ = doc.get("n"), doc.get("n_events")
        model.cutoffs_ = model._cutoffs()
        model.formula_ = str(doc.get("formula", ""))
        return model

    def to_json(self, validation: Mapping[str, Mapping] | None = None, **extra) -> dict:
        """A JSON-ready description of the fitted model.

        Args:
            validation: {cohort: metrics} to include under ``"validation"``.
            **extra: further top-level keys (e.g. ``synthetic``, ``develop_cohort``).

        Returns:
            dict with ``intercept``, ``coefficients`` ({column: beta}), ``odds_ratios``,
            ``cutoffs``, ``terms`` ({column: readable term}), ``formula``, ``n``,
            ``n_events``, ``covariance`` (rows/columns ``["(Intercept)", *predictors]``),
            ``method`` (``"ml"``/``"firth"``) and ``validation``.
        """
        self._check_fitted()
        out = {
            "intercept": self.intercept_,
            "coefficients": {c: float(b) for c, b in self.coef_.items()},
            "odds_ratios": {c: float(np.exp(b)) for c, b in self.coef_.items()},
            "cutoffs": self._cutoffs(),
            "terms": {c: self.term(c) for c in self.predictors},
            "formula": self.formula_,
            "n": self.n_,
            "n_events": self.n_events_,
            "covariance": self.cov_.to_numpy().tolist(),
            "covariance_terms": list(self.cov_.index),
            "method": self.method,
        }
        out.update(extra)
        out["validation"] = {str(k): dict(v) for k, v in (validation or {}).items()}
        return out

    # -- nomogram points -----------------------------------------------------------------
    def points_table(self, max_points: float = 100.0) -> pd.DataFrame:
        """Points each predictor level contributes (the predictor with the widest effect
        gets ``max_points``).

        Returns:
            DataFrame with ``predictor, term, value, points``.
        """
        self._check_fitted()
        effects = {c: (b * self.ranges_[c][0], b * self.ranges_[c][1])
                   for c, b in self.coef_.items()}
        width = max(abs(hi - lo) for lo, hi in effects.values())
        if width == 0:
            raise StatisticsError("all nomogram coefficients are 0; nothing to draw")
        self._scale = max_points / width
        rows = []
        for c, b in self.coef_.items():
            lo_x, hi_x = self.ranges_[c]
            values = [lo_x, hi_x] if self._cutoffs().get(c) is not None or (lo_x, hi_x) == (0, 1) \
                else list(np.linspace(lo_x, hi_x, 6))
            base = min(effects[c])
            for v in values:
                rows.append({"predictor": c, "term": self.term(c), "value": float(v),
                             "points": float((b * v - base) * self._scale)})
        return pd.DataFrame(rows)

    def points_to_probability(self, total_points, max_points: float = 100.0) -> np.ndarray:
        """Probability of MVI for a total number of points."""
        self.points_table(max_points)
        base = sum(min(b * self.ranges_[c][0], b * self.ranges_[c][1])
                   for c, b in self.coef_.items())
        lp = self.intercept_ + base + np.asarray(total_points, dtype=float) / self._scale
        return 1.0 / (1.0 + np.exp(-lp))


@dataclass
class NomogramDisplay:
    """Drawing of a fitted :class:`NomogramModel`: points axis, one axis per predictor,
    total points and probability of MVI.

    ``points`` is :meth:`NomogramModel.points_table`; ``probability`` has ``total_points,
    probability`` for the probability axis ticks.
    """

    points: pd.DataFrame
    probability: pd.DataFrame
    labels: dict[str, str]
    title: str = ""
    ax_: object = field(default=None, repr=False)

    @classmethod
    def from_model(cls, model: NomogramModel, labels: Mapping[str, str] | None = None,
                   title: str = ""):
        """Compute the axes of ``model``; ``labels`` renames predictors ({column: label})."""
        pts = model.points_table()
        max_total = float(pts.groupby("predictor")["points"].max().sum())
        totals = np.linspace(0, max_total, 401)
        probs = model.points_to_probability(totals)
        ticks = [p for p in (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
                 if probs.min() <= p <= probs.max()]
        lp_base = np.log(np.array(ticks) / (1 - np.array(ticks)))
        # invert the linear map total points -> log odds for the tick positions
        lp0 = np.log(probs[0] / (1 - probs[0]))
        lp1 = np.log(probs[-1] / (1 - probs[-1]))
        tick_pts = (lp_base - lp0) / (lp1 - lp0) * max_total if lp1 != lp0 else lp_base * 0
        prob = pd.DataFrame({"total_points": tick_pts, "probability": ticks})
        lab = {c: model.term(c) for c in model.predictors}
        lab.update(labels or {})
        return cls(points=pts, probability=prob, labels=lab, title=title)

    def plot(self, ax=None):
        """Draw the nomogram as stacked horizontal scales."""
        from dlmvi.evaluate.display import subplots

        preds = list(dict.fromkeys(self.points["predictor"]))
        n_rows = len(preds) + 3
        if ax is None:
            _, ax = subplots(figsize=(8, 0.7 * n_rows + 0.6))
        max_pts = float(self.points["points"].max())
        max_total = float(self.points.groupby("predictor")["points"].max().sum())
        y = n_rows

        def scale(row_y, positions, labels, name, span=None):
            lo, hi = (min(positions), max(positions)) if span is None else span
            ax.plot([lo, hi], [row_y, row_y], color="k", lw=1)
            for x, t in zip(positions, labels):
                ax.plot([x, x], [row_y, row_y + 0.12], color="k", lw=1)
                ax.text(x, row_y + 0.18, t, ha="center", va="bottom", fontsize=7)
            ax.text(-0.03, row_y, name, ha="right", va="center", fontsize=9,
                    transform=ax.get_yaxis_transform())

        # the top points axis spans 0-100; predictors and total points are drawn on their
        # own scales, total points compressed into the same width
        width = max_pts
        ticks = np.linspace(0, max_pts, 11)
        scale(y, ticks, [f"{t:.0f}" for t in ticks], "Points")
        for c in preds:
            y -= 1
            t = self.points[self.points["predictor"] == c]
            scale(y, t["points"].tolist(), [f"{v:g}" for v in t["value"]], self.labels[c])
        y -= 1
        f = width / max_total if max_total else 1.0
        step = next(s for s in (5, 10, 20, 25, 50, 100, 200, 500) if max_total / s <= 8)
        tt = np.arange(0, max_total + 1e-9, step)
        scale(y, (tt * f).tolist(), [f"{v:.0f}" for v in tt], "Total points", span=(0, width))
        y -= 1
        pr = self.probability
        scale(y, (pr["total_points"] * f).tolist(), [f"{p:g}" for p in pr["probability"]],
              "Probability of MVI")
        ax.set_xlim(-0.02 * width, 1.04 * width)
        ax.set_ylim(y - 0.6, n_rows + 0.8)
        ax.axis("off")
        if self.title:
            ax.set_title(self.title, fontsize=9)
        self.ax_ = ax
        return self
