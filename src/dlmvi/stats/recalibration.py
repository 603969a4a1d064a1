"""Recalibration of predicted MVI probabilities to a new site (``dlmvi recalibrate``).

A model taken to another hospital usually keeps its ranking (AUC) but not its calibration:
the new site's MVI prevalence and scanner shift move every predicted risk. Two classical
updates (Steyerberg, *Clinical Prediction Models*, ch. 20), both on the logit of the model's
probability ``lp = logit(p)``:

* ``intercept`` - calibration-in-the-large: ``logit P(y) = a + lp`` (slope fixed at 1, R's
  ``glm(y ~ offset(lp), family = binomial)``); corrects the average risk only;
* ``logistic`` - logistic recalibration: ``logit P(y) = a + b * lp`` (R's
  ``glm(y ~ lp, family = binomial)``); also shrinks or stretches predictions that are too
  extreme or too timid.

Neither changes the ranking of patients (the map is monotone), so the AUC of a single update
is unchanged; calibration and the Brier score are what they repair. How well an update works
is estimated honestly by cross-validation within the site's sample
(:func:`cross_validated_update`): the update is fitted on k - 1 folds and evaluated on the
held-out fold, so no patient is scored by an update fitted on it.

A site's updates are saved as ``MODEL_DIR/sites/NAME.json`` (:func:`write_site`) and applied
by ``dlmvi predict --site`` and ``dlmvi predict-patient --site`` (:func:`apply_site`).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlmvi.errors import ConfigError, StatisticsError, StatisticsWarning

METHODS = ("intercept", "logistic")
SITE_FORMAT = "dlmvi-site/1"
SITES_DIR = "sites"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def logit(p) -> np.ndarray:
    """``log(p / (1 - p))``; -inf and +inf for probabilities of exactly 0 and 1 (no clipping:
    :data:`~dlmvi.evaluate.calibration.CALIBRATION_RULE` leaves them out of every fit, and an
    update maps them to themselves)."""
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)


def expit(x) -> np.ndarray:
    from scipy.special import expit as _expit

    return _expit(np.asarray(x, dtype=float))


@dataclass
class Recalibration:
    """One recalibration update, scikit-learn style.

    Args:
        method: ``"intercept"`` (calibration-in-the-large) or ``"logistic"`` (intercept and
            slope).

    Attributes (after :meth:`fit`):
        intercept_: ``a``.
        slope_: ``b`` (1 for ``intercept``).
        se_: standard errors of the fitted parameters ({"intercept": .., "slope": ..}).
        n_, n_events_: patients and MVI-positive patients it was fitted on.
        n_excluded_: patients left out for a prediction of exactly 0 or 1 (no log odds).
    """

    method: str = "logistic"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"--method {self.method!r}: use 'intercept' (calibration-in-the-large) or 'logistic'")

    def fit(self, y, prob=None, *, lp=None) -> "Recalibration":
        """Fit on outcomes ``y`` (0/1) and the model's probabilities (or its log odds ``lp``).

        Predictions of exactly 0 or 1 (infinite log odds) are left out of the fit, as of every
        calibration fit; ``n_excluded_`` counts them.
        """
        y = np.asarray(y, dtype=float)
        x = logit(prob) if lp is None else np.asarray(lp, dtype=float)
        if y.shape != x.shape or y.ndim != 1:
            raise StatisticsError(f"outcome {y.shape} and predictions {x.shape} differ in shape")
        if not np.isin(y, (0.0, 1.0)).all():
            raise StatisticsError("recalibration needs a 0/1 outcome (MVI absent/present)")
        finite = np.isfinite(x)
        self.n_excluded_ = int((~finite).sum())
        y, x = y[finite], x[finite]
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == y.size:
            raise StatisticsError(f"recalibration needs patients with and without MVI; all {y.size} have outcome "
                                  f"{int(y[0]) if y.size else '?'}")
        if self.method == "logistic" and np.ptp(x) == 0:
            raise StatisticsError("logistic recalibration needs predictions that vary; use --method intercept")
        beta, cov = _fit(y, x, self.method)
        self.intercept_ = float(beta[0])
        self.slope_ = float(beta[1]) if self.method == "logistic" else 1.0
        se = np.sqrt(np.diag(cov))
        self.se_ = {"intercept": float(se[0]), "slope": float(se[1]) if self.method == "logistic" else 0.0}
        self.n_, self.n_events_ = int(y.size), n_pos
        return self

    def transform_lp(self, lp) -> np.ndarray:
        """Updated log odds ``a + b * lp`` (infinite log odds stay infinite, with the slope's sign)."""
        lp = np.asarray(lp, dtype=float)
        with np.errstate(invalid="ignore"):
            out = self.intercept_ + self.slope_ * lp
        if self.slope_ == 0:
            out = np.where(np.isfinite(lp), out, self.intercept_)
        return out

    def predict_proba(self, prob=None, *, lp=None) -> np.ndarray:
        """Updated probabilities of MVI."""
        x = logit(prob) if lp is None else np.asarray(lp, dtype=float)
        return expit(self.transform_lp(x))

    def to_dict(self) -> dict:
        return {"method": self.method, "intercept": self.intercept_, "slope": self.slope_, "se": self.se_,
                "n": self.n_, "n_events": self.n_events_, "n_excluded": self.n_excluded_,
                "formula": (f"logit(p_site) = {self.intercept_:.4f} + logit(p)" if self.method == "intercept" else
                            f"logit(p_site) = {self.intercept_:.4f} + {self.slope_:.4f} * logit(p)")}

    @classmethod
    def from_dict(cls, d: dict) -> "Recalibration":
        try:
            r = cls(method=d["method"])
            r.intercept_, r.slope_ = float(d["intercept"]), float(d["slope"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"a site recalibration lacks {exc}; rerun `dlmvi recalibrate`") from None
        r.se_ = d.get("se") or {}
        r.n_, r.n_events_, r.n_excluded_ = d.get("n"), d.get("n_events"), int(d.get("n_excluded") or 0)
        return r


def _fit(y: np.ndarray, x: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Maximum likelihood of ``logit P(y) = a + x`` (intercept) or ``a + b x`` (logistic):
    (estimate, covariance) from :func:`dlmvi.evaluate.logit.fit_binomial` (R's glm)."""
    from dlmvi.evaluate.logit import fit_binomial

    if method == "intercept":
        fit = fit_binomial(np.ones((y.size, 1)), y, offset=x)
    else:
        fit = fit_binomial(np.column_stack([np.ones_like(x), x]), y)
    if not fit.ok:
        raise StatisticsError(f"the recalibration model cannot be fitted: {fit.problem()}")
    return fit.params, fit.cov


def performance(y, prob) -> dict:
    """AUC, calibration intercept and slope and Brier score of probabilities, as every stage
    measures them (:class:`dlmvi.evaluate.performance.ProbabilityMetrics`)."""
    from dlmvi.evaluate.performance import ProbabilityMetrics

    m = ProbabilityMetrics.from_predictions(np.asarray(y, dtype=float), np.asarray(prob, dtype=float))
    return {"n": m.n, "n_events": m.n_events, "auc": m.auc, "brier": m.brier,
            "calibration_intercept": m.calibration_intercept, "calibration_slope": m.calibration_slope,
            "calibration_excluded": m.calibration_excluded}


def cross_validated_update(y, prob=None, *, lp=None, method: str = "logistic", folds: int = 5,
                           seed: int = 0) -> dict:
    """Before/after figures of an update, the "after" estimated by stratified k-fold CV.

    Each patient's updated probability comes from the update fitted on the other folds.

    Args:
        y: 0/1 outcome; prob: the model's probabilities (or ``lp``, its log odds).
        method: see :class:`Recalibration`.
        folds: folds (reduced to the smaller class size, at least 2).
        seed: seed of the stratified fold assignment.

    Returns:
        ``{"before": performance, "after": performance, "folds": k, "seed": seed,
        "cv_probabilities": out-of-fold updated probabilities (list)}``.
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=int)
    x = logit(prob) if lp is None else np.asarray(lp, dtype=float)
    k = min(int(folds), int(np.bincount(y, minlength=2).min()))
    if k < 2:
        raise StatisticsError(f"cross-validating a recalibration needs at least 2 patients with and 2 without MVI; "
                              f"the site has {int(y.sum())} with and {int((1 - y).sum())} without")
    out = np.empty(y.size)
    for i, (tr, te) in enumerate(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y)):
        try:
            out[te] = Recalibration(method).fit(y[tr], lp=x[tr]).predict_proba(lp=x[te])
        except StatisticsError as exc:
            raise StatisticsError(f"cross-validating the {method} recalibration: fold {i + 1} of {k} cannot be fitted "
                                  f"({exc}); with so few patients the predictions separate MVI perfectly - use "
                                  "--method intercept, fewer --folds, or more patients") from None
    return {"before": performance(y, expit(x)), "after": performance(y, out), "folds": k, "seed": int(seed),
            "cv_probabilities": out.tolist()}


# ---------------------------------------------------------------------------------- sites
def check_site_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"--site {name!r}: use letters, digits, '-', '_' or '.' (at most 64 characters), "
                          "e.g. --site hospital-B")
    return name


def site_path(model_dir, name: str) -> Path:
    """``MODEL_DIR/sites/NAME.json``."""
    return Path(model_dir) / SITES_DIR / f"{check_site_name(name)}.json"


def write_site(model_dir, doc: dict) -> Path:
    """Write a site document atomically into the model folder."""
    from dlmvi.io.atomic import write_json

    return write_json(site_path(model_dir, doc["site"]), doc)


def read_site(model_dir_or_file, name: str | None = None) -> dict:
    """Read ``sites/NAME.json`` of a model folder (or a site file given by path).

    Raises:
        ConfigError: no such site (the message lists the sites the folder has).
    """
    p = Path(model_dir_or_file)
    if name is not None and not p.is_file():
        if str(name).endswith(".json") and Path(name).is_file():
            p = Path(name)
        else:
            p = site_path(p, name)
    if not p.is_file():
        known = sorted(q.stem for q in (p.parent.glob("*.json") if p.parent.is_dir() else []))
        raise ConfigError(f"site {name!r}: {p} does not exist; calibrate it first with `dlmvi recalibrate MODEL_DIR "
                          f"PREDICTIONS.csv --site {name}`" + (f" (calibrated sites: {', '.join(known)})" if known else ""))
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON ({exc}); rerun `dlmvi recalibrate`") from None
    if doc.get("format") != SITE_FORMAT:
        raise ConfigError(f"{p}: format {doc.get('format')!r} is not {SITE_FORMAT!r}; rerun `dlmvi recalibrate`")
    return doc


def check_site_model(site: dict, weights_sha256: str | None) -> None:
    """Refuse a site's update fitted on another model's predictions (e.g. a folder re-exported
    from a retrained run keeps its ``sites/``): its intercept and slope describe that model.

    Raises:
        ConfigError: the site records other weights than ``weights_sha256``.

    Warns:
        StatisticsWarning: the site file or the model records no weights identity (files written
            before the check existed): the check could not be made, and the message says so.
    """
    fitted = site.get("model_weights_sha256")
    if not fitted or not weights_sha256:
        missing = "the site file" if not fitted else "the model"
        warnings.warn(f"site {site.get('site')!r}: {missing} records no weights identity, so it was NOT checked that "
                      "the site's update was fitted on this model's predictions; rerun `dlmvi recalibrate` to record "
                      "it", StatisticsWarning, stacklevel=2)
        return
    if fitted != weights_sha256:
        raise ConfigError(f"site {site.get('site')!r} was fitted on the predictions of another model (weights "
                          f"{fitted[:12]}..., this model {weights_sha256[:12]}...); its update does not apply. Predict "
                          f"the site's patients with this model and rerun `dlmvi recalibrate MODEL_DIR PREDICTIONS.csv "
                          f"--site {site.get('site')}`")


def list_sites(model_dir) -> list[dict]:
    """Every readable site document of a model folder (sorted by name); an unreadable one is
    named in a warning (with why), never dropped unsaid."""
    d = Path(model_dir) / SITES_DIR
    out = []
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            out.append(read_site(p))
        except ConfigError as exc:
            warnings.warn(f"site file {p} left out: {exc}", StatisticsWarning, stacklevel=2)
    return out


def apply_site(prob, site: dict, which: str = "dl") -> np.ndarray:
    """A site's update applied to DL-MVI probabilities (``which="dl"``) or nomogram risks
    (``which="nomogram"``).

    Raises:
        ConfigError: the site holds no update for ``which``.
    """
    upd = site.get(which)
    if not upd:
        raise ConfigError(f"site {site.get('site')!r} has no {which} recalibration (it was fitted without "
                          f"{'the nomogram inputs' if which == 'nomogram' else 'DL-MVI'}); rerun `dlmvi recalibrate`")
    return Recalibration.from_dict(upd).predict_proba(np.asarray(prob, dtype=float))


def site_document(name: str, y, dl_prob, method: str, *, nomogram_lp=None, folds: int = 5, seed: int = 0,
                  source: str = "", synthetic: bool = False, threshold: float) -> dict:
    """Fit a site's updates (DL-MVI and, with ``nomogram_lp``, the nomogram) and their CV check.

    Args:
        name: the site's name.
        y: 0/1 MVI of the site's labelled patients.
        dl_prob: the model's DL-MVI probabilities for them.
        method: ``intercept`` or ``logistic``.
        nomogram_lp: the nomogram's linear predictor for them (NaN rows are left out), or None.
        folds, seed: of the cross-validated before/after figures.
        source: file the labels and predictions came from (recorded).
        threshold: the DL-MVI threshold (recorded; the decision threshold is not changed).

    Returns:
        the ``sites/NAME.json`` document.
    """
    import datetime as dt

    import dlmvi

    check_site_name(name)
    y = np.asarray(y, dtype=int)
    out = {"format": SITE_FORMAT, "site": name, "method": method, "dlmvi_version": dlmvi.__version__,
           "created": dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S"), "source": source,
           "n": int(y.size), "n_events": int(y.sum()), "synthetic": bool(synthetic), "dl_threshold": threshold,
           "evaluation": f"before: the model as exported; after: stratified {folds}-fold cross-validation within the "
                         f"site (each patient scored by an update fitted on the other folds; seed {seed})"}
    out["dl"] = Recalibration(method).fit(y, dl_prob).to_dict()
    out["dl_cv"] = {k: v for k, v in cross_validated_update(y, dl_prob, method=method, folds=folds, seed=seed).items()
                    if k != "cv_probabilities"}
    out["nomogram"] = out["nomogram_cv"] = None
    if nomogram_lp is not None:
        lp = np.asarray(nomogram_lp, dtype=float)
        ok = np.isfinite(lp)
        if ok.sum() < len(lp):
            warnings.warn(f"site {name}: {int((~ok).sum())} patient(s) without the nomogram's inputs are left out of "
                          "its recalibration", StatisticsWarning, stacklevel=2)
        if ok.any() and 0 < y[ok].sum() < ok.sum():
            out["nomogram"] = Recalibration(method).fit(y[ok], lp=lp[ok]).to_dict()
            out["nomogram_cv"] = {k: v for k, v in cross_validated_update(y[ok], lp=lp[ok], method=method, folds=folds,
                                                                          seed=seed).items() if k != "cv_probabilities"}
    for key in ("dl", "nomogram"):
        if out[key] is not None and method == "logistic" and not math.isfinite(out[key]["slope"]):
            raise StatisticsError(f"site {name}: the {key} recalibration slope could not be estimated")
    return out


__all__ = ["Recalibration", "check_site_model", "cross_validated_update", "performance", "site_document", "write_site", "read_site",
           "list_sites", "apply_site", "site_path", "METHODS", "SITE_FORMAT", "logit", "expit", "check_site_name"]
