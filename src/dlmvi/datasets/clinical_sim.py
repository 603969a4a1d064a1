"""Simulated clinical table of the synthetic cohort (SYNTHETIC DATA, no real patients).

Draws, for a list of synthetic patients, the MVI grade, the laboratory values and patient
characteristics of study.md's table, a target tumour size and recurrence-free / overall
survival with administrative censoring.

How the 2x2 tables of study.md are reproduced
    For every dichotomised variable and each MVI status (absent / present) the number of
    patients above the study's cut-off is fixed to ``round(n_status * p)``, where ``p`` is the
    study's proportion (e.g. P(AFP > 20 | MVI present) = 125/185). Which patients are above it
    is decided by a correlated latent Gaussian (ALT with AST, TB with CB, PT with INR, ...), so
    the labs are correlated like real ones. The continuous value is then read from a
    per-status distribution (lognormal for AFP, ALT, AST, GGT, TB, CB, PLT; normal for age,
    ALB, PT, INR) whose location is chosen so that exactly that proportion lies above the
    cut-off, using stratified quantiles so that dichotomising at :data:`dlmvi.constants.CUTOFFS`
    gives back the allocated counts exactly. At n = 321 with 136 / 185 patients the table is
    reproduced cell for cell.

Survival model (months after surgery)
    Recurrence time is Weibull with proportional hazards (M1 and M2 raise the hazard);
    death follows recurrence after an exponential post-recurrence survival, or occurs without
    recurrence at a low background hazard. RFS events are recurrence or death, whichever comes
    first. Follow-up ends at loss to follow-up (exponential) or at the administrative censoring
    date (31 Dec 2020), given a surgery date drawn uniformly in the cohort's year (a cohort
    named by a year, such as "2015"; other names are operated in 2015). The parameters
    (:data:`SURVIVAL`) were tuned by simulation at the default 149 + 172 patients. Pooled
    over 10 seeds (3210 patients) the Kaplan-Meier medians are: RFS 49 months overall
    (study 50.4), 37 with MVI (32.5), not reached without MVI (not reached); OS 66 overall
    (59.5), 54 with MVI (54.7), not reached without MVI; 30 % RFS events (31.5 %) and 20 %
    deaths (19.9 %). Matching both the medians and the low event counts needs heavy loss to
    follow-up (2 % per month), as the study's KM tails rest on few patients at risk.
    A single cohort of 321 varies around these values (seed 0: 26 % RFS events, 17 % deaths).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from dlmvi.constants import CUTOFFS

#: Counts of study.md's table: variable -> (absent at level 0, present at level 0,
#: absent at level 1, present at level 1). Level 1 is "> cut-off" or "yes"/"female"/
#: "complete"/"III-IV".
STUDY_TABLE: dict[str, tuple[int, int, int, int]] = {
    "age": (33, 58, 103, 127),
    "sex": (115, 158, 21, 27),
    "afp": (84, 60, 52, 125),
    "ascites": (130, 171, 6, 14),
    "hepatitis": (33, 44, 103, 141),
    "cirrhosis": (41, 43, 95, 142),
    "alt": (108, 121, 28, 64),
    "ast": (111, 115, 25, 70),
    "ggt": (73, 78, 63, 107),
    "tb": (116, 158, 20, 27),
    "cb": (107, 137, 29, 48),
    "alb": (40, 51, 96, 134),
    "plt": (19, 21, 117, 164),
    "inr": (84, 96, 52, 89),
    "pt": (105, 136, 31, 49),
    "capsule": (88, 106, 48, 79),
    "edmondson": (77, 64, 59, 121),
}

#: MVI present in the study: 185 of 321.
PREVALENCE = 185 / 321

#: Share of M1 among MVI-present patients (the study does not report the split).
M1_SHARE = 0.6

#: Continuous variables: (distribution, spread, decimals, lower clip, upper clip).
#: "lognormal": spread is the SD of log(value); "normal": spread is the SD of the value.
CONTINUOUS: dict[str, tuple[str, float, int, float, float]] = {
    "age": ("normal", 10.0, 0, 18.0, 90.0),
    "afp": ("lognormal", 2.3, 1, 0.5, 120000.0),
    "alt": ("lognormal", 0.6, 0, 5.0, 2000.0),
    "ast": ("lognormal", 0.55, 0, 8.0, 2000.0),
    "ggt": ("lognormal", 0.8, 0, 8.0, 2500.0),
    "tb": ("lognormal", 0.45, 1, 2.0, 300.0),
    "cb": ("lognormal", 0.6, 1, 0.5, 200.0),
    "alb": ("normal", 4.5, 1, 20.0, 60.0),
    "plt": ("lognormal", 0.45, 0, 20.0, 800.0),
    "pt": ("normal", 1.0, 1, 9.0, 25.0),
    "inr": ("normal", 0.09, 2, 0.75, 3.0),
}

BINARY = ("sex", "ascites", "hepatitis", "cirrhosis", "capsule", "edmondson")

# Latent correlations (Gaussian copula) between the variables, on the clinical intuition
# that liver enzymes move together, bilirubins move together, PT and INR measure the same
# thing, and cirrhosis lowers albumin and platelets.
_LATENT_ORDER = (
    "age", "sex", "afp", "ascites", "hepatitis", "cirrhosis", "alt", "ast", "ggt", "tb", "cb",
    "alb", "plt", "inr", "pt", "capsule", "edmondson",
)
_LATENT_CORR = {
    ("alt", "ast"): 0.75, ("alt", "ggt"): 0.4, ("ast", "ggt"): 0.45,
    ("tb", "cb"): 0.85, ("pt", "inr"): 0.9, ("alb", "cirrhosis"): -0.3,
    ("plt", "cirrhosis"): -0.4, ("alb", "tb"): -0.25, ("inr", "tb"): 0.2,
    ("ascites", "alb"): -0.3, ("ascites", "cirrhosis"): 0.3, ("hepatitis", "cirrhosis"): 0.3,
    ("afp", "edmondson"): 0.2,
}


@dataclass(frozen=True)
class SurvivalParameters:
    """Parameters of the survival simulation (months).

    Attributes:
        rec_shape: Weibull shape of time to recurrence.
        rec_scale: Weibull scale of time to recurrence without MVI (months).
        hr_m1, hr_m2: hazard ratios of recurrence for M1 and M2 against M0.
        post_rec_median: median survival after recurrence (months).
        death_hazard: background death hazard without recurrence (per month).
        loss_hazard: hazard of loss to follow-up (per month).
        censor_date: administrative censoring date (ISO).
    """

    rec_shape: float = 1.2
    rec_scale: float = 200.0
    hr_m1: float = 3.6
    hr_m2: float = 5.0
    post_rec_median: float = 15.0
    death_hazard: float = 0.0045
    loss_hazard: float = 0.02
    censor_date: str = "2020-12-31"


SURVIVAL = SurvivalParameters()

_MONTH_DAYS = 365.25 / 12


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder).

    >>> allocate(321, [149, 172])
    [149, 172]
    >>> allocate(40, [149, 172])
    [19, 21]
    """
    w = np.asarray(weights, dtype=float)
    if total < 0 or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"cannot allocate {total} over weights {list(weights)}")
    exact = total * w / w.sum()
    base = np.floor(exact).astype(int)
    rest = total - int(base.sum())
    order = np.argsort(-(exact - base), kind="stable")
    base[order[:rest]] += 1
    return [int(b) for b in base]


def draw_patients(
    cohorts: Sequence[tuple[str, int]], rng: np.random.Generator
) -> pd.DataFrame:
    """Patient list with IDs, cohorts and MVI grades.

    Each cohort gets ``round(n_c * 185/321)`` MVI-present patients (largest remainder overall,
    so that 321 patients give exactly 185), of whom 60 % are M1; grades are shuffled within
    the cohort.

    Returns:
        DataFrame with ``patient_id`` ("P0001", ...), ``cohort`` (string), ``mvi_grade``.
    """
    n_total = sum(n for _, n in cohorts)
    n_present = int(round(n_total * PREVALENCE))
    present_per = allocate(n_present, [n for _, n in cohorts]) if n_total else []
    rows = []
    pid = 0
    for (name, n), n_p in zip(cohorts, present_per):
        n_p = min(n_p, n)
        n_m1 = int(round(n_p * M1_SHARE))
        grades = np.array(["M0"] * (n - n_p) + ["M1"] * n_m1 + ["M2"] * (n_p - n_m1))
        rng.shuffle(grades)
        for g in grades:
            pid += 1
            rows.append((f"P{pid:04d}", str(name), str(g)))
    return pd.DataFrame(rows, columns=["patient_id", "cohort", "mvi_grade"])


def _latent_corr() -> np.ndarray:
    k = len(_LATENT_ORDER)
    c = np.eye(k)
    idx = {v: i for i, v in enumerate(_LATENT_ORDER)}
    for (a, b), r in _LATENT_CORR.items():
        c[idx[a], idx[b]] = c[idx[b], idx[a]] = r
    # Nearest positive definite matrix by eigenvalue clipping (the hand-set matrix may not be).
    vals, vecs = np.linalg.eigh(c)
    c = vecs @ np.diag(np.clip(vals, 0.05, None)) @ vecs.T
    d = np.sqrt(np.diag(c))
    return c / np.outer(d, d)


def _dist(name: str, p_above: float):
    """Frozen scipy distribution of ``name`` with P(X > cut-off) = p_above."""
    kind, spread, *_ = CONTINUOUS[name]
    cut = CUTOFFS[name]
    z = stats.norm.ppf(1.0 - p_above)
    if kind == "lognormal":
        return stats.lognorm(s=spread, scale=float(np.exp(np.log(cut) - spread * z)))
    return stats.norm(loc=cut - spread * z, scale=spread)


def simulate_labs(patients: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Laboratory values and characteristics, conditional on MVI status.

    Args:
        patients: frame with ``mvi_grade`` (M0/M1/M2).
        rng: random generator.

    Returns:
        Frame (same index) with the columns of :data:`STUDY_TABLE`, continuous ones in real
        units (age years, afp ng/mL, alt/ast/ggt U/L, tb/cb umol/L, alb g/L, plt 10^9/L,
        pt s, inr ratio) and binary ones 0/1.
    """
    present = patients["mvi_grade"].isin(["M1", "M2"]).to_numpy()
    n = len(patients)
    k = len(_LATENT_ORDER)
    latent = rng.standard_normal((n, k)) @ np.linalg.cholesky(_latent_corr()).T
    jitter = rng.uniform(0.02, 0.98, size=(n, k))
    out = {}
    for j, var in enumerate(_LATENT_ORDER):
        a0, p0, a1, p1 = STUDY_TABLE[var]
        values = np.zeros(n)
        for is_present, (n0, n1) in ((False, (a0, a1)), (True, (p0, p1))):
            idx = np.flatnonzero(present == is_present)
            m = len(idx)
            if m == 0:
                continue
            k_above = int(round(m * n1 / (n0 + n1)))
            ranks = np.empty(m, dtype=int)
            ranks[np.argsort(latent[idx, j], kind="stable")] = np.arange(m)
            above = ranks >= m - k_above
            if var in BINARY:
                values[idx] = above.astype(float)
                continue
            # Stratified quantiles: the top k_above quantiles map above the cut-off.
            q = (ranks + jitter[idx, j]) / m
            p = min(max(k_above / m, 0.5 / m), 1 - 0.5 / m)
            v = _dist(var, p).ppf(q)
            values[idx] = _finish(var, v, above)
        out[var] = values
    frame = pd.DataFrame(out, index=patients.index)
    for var in BINARY:
        frame[var] = frame[var].astype(int)
    frame["age"] = frame["age"].astype(int)
    return frame


def _finish(var: str, v: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Clip, round to reporting precision, and keep each value on its side of the cut-off."""
    _, _, decimals, lo, hi = CONTINUOUS[var]
    cut = CUTOFFS[var]
    step = 10.0 ** -decimals
    v = np.round(np.clip(v, lo, hi), decimals)
    v = np.where(above, np.maximum(v, round(cut + step, decimals)), np.minimum(v, cut))
    return v


def target_tumour_size_cm(grades: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """Target largest tumour diameter (cm) by grade.

    Lognormal: median 4.0 cm (IQR about 3-6) for M0; 5.6 cm for M1 and 7.6 cm for M2, which
    pooled give study.md's 6.3 (4.5-9.25) cm for MVI present. Clipped to 2-11 cm so that the
    tumour spans at least 3 slices of 6 mm and fits in the phantom's liver and field of view.
    """
    median = {"M0": 4.0, "M1": 5.6, "M2": 7.6}
    sd = {"M0": 0.5, "M1": 0.45, "M2": 0.42}
    g = np.asarray(grades)
    mu = np.log([median[x] for x in g])
    s = np.array([sd[x] for x in g])
    return np.clip(np.exp(mu + s * rng.standard_normal(len(g))), 2.0, 11.0)


def surgery_dates(cohorts: Sequence[str], rng: np.random.Generator) -> list[_dt.date]:
    """One surgery date per patient, uniform over the cohort's year (2015 if not a year)."""
    dates = []
    days = rng.uniform(0, 1, size=len(cohorts))
    for c, u in zip(cohorts, days):
        year = int(c) if str(c).isdigit() and 1900 < int(c) < 2100 else 2015
        start = _dt.date(year, 1, 1)
        length = (_dt.date(year + 1, 1, 1) - start).days
        dates.append(start + _dt.timedelta(days=int(u * length)))
    return dates


def simulate_survival(
    grades: Sequence[str],
    dates: Sequence[_dt.date],
    rng: np.random.Generator,
    params: SurvivalParameters = SURVIVAL,
) -> pd.DataFrame:
    """Recurrence-free and overall survival in months, with censoring.

    Args:
        grades: MVI grade per patient (M0/M1/M2).
        dates: surgery date per patient (administrative censoring counts from it).
        rng: random generator.
        params: survival model parameters.

    Returns:
        Frame with ``rfs_months, rfs_event, os_months, os_event`` (months rounded to 0.1).
    """
    g = np.asarray(grades)
    n = len(g)
    hr = np.where(g == "M2", params.hr_m2, np.where(g == "M1", params.hr_m1, 1.0))
    e = rng.exponential(size=(n, 4))
    t_rec = params.rec_scale * (e[:, 0] / hr) ** (1.0 / params.rec_shape)
    post = e[:, 1] * params.post_rec_median / np.log(2.0)
    t_death0 = e[:, 2] / params.death_hazard
    t_death = np.minimum(t_death0, t_rec + post)
    t_loss = e[:, 3] / params.loss_hazard
    end = _dt.date.fromisoformat(params.censor_date)
    t_admin = np.array([(end - d).days / _MONTH_DAYS for d in dates])
    t_cens = np.minimum(t_loss, t_admin)
    t_rfs = np.minimum(t_rec, t_death)
    rfs_event = (t_rfs <= t_cens).astype(int)
    os_event = (t_death <= t_cens).astype(int)
    return pd.DataFrame(
        {
            "rfs_months": np.round(np.maximum(np.minimum(t_rfs, t_cens), 0.1), 1),
            "rfs_event": rfs_event,
            "os_months": np.round(np.maximum(np.minimum(t_death, t_cens), 0.1), 1),
            "os_event": os_event,
        }
    )


def simulate_clinical(
    patients: pd.DataFrame,
    rng: np.random.Generator,
    tumour_size_cm: Sequence[float] | None = None,
    survival: SurvivalParameters = SURVIVAL,
) -> pd.DataFrame:
    """The whole clinical table (study.md's conventions), marked synthetic.

    Args:
        patients: frame with ``patient_id, cohort, mvi_grade`` (see :func:`draw_patients`).
        rng: random generator.
        tumour_size_cm: largest tumour diameter per patient (cm), measured on the phantom's
            image; drawn by :func:`target_tumour_size_cm` when None.
        survival: survival model parameters.

    Returns:
        clinical.csv as a DataFrame: ``patient_id, cohort, mvi_grade``, labs, characteristics,
        ``tumor_size_cm``, survival, ``surgery_date`` (ISO) and ``synthetic`` (always 1).
    """
    patients = patients.reset_index(drop=True)
    labs = simulate_labs(patients, rng)
    if tumour_size_cm is None:
        tumour_size_cm = target_tumour_size_cm(patients["mvi_grade"], rng)
    dates = surgery_dates(patients["cohort"].tolist(), rng)
    surv = simulate_survival(patients["mvi_grade"].to_numpy(), dates, rng, survival)
    cols = ["age", "sex", "afp", "alt", "ast", "ggt", "tb", "cb", "alb", "plt", "pt", "inr",
            "ascites", "hepatitis", "cirrhosis", "capsule", "edmondson"]
    frame = pd.concat([patients[["patient_id", "cohort", "mvi_grade"]], labs[cols]], axis=1)
    frame["tumor_size_cm"] = np.round(np.asarray(tumour_size_cm, dtype=float), 1)
    frame = pd.concat([frame, surv], axis=1)
    frame["surgery_date"] = [d.isoformat() for d in dates]
    frame["synthetic"] = 1
    return frame


def two_by_two(frame: pd.DataFrame) -> dict[str, tuple[int, int, int, int]]:
    """Counts in study.md's layout (absent0, present0, absent1, present1) for a table.

    Continuous variables are dichotomised at :data:`dlmvi.constants.CUTOFFS` (> cut-off is 1).
    """
    present = frame["mvi_grade"].isin(["M1", "M2"]).to_numpy()
    out = {}
    for var in STUDY_TABLE:
        v = frame[var].to_numpy(dtype=float)
        level = v > CUTOFFS[var] if var in CUTOFFS else v == 1
        out[var] = (
            int(np.sum(~level & ~present)), int(np.sum(~level & present)),
            int(np.sum(level & ~present)), int(np.sum(level & present)),
        )
    return out
