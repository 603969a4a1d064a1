"""The built-in synthetic cohort ("phantom"): multiphase liver MRI plus a clinical table.

SYNTHETIC DATA. Nothing here describes a real patient. The phantom exists so that the whole
pipeline (validate, prepare, train, evaluate, nomogram, survival, report) can run on data laid
out exactly like a hospital's cohort (see the README's cohort format).

What one synthetic patient looks like
    A 3-D abdomen (``n_slices`` axial slices of ``size`` x ``size`` pixels, LPS voxel order,
    field of view 36 cm, 6 mm slices): body outline with subcutaneous fat and muscle wall,
    visceral tissue, spine with paraspinal muscles, kidneys, spleen, aorta, IVC, the liver with
    portal/hepatic vessels, and one hepatocellular carcinoma, seen in six sequences whose
    contrast follows the physics of a gadoxetic-acid study:

    ========  =====================================================================
    T1        tumour mildly hypointense to liver
    T1A       arterial hyper-enhancement of the tumour (and aorta)
    T1V       washout (tumour darker than liver), enhancing capsule, bright vessels
    T1D       delayed/hepatobiliary phase: tumour clearly hypointense
    T2        tumour moderately bright, necrosis bright
    DWI       tumour bright (restricted), lower resolution and much noisier
    ========  =====================================================================

    Every sequence gets a smooth multiplicative bias field, a per-patient gain and
    magnitude (Rician-like) noise, then is stored as int16.

How MVI shows (study.md's imaging features)
    Per patient, feature strengths are drawn from grade-dependent normal distributions that
    overlap (M0 < M1 < M2 in mean, wide spread), so no single feature separates the grades:
    tumour size (from :func:`dlmvi.datasets.clinical_sim.target_tumour_size_cm`), margin
    irregularity (lobulated, multinodular outline), arterial peritumoural enhancement (T1A,
    patchy, within ~1 cm of the margin), peritumoural hypointensity (T1D), capsule coverage
    (complete when the clinical ``capsule`` is 1; otherwise partial, less so with higher
    grade) and satellite nodules (Poisson count rising with grade). Tumour texture is more
    heterogeneous when the clinical Edmondson-Steiner grade is III-IV.

Masks
    ``<SEQ>_roi.nii.gz`` is the main tumour exactly as drawn (voxels whose signed distance to
    the tumour surface is <= 0), identical for all six sequences (one grid per patient).
    Satellite nodules and the capsule are NOT in the mask, as a radiologist would outline
    the main lesion only. ``tumor_size_cm`` in clinical.csv is measured on this mask: the
    largest in-plane (axial) diameter in cm, to 0.1 cm.

Scanners
    The first cohort ("2015") is scanned on scanner A. Every other cohort ("2018") is scanned
    on scanner B, which differs from A on T1 and T1D only (intensity scale, contrast
    (gamma), stronger bias field, more noise) and is identical on T1V, T1A, T2 and DWI,
    mirroring the study's t-SNE finding that the cohorts separate on T1 and T1D but mix on
    T1V. ``scanners.csv`` (as ``dlmvi import`` writes it) names them "dlmvi phantom" models
    "scanner A" / "scanner B", 1.5 T, for the per-scanner validation.

Determinism
    Everything derives from ``seed``: patient ``i`` (1-based) uses
    ``SeedSequence([seed, 1, i])``, the clinical table ``SeedSequence([seed, 0])``, so the
    files do not depend on the number of worker processes. NIfTI files are gzipped with
    mtime 0 and no file name, DICOM UIDs and dates are derived from the seed, so the same seed
    gives byte-identical files.

Speed
    About 0.3 s of CPU per patient at 128 px in NIfTI (gzip level 1 with the run-length
    strategy: fast, files ~60 % of raw), about 95 s of CPU for the default 321 patients,
    shared by 2 worker processes (under a minute of wall time on 2 free cores; ~0.9 GB).
    DICOM writing (pydicom, one file per slice) costs about 3x more.
"""

from __future__ import annotations

import zlib
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dlmvi.constants import SEQUENCES, SYNTHETIC_NOTICE
from dlmvi.errors import CohortError, ConfigError

#: Version of the phantom's generative model; bumped when images or tables change.
PHANTOM_VERSION = 1

NIFTI_DESCRIP = b"SYNTHETIC dlmvi phantom"

# Tissues in painting order (later ones are drawn over earlier ones).
TISSUES: tuple[str, ...] = (
    "fat", "muscle", "visceral", "paraspinal", "spine", "kidney", "spleen", "liver",
    "vessel", "aorta", "ivc", "capsule", "tumour", "necrosis", "satellite",
)

#: Mean intensity of each tissue per sequence (T1, T1A, T1V, T1D, T2, DWI), arbitrary
#: scanner units (liver about 500-900 on T1-weighted phases).
CONTRAST: dict[str, tuple[float, ...]] = {
    "fat": (950, 900, 850, 800, 750, 60),
    "muscle": (380, 420, 470, 450, 220, 90),
    "visceral": (600, 640, 650, 600, 450, 120),
    "paraspinal": (380, 420, 470, 450, 220, 90),
    "spine": (550, 600, 650, 620, 400, 110),
    "kidney": (420, 900, 850, 650, 550, 380),
    "spleen": (400, 750, 750, 520, 500, 420),
    "liver": (520, 580, 760, 880, 260, 190),
    "vessel": (200, 450, 900, 600, 130, 50),
    "aorta": (180, 1300, 800, 600, 90, 30),
    "ivc": (180, 350, 850, 620, 120, 40),
    "capsule": (350, 420, 900, 1000, 420, 150),
    "tumour": (400, 980, 520, 300, 480, 520),
    "necrosis": (250, 260, 270, 250, 900, 350),
    "satellite": (400, 980, 520, 300, 480, 520),
}


@dataclass(frozen=True)
class ScannerModel:
    """How one scanner renders each sequence.

    Attributes:
        gain: intensity scale per sequence (T1, T1A, T1V, T1D, T2, DWI).
        gamma: contrast exponent per sequence (1 = linear; < 1 compresses tissue contrast).
        bias: amplitude of the smooth multiplicative bias field per sequence (fraction).
        noise: standard deviation of the magnitude noise per sequence (scanner units).
    """

    gain: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    gamma: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    bias: tuple[float, ...] = (0.08, 0.08, 0.08, 0.08, 0.08, 0.1)
    noise: tuple[float, ...] = (18.0, 22.0, 20.0, 20.0, 16.0, 45.0)


#: Scanner A (first cohort) and B (other cohorts): B differs on T1 and T1D only.
SCANNER_A = ScannerModel()
SCANNER_B = ScannerModel(
    gain=(1.35, 1.0, 1.0, 0.7, 1.0, 1.0),
    gamma=(0.8, 1.0, 1.0, 0.75, 1.0, 1.0),
    bias=(0.22, 0.08, 0.08, 0.22, 0.08, 0.1),
    noise=(32.0, 22.0, 20.0, 30.0, 16.0, 45.0),
)

#: Grade-dependent means (M0, M1, M2) and common SD of the MVI feature strengths.
FEATURES: dict[str, tuple[tuple[float, float, float], float, float, float]] = {
    # name: ((mean M0, M1, M2), sd, lower clip, upper clip)
    "irregularity": ((0.04, 0.09, 0.13), 0.045, 0.0, 0.3),
    "ape": ((0.1, 0.6, 0.9), 0.35, 0.0, 1.6),
    "phh": ((0.1, 0.6, 0.9), 0.35, 0.0, 1.6),
}
SATELLITE_RATE = {"M0": 0.15, "M1": 0.7, "M2": 1.5}


@dataclass(frozen=True)
class PhantomConfig:
    """Parameters of the synthetic cohort (saved in ``cohort.json``).

    Attributes:
        n_patients: total number of patients; cohort sizes scale proportionally.
        seed: seed of every random draw.
        size: in-plane matrix (pixels); the field of view stays ``fov_mm``.
        fmt: ``"nifti"`` (``<SEQ>.nii.gz``) or ``"dicom"`` (``<SEQ>/`` series folders).
        cohorts: (name, patients) of the default cohort layout (149 + 172 = 321).
        n_slices: axial slices per volume.
        fov_mm: in-plane field of view (mm).
        slice_mm: slice thickness and spacing (mm).
        workers: worker processes (None: 2 for a large cohort, else 1); the files do not
            depend on it.
        compresslevel: gzip level of the NIfTI files (1 is fast; files are larger).
    """

    n_patients: int = 321
    seed: int = 0
    size: int = 128
    fmt: str = "nifti"
    cohorts: tuple[tuple[str, int], ...] = (("2015", 149), ("2018", 172))
    n_slices: int = 24
    fov_mm: float = 360.0
    slice_mm: float = 6.0
    workers: int | None = None
    compresslevel: int = 1

    def __post_init__(self):
        if self.fmt not in ("nifti", "dicom"):
            raise ConfigError(f"phantom format must be 'nifti' or 'dicom', not {self.fmt!r}")
        if self.n_patients < 1:
            raise ConfigError(f"phantom needs at least 1 patient, got {self.n_patients}")
        if not 32 <= self.size <= 512:
            raise ConfigError(f"phantom size must be 32-512 pixels, got {self.size}")
        if not 12 <= self.n_slices <= 128:
            raise ConfigError(f"phantom n_slices must be 12-128, got {self.n_slices}")
        if not self.cohorts or any(n <= 0 for _, n in self.cohorts):
            raise ConfigError(f"phantom cohorts need positive sizes: {self.cohorts}")

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (x, y, z) in mm."""
        d = self.fov_mm / self.size
        return (d, d, self.slice_mm)

    @property
    def origin(self) -> tuple[float, float, float]:
        """LPS position (mm) of the centre of the first voxel; the volume is centred on 0."""
        dx, dy, dz = self.spacing
        return (-(self.size - 1) / 2 * dx, -(self.size - 1) / 2 * dy,
                -(self.n_slices - 1) / 2 * dz)

    def cohort_sizes(self) -> list[tuple[str, int]]:
        """Cohort names and sizes for ``n_patients`` (proportional, largest remainder)."""
        from dlmvi.datasets.clinical_sim import allocate

        sizes = allocate(self.n_patients, [n for _, n in self.cohorts])
        return [(str(name), n) for (name, _), n in zip(self.cohorts, sizes) if n > 0]


@dataclass
class PatientSpec:
    """What the image generator needs from the clinical simulation for one patient."""

    index: int
    patient_id: str
    cohort: str
    scanner: str
    mvi_grade: str
    capsule: int
    edmondson: int
    target_size_cm: float
    study_date: str = "20150101"


@dataclass
class PhantomPatient:
    """One generated patient: images (z, y, x) int16, the tumour mask and ground truth."""

    images: dict[str, np.ndarray]
    mask: np.ndarray
    truth: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- geometry


def _soft(d: np.ndarray, width: float) -> np.ndarray:
    """Occupancy from a signed distance (mm, negative inside) with a one-voxel soft edge."""
    return np.clip(0.5 - d / width, 0.0, 1.0).astype(np.float32)


def _ellipsoid_distance(x, y, z, c, axes) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipsoid."""
    c = [float(v) for v in c]
    a = [float(v) for v in axes]
    rho = np.sqrt(((x - c[0]) / a[0]) ** 2 + ((y - c[1]) / a[1]) ** 2
                  + ((z - c[2]) / a[2]) ** 2)
    return (rho - 1.0) * min(a)


def _ellipsoid_occ(cfg, X, Y, Z, c, axes, w) -> np.ndarray:
    """Soft occupancy of an ellipsoid, computed only inside its bounding box."""
    c, axes = np.asarray(c, float), np.asarray(axes, float)
    b = _box(cfg, c - axes - 2 * w, c + axes + 2 * w)
    out = np.zeros((cfg.n_slices, cfg.size, cfg.size), dtype=np.float32)
    out[b] = _soft(_ellipsoid_distance(X[..., b[2]], Y[:, b[1]], Z[b[0]], c, axes), w)
    return out


def _segment_distance(x, y, z, p0, p1) -> np.ndarray:
    """Distance (mm) of every point to the segment p0-p1."""
    v = [float(b) - float(a) for a, b in zip(p0, p1)]
    p0 = [float(a) for a in p0]
    L2 = v[0] ** 2 + v[1] ** 2 + v[2] ** 2
    t = ((x - p0[0]) * v[0] + (y - p0[1]) * v[1] + (z - p0[2]) * v[2]) / L2
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((x - p0[0] - t * v[0]) ** 2 + (y - p0[1] - t * v[1]) ** 2
                   + (z - p0[2] - t * v[2]) ** 2)


def _unit_vectors(rng: np.random.Generator, k: int) -> np.ndarray:
    v = rng.standard_normal((k, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _smooth_field(rng, ux, uy, uz, k: int, freq: tuple[float, float]) -> np.ndarray:
    """A smooth random function of direction (or position), scaled to about [-1, 1]."""
    w = _unit_vectors(rng, k)
    f = rng.uniform(*freq, size=k)
    ph = rng.uniform(0, 2 * np.pi, size=k)
    a = rng.uniform(0.5, 1.0, size=k)
    norm = float(np.sqrt(np.sum(a**2) / 2.0) * 1.5)
    out = np.float32(0.0)
    for j in range(k):
        fw = [float(f[j] * w[j, i]) for i in range(3)]
        out = out + float(a[j] / norm) * np.cos(fw[0] * ux + fw[1] * uy + fw[2] * uz
                                                + float(ph[j]))
    return out


def _separable_field(rng, x, y, z, k: int, freq: tuple[float, float]) -> np.ndarray:
    """A smooth random field on the grid (sum of products of 1-D cosines), about [-1, 1].

    Cheaper than :func:`_smooth_field` on a whole volume: each term is an outer product.
    """
    out = np.zeros((len(z), len(y), len(x)), dtype=np.float32)
    for _ in range(k):
        f = rng.uniform(*freq, size=3)
        ph = rng.uniform(0, 2 * np.pi, size=3)
        cz, cy, cx = (np.cos(float(f[i]) * v + float(ph[i])).astype(np.float32)
                      for i, v in enumerate((z, y, x)))
        out += (cz[:, None, None] * cy[None, :, None]) * cx[None, None, :]
    return out * np.float32(2.0 / k)


def _box(cfg: PhantomConfig, lo_mm, hi_mm) -> tuple[slice, slice, slice]:
    """Voxel slices (z, y, x) of the grid covering the LPS box lo_mm..hi_mm (x, y, z)."""
    org, sp = np.array(cfg.origin), np.array(cfg.spacing)
    lo = np.maximum(np.floor((np.asarray(lo_mm) - org) / sp).astype(int), 0)
    hi = np.minimum(np.ceil((np.asarray(hi_mm) - org) / sp).astype(int) + 1,
                    [cfg.size, cfg.size, cfg.n_slices])
    hi = np.maximum(hi, lo)
    return (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))


def _draw_feature(name: str, grade: str, rng: np.random.Generator) -> float:
    means, sd, lo, hi = FEATURES[name]
    return float(np.clip(rng.normal(means["M0 M1 M2".split().index(grade)], sd), lo, hi))


def largest_axial_diameter_mm(mask_zyx: np.ndarray, spacing: Sequence[float]) -> float:
    """Largest in-plane diameter (mm) of a mask over all axial slices.

    The diameter is the largest distance between pixel centres of the mask's boundary on one
    slice plus one pixel (the pixels' extent).
    """
    dx, dy = float(spacing[0]), float(spacing[1])
    best = 0.0
    for sl in mask_zyx:
        if not sl.any():
            continue
        inner = sl.copy()
        inner[1:, :] &= sl[:-1, :]
        inner[:-1, :] &= sl[1:, :]
        inner[:, 1:] &= sl[:, :-1]
        inner[:, :-1] &= sl[:, 1:]
        yy, xx = np.nonzero(sl & ~inner)
        pts = np.stack([xx * dx, yy * dy], axis=1)
        d = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)).max()
        best = max(best, float(d) + 0.5 * (dx + dy))
    return best


# ----------------------------------------------------------------------------- one patient


def generate_patient(cfg: PhantomConfig, spec: PatientSpec) -> PhantomPatient:
    """Draw one synthetic patient's six volumes, tumour mask and ground truth.

    Every random draw comes from one generator seeded by (seed, patient index), in a fixed
    order: anatomy, tumour features, tumour placement and shape, tumour tissues,
    peritumoural ring and texture, scanner (bias field and noise per sequence).

    Args:
        cfg: phantom configuration (grid and seed).
        spec: patient's grade, capsule, Edmondson grade, target tumour size and scanner.

    Returns:
        :class:`PhantomPatient` with int16 images (z, y, x) per sequence, a bool mask
        (z, y, x) and a truth dict (feature strengths, radius, measured size).
    """
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1, spec.index]))
    grid = _Grid.of(cfg)
    occ, lc, la = _draw_anatomy(cfg, grid, rng)
    feat = _draw_tumour_features(spec, grid, rng)
    tum = _place_tumour(cfg, grid, rng, lc, la, feat)
    local = _draw_tumour_tissues(grid, rng, tum, feat, occ["liver"][tum.box])
    base, liver_w, tumour_w = _compose(occ, local, grid.shape, tum)
    _paint_peritumoural(rng, base, tum, feat, liver_w, tumour_w)
    images = _scan(cfg, spec, grid, rng, base)
    return PhantomPatient(images=images, mask=tum.mask, truth=_truth(cfg, spec, tum, feat))


@dataclass
class _Grid:
    """The phantom's voxel centres (mm, broadcastable (z, y, x)) and what derives from them."""

    X: np.ndarray
    Y: np.ndarray
    Z: np.ndarray
    shape: tuple[int, int, int]
    zhalf: float
    w: float  # edge width (mm)
    dx: float
    dz: float

    @classmethod
    def of(cls, cfg: PhantomConfig) -> "_Grid":
        nx = ny = cfg.size
        nz = cfg.n_slices
        dx, dy, dz = cfg.spacing
        ox, oy, oz = cfg.origin
        X = (ox + dx * np.arange(nx, dtype=np.float32))[None, None, :]
        Y = (oy + dy * np.arange(ny, dtype=np.float32))[None, :, None]
        Z = (oz + dz * np.arange(nz, dtype=np.float32))[:, None, None]
        return cls(X, Y, Z, (nz, ny, nx), nz * dz / 2.0, dx, dx, dz)


def _draw_anatomy(cfg: PhantomConfig, grid: _Grid, rng: np.random.Generator):
    """Occupancy of every global tissue; returns (occupancies, liver centre, liver semi-axes)."""
    X, Y, Z, w = grid.X, grid.Y, grid.Z, grid.w
    occ: dict[str, np.ndarray] = {}

    def jit(s):
        return float(rng.normal(0.0, s))

    # Body: elliptic cylinder tapering slightly towards the ends of the volume.
    a_body, b_body = 150.0 + jit(8), 112.0 + jit(6)
    taper = 1.0 - 0.06 * (Z / grid.zhalf) ** 2
    rho_body = np.sqrt((X / (a_body * taper)) ** 2 + ((Y - 5.0) / (b_body * taper)) ** 2)
    d_body = (rho_body - 1.0) * b_body
    t_fat = 14.0 + jit(4)
    t_muscle = 9.0 + jit(1.5)
    occ["fat"] = _soft(d_body, w)
    occ["muscle"] = _soft(d_body + t_fat, w)
    occ["visceral"] = _soft(d_body + t_fat + t_muscle, w)
    inside = occ["visceral"]

    # Spine, paraspinal muscles, aorta, IVC: cylinders along z.
    ys = 72.0 + jit(3)
    # (2-D arrays broadcast along z.)
    occ["paraspinal"] = np.maximum(
        _soft(_ellipsoid_distance(X, Y, 0.0, (-32, ys + 18, 0), (24, 18, 1e9)), w),
        _soft(_ellipsoid_distance(X, Y, 0.0, (32, ys + 18, 0), (24, 18, 1e9)), w))
    occ["spine"] = _soft(np.sqrt(X**2 + (Y - ys) ** 2) - 17.0, w)
    occ["aorta"] = _soft(np.sqrt((X - 14.0) ** 2 + (Y - (ys - 30)) ** 2) - 11.0, w)

    # Kidneys (lower), spleen (upper left).
    zk = -40.0 + jit(6)
    occ["kidney"] = np.maximum(
        _ellipsoid_occ(cfg, X, Y, Z, (-65 + jit(3), 58, zk), (27, 24, 48), w),
        _ellipsoid_occ(cfg, X, Y, Z, (65 + jit(3), 58, zk + 10), (27, 24, 48), w))
    occ["spleen"] = _ellipsoid_occ(
        cfg, X, Y, Z, (88 + jit(4), 38 + jit(4), 25 + jit(6)), (32 + jit(3), 50 + jit(4), 55), w)

    # Liver: large ellipsoid on the patient's right (LPS x < 0), lobulated, inside the body.
    lc = np.array([-40 + jit(5), -5 + jit(4), 5 + jit(4)])
    la = np.array([100 + jit(6), 85 + jit(5), 78 + jit(4)])
    d_liver = _ellipsoid_distance(X, Y, Z, lc, la)
    d_liver = d_liver + 6.0 * _separable_field(
        rng, X.ravel() / 100, Y.ravel() / 100, Z.ravel() / 100, 4, (1.0, 3.0))
    occ["liver"] = _soft(d_liver, w) * inside
    occ["ivc"] = _soft(np.sqrt((X + 22.0) ** 2 + (Y - (ys - 34)) ** 2) - 12.0, w)
    occ["vessel"] = _draw_vessels(cfg, grid, rng, lc) * occ["liver"]
    return occ, lc, la


def _draw_vessels(cfg: PhantomConfig, grid: _Grid, rng: np.random.Generator, lc: np.ndarray) -> np.ndarray:
    """Portal / hepatic vessels: segments radiating from the hilum (clipped to the liver by the caller)."""
    X, Y, Z, w = grid.X, grid.Y, grid.Z, grid.w
    hilum = lc + np.array([25.0, 20.0, -5.0])
    vessel = np.zeros(grid.shape, dtype=np.float32)
    for _ in range(6):
        u = _unit_vectors(rng, 1)[0] * np.array([1.0, 0.7, 0.8])
        p1 = hilum + u / np.linalg.norm(u) * rng.uniform(45, 85)
        r = rng.uniform(3.0, 5.5)
        vb = _box(cfg, np.minimum(hilum, p1) - r - 2 * w, np.maximum(hilum, p1) + r + 2 * w)
        seg = _soft(_segment_distance(X[..., vb[2]], Y[:, vb[1]], Z[vb[0]], hilum, p1) - r, w)
        np.maximum(vessel[vb], seg, out=vessel[vb])
    return vessel


@dataclass
class _TumourFeatures:
    """The tumour's drawn features (see :data:`SATELLITE_RATE` and :func:`_draw_feature`)."""

    irr: float
    radius: float
    ape: float
    phh: float
    coverage: float
    n_sat: int
    hetero: float
    necrotic: bool


def _draw_tumour_features(spec: PatientSpec, grid: _Grid, rng: np.random.Generator) -> _TumourFeatures:
    g = spec.mvi_grade
    dx, dz = grid.dx, grid.dz
    irr = _draw_feature("irregularity", g, rng)
    # Mean radius such that the measured largest diameter (lobulation bulges and the
    # boundary pixel's extent included) lands near the target size.
    radius = (10.0 * spec.target_size_cm - 0.3 * dx) / 2.0 / (1.0 + 0.6 * irr)
    # ... but at least 3 slices thick, as the key-slice selection needs 3 slices.
    radius = max(radius, 1.6 * dz / (1.0 - irr))
    ape = _draw_feature("ape", g, rng)
    phh = _draw_feature("phh", g, rng)
    if spec.capsule:
        coverage = 1.0
    else:
        coverage = float(np.clip(rng.uniform(0.45, 0.85) - 0.12 * "M0 M1 M2".split().index(g),
                                 0.1, 0.9))
    n_sat = int(rng.poisson(SATELLITE_RATE[g]))
    hetero = (0.10 if spec.edmondson else 0.05) + 0.02 * "M0 M1 M2".split().index(g)
    necrotic = bool(radius > 27.0 and rng.uniform() < 0.6)
    return _TumourFeatures(irr, radius, ape, phh, coverage, n_sat, hetero, necrotic)


@dataclass
class _Tumour:
    """The tumour's place and shape, in a box around it (ring and satellites included).

    Attributes:
        tc: centre (mm).
        box: the box (slices of the volume).
        bx, by, bz: voxel offsets from the centre in the box (mm); dist: their length.
        ux, uy, uz: unit directions from the centre.
        d_t: signed distance (mm) to the tumour surface, approximately.
        mask: the tumour (whole volume).
    """

    tc: np.ndarray
    box: tuple
    bx: np.ndarray
    by: np.ndarray
    bz: np.ndarray
    dist: np.ndarray
    ux: np.ndarray
    uy: np.ndarray
    uz: np.ndarray
    d_t: np.ndarray
    mask: np.ndarray


def _place_tumour(cfg: PhantomConfig, grid: _Grid, rng: np.random.Generator, lc, la,
                  feat: _TumourFeatures) -> _Tumour:
    X, Y, Z = grid.X, grid.Y, grid.Z
    radius, irr = feat.radius, feat.irr
    # Centre: deep enough in the liver for the tumour to fit, whole tumour inside the volume.
    room = max(0.0, 1.0 - (radius + 8.0) / float(la.min()))
    u = _unit_vectors(rng, 1)[0]
    tc = lc + u * la * room * rng.uniform(0.0, 1.0) ** (1 / 3)
    zlim = max(0.0, grid.zhalf - radius * (1 + 2 * irr) - 1.5 * grid.dz)
    tc[2] = float(np.clip(tc[2], -zlim, zlim))

    # Work in a box around the tumour (ring and satellites included) for speed.
    reach = radius * (1 + 2.5 * irr) + 35.0
    box = _box(cfg, tc - reach, tc + reach)
    bx, by, bz = (X[..., box[2]] - float(tc[0]), Y[:, box[1], :] - float(tc[1]),
                  Z[box[0]] - float(tc[2]))
    dist = np.sqrt(bx**2 + by**2 + bz**2) + 1e-6
    ux, uy, uz = bx / dist, by / dist, bz / dist
    margin = _smooth_field(rng, ux, uy, uz, 7, (1.5, 5.0))
    r_dir = radius * (1.0 + irr * margin)
    if irr > 0.08:  # multinodular: a second, finer lobulation
        r_dir = r_dir + radius * (irr - 0.08) * _smooth_field(rng, ux, uy, uz, 6, (5.0, 9.0))
    d_t = dist - r_dir  # signed distance (mm) to the tumour surface, approximately
    t_mask = np.zeros(grid.shape, dtype=bool)
    t_mask[box] = d_t <= 0.0
    return _Tumour(tc, box, bx, by, bz, dist, ux, uy, uz, d_t, t_mask)


def _draw_tumour_tissues(grid: _Grid, rng: np.random.Generator, tum: _Tumour, feat: _TumourFeatures,
                         liver_box: np.ndarray) -> dict[str, np.ndarray]:
    """Tissues drawn only in the tumour's box: capsule, tumour, necrosis, satellites."""
    w, d_t, dist, radius = grid.w, tum.d_t, tum.dist, feat.radius
    ux, uy, uz, bx, by, bz = tum.ux, tum.uy, tum.uz, tum.bx, tum.by, tum.bz
    local: dict[str, np.ndarray] = {}
    local["tumour"] = _soft(d_t, w)
    cap_field = _smooth_field(rng, ux, uy, uz, 5, (1.0, 3.5))
    cap_thr = -np.inf if feat.coverage >= 1.0 else float(np.quantile(cap_field, 1.0 - feat.coverage))
    t_cap = 3.5
    cap = _soft(np.abs(d_t - t_cap / 2) - t_cap / 2, w) * (cap_field >= cap_thr)
    local["capsule"] = cap * liver_box
    if feat.necrotic:
        d_nec = dist - 0.35 * radius * (1 + 0.3 * _smooth_field(rng, ux, uy, uz, 4, (2, 4)))
        local["necrosis"] = _soft(d_nec, w) * (d_t < -2.0)
    else:
        local["necrosis"] = np.zeros(d_t.shape, np.float32)
    sat = np.zeros(d_t.shape, np.float32)
    for _ in range(feat.n_sat):
        su = _unit_vectors(rng, 1)[0]
        sd = radius + rng.uniform(6.0, 20.0)
        sr = float(rng.uniform(2.5, 5.0))
        sx, sy, sz = (float(v) for v in su * sd)
        sat = np.maximum(sat, _soft(np.sqrt((bx - sx) ** 2 + (by - sy) ** 2 + (bz - sz) ** 2)
                                    - sr, w))
    local["satellite"] = sat * liver_box * (d_t > 0)
    return local


def _compose(occ: dict, local: dict, shape, tum: _Tumour):
    """Intensities (6, z, y, x) of the tissues before the scanner.

    Painter's algorithm: weight of tissue t = occupancy x transparency of all tissues
    painted after it; intensity = contrast^T @ weights. Global tissues over the whole
    volume, then the local ones over the tumour's box.

    Returns:
        (intensities, the liver's weight in the tumour's box, the tumour's weight there).
    """
    box, d_t = tum.box, tum.d_t
    n_global = TISSUES.index("capsule")
    weights = np.empty((n_global,) + shape, dtype=np.float32)
    trans = np.ones(shape, dtype=np.float32)
    for k in range(n_global - 1, -1, -1):
        o = occ[TISSUES[k]]
        np.multiply(o, trans, out=weights[k])
        trans *= 1.0 - o
    contrast = np.array([CONTRAST[t] for t in TISSUES], dtype=np.float32)  # (T, 6)
    # einsum without BLAS: a multithreaded sgemm sums in an order that depends on the number of
    # threads (OMP_NUM_THREADS), and the same seed must give the same phantom everywhere
    base = np.einsum("ts,tzyx->szyx", contrast[:n_global], weights, optimize=False)  # (6, z, y, x)
    lweights = np.empty((len(TISSUES) - n_global,) + d_t.shape, dtype=np.float32)
    ltrans = np.ones(d_t.shape, dtype=np.float32)
    for k in range(len(TISSUES) - 1, n_global - 1, -1):
        o = local[TISSUES[k]]
        np.multiply(o, ltrans, out=lweights[k - n_global])
        ltrans *= 1.0 - o
    sub = base[(slice(None),) + box]
    sub *= ltrans[None]
    sub += np.einsum("ts,tzyx->szyx", contrast[n_global:], lweights, optimize=False)
    liver_w = weights[TISSUES.index("liver")][box] * ltrans
    tumour_w = lweights[TISSUES.index("tumour") - n_global]
    return base, liver_w, tumour_w


def _paint_peritumoural(rng: np.random.Generator, base: np.ndarray, tum: _Tumour, feat: _TumourFeatures,
                        liver_w: np.ndarray, tumour_w: np.ndarray) -> None:
    """Peritumoural ring (liver within ~1.5 cm of the margin): patchy arterial enhancement
    on T1A and hypointensity on T1D; tumour texture on every sequence (in place)."""
    d_t, ux, uy, uz = tum.d_t, tum.ux, tum.uy, tum.uz
    sub = base[(slice(None),) + tum.box]
    ring = np.exp(-np.maximum(d_t, 0.0) / 8.0) * ((d_t > 0) & (d_t < 20.0))
    ape_patch = np.clip(0.5 + _smooth_field(rng, ux, uy, uz, 5, (1.0, 3.0)), 0.0, 1.0)
    phh_patch = np.clip(0.5 + _smooth_field(rng, ux, uy, uz, 5, (1.0, 3.0)), 0.0, 1.0)
    texture = _smooth_field(rng, tum.bx / 6.0, tum.by / 6.0, tum.bz / 6.0, 8, (0.6, 1.6))
    si = {s: i for i, s in enumerate(SEQUENCES)}
    sub[si["T1A"]] += (450.0 * feat.ape) * ape_patch * ring * liver_w
    sub[si["T1D"]] -= (700.0 * feat.phh) * phh_patch * ring * liver_w
    tex = texture * tumour_w
    for s, i in si.items():
        sub[i] += (CONTRAST["tumour"][i] * feat.hetero) * tex


def _scan(cfg: PhantomConfig, spec: PatientSpec, grid: _Grid, rng: np.random.Generator,
          base: np.ndarray) -> dict[str, np.ndarray]:
    """The scanner: gamma, smooth bias field, gain, DWI blur and noise per sequence."""
    X, Y, Z, shape = grid.X, grid.Y, grid.Z, grid.shape
    scanner = SCANNER_A if spec.scanner == "A" else SCANNER_B
    xn, yn, zn = X / (cfg.fov_mm / 2), Y / (cfg.fov_mm / 2), Z / grid.zhalf
    images = {}
    for i, s in enumerate(SEQUENCES):
        img = base[i]
        if scanner.gamma[i] != 1.0:
            ref = CONTRAST["liver"][i]
            img = ref * np.power(np.maximum(img, 0.0) / ref, scanner.gamma[i])
        # Smooth multiplicative bias field, separable (in-plane x along z) for speed.
        c = [float(v) for v in rng.normal(0.0, 1.0, size=6)]
        amp = scanner.bias[i]
        gain = scanner.gain[i] * float(np.exp(rng.normal(0.0, 0.06)))
        b_xy = np.exp(amp * np.tanh(0.6 * c[0] * xn + 0.6 * c[1] * yn + 0.4 * c[3] * xn * yn
                                    + 0.4 * c[4] * (xn**2 - yn**2)))
        b_z = gain * np.exp(amp * np.tanh(0.3 * c[2] * zn + 0.2 * c[5] * zn**2))
        img = img * (b_xy * b_z)
        if s == "DWI":  # lower resolution of echo-planar imaging
            from scipy.ndimage import gaussian_filter

            img = gaussian_filter(img, sigma=(0.0, 1.0, 1.0), mode="nearest")
        noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(scanner.noise[i])
        img = np.abs(img + noise)
        images[s] = np.clip(np.rint(img), 0, 32767).astype(np.int16)
    return images


def _truth(cfg: PhantomConfig, spec: PatientSpec, tum: _Tumour, feat: _TumourFeatures) -> dict[str, Any]:
    """The ground truth of one patient (phantom_truth.csv)."""
    tc, t_mask = tum.tc, tum.mask
    size_mm = largest_axial_diameter_mm(t_mask, cfg.spacing)
    cz, cy, cx = [int(round((tc[a] - cfg.origin[a]) / cfg.spacing[a])) for a in (2, 1, 0)]
    return {
        "patient_id": spec.patient_id,
        "cohort": spec.cohort,
        "scanner": spec.scanner,
        "mvi_grade": spec.mvi_grade,
        "target_size_cm": round(spec.target_size_cm, 2),
        "measured_size_cm": round(size_mm / 10.0, 1),
        "radius_mm": round(feat.radius, 2),
        "center_z": cz,
        "center_y": cy,
        "center_x": cx,
        "irregularity": round(feat.irr, 4),
        "ape": round(feat.ape, 4),
        "phh": round(feat.phh, 4),
        "capsule_coverage": round(feat.coverage, 3),
        "n_satellites": feat.n_sat,
        "heterogeneity": round(feat.hetero, 3),
        "necrosis": int(feat.necrotic),
        "tumour_voxels": int(t_mask.sum()),
    }


# ----------------------------------------------------------------------------- writing


def affine_ras(cfg: PhantomConfig) -> np.ndarray:
    """NIfTI affine (RAS+ world, mm) of the phantom grid with voxel order (x, y, z).

    Voxel axes follow DICOM's LPS order (column -> patient left, row -> posterior), so
    the RAS affine flips the first two axes: SimpleITK reads it back as identity direction
    with :attr:`PhantomConfig.origin`.
    """
    dx, dy, dz = cfg.spacing
    ox, oy, oz = cfg.origin
    return np.array([[-dx, 0, 0, -ox], [0, -dy, 0, -oy], [0, 0, dz, oz], [0, 0, 0, 1]],
                    dtype=float)


def nifti_gz_bytes(volume_zyx: np.ndarray, affine: np.ndarray, compresslevel: int = 1) -> bytes:
    """A .nii.gz file's bytes, deterministic (gzip mtime 0, no file name in the header)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(volume_zyx).transpose(2, 1, 0), affine)
    img.header.set_data_dtype(volume_zyx.dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = NIFTI_DESCRIP
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    # Run-length strategy: several times faster than the default on noisy images, with
    # nearly the same size, and a gzip header without time stamp or file name.
    comp = zlib.compressobj(compresslevel, zlib.DEFLATED, 31, 9, zlib.Z_RLE)
    return comp.compress(img.to_bytes()) + comp.flush()


def _write_patient(cfg: PhantomConfig, spec: PatientSpec, out: str) -> dict[str, Any]:
    """Generate one patient and write its files; return its truth row."""
    from dlmvi.io.atomic import write_bytes

    pat = generate_patient(cfg, spec)
    folder = Path(out) / "images" / spec.patient_id
    folder.mkdir(parents=True, exist_ok=True)
    aff = affine_ras(cfg)
    mask_bytes = nifti_gz_bytes(pat.mask.astype(np.uint8), aff, cfg.compresslevel)
    for s in SEQUENCES:
        if cfg.fmt == "nifti":
            write_bytes(folder / f"{s}.nii.gz",
                        nifti_gz_bytes(pat.images[s], aff, cfg.compresslevel))
        else:
            from dlmvi.io.dicom_write import write_dicom_series

            write_dicom_series(
                pat.images[s], cfg.spacing, cfg.origin, folder / s, s,
                patient_id=spec.patient_id, study_date=spec.study_date,
                entropy=f"dlmvi-phantom-v{PHANTOM_VERSION}-seed{cfg.seed}",
                series_number=SEQUENCES.index(s) + 1,
            )
        write_bytes(folder / f"{s}_roi.nii.gz", mask_bytes)
    return pat.truth


def _worker(args):
    return _write_patient(*args)


README_TEXT = """\
SYNTHETIC DATA - NOT PATIENT DATA
=================================

{notice}

This folder was generated by `dlmvi phantom` (dlmvi {version}, phantom model v{pv},
seed {seed}). Every image, mask, laboratory value, date and outcome in it was drawn by a
random number generator from a hand-made model. It says nothing about real patients, real
scanners or real outcomes; do not use it for any clinical or scientific conclusion.

It exists so that dlmvi's whole pipeline can be run and tested on data laid out exactly
like a hospital's cohort:

  clinical.csv                       one row per synthetic patient (column `synthetic` = 1)
  images/<patient_id>/<SEQ>.nii.gz   (or <SEQ>/ DICOM series folders) for T1, T1A, T1V,
                                     T1D, T2, DWI
  images/<patient_id>/<SEQ>_roi.nii.gz   mask of the main tumour (satellite nodules and
                                     capsule are not in the mask)
  phantom_truth.csv                  the generator's ground truth per patient (tumour
                                     radius, MVI feature strengths) - for testing only
  cohort.json                        {{"synthetic": true, ...}} and the generator settings

MVI (M1/M2) is simulated to make the tumour larger, its margin irregular, add patchy
peritumoural enhancement on T1A and hypointensity on T1D, an incomplete capsule and
satellite nodules, with broad overlap between grades. The "{second}" cohort(s) were
rendered by a different simulated scanner on T1 and T1D (not on T1V).
"""


def _prepare_out(out: Path) -> None:
    """Refuse to write into a folder that holds something other than a phantom."""
    import json

    if out.exists() and not out.is_dir():
        raise CohortError(f"{out} exists and is not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()):
        meta = out / "cohort.json"
        try:
            is_phantom = json.loads(meta.read_text()).get("synthetic") is True
        except (OSError, ValueError):
            is_phantom = False
        if not is_phantom:
            raise CohortError(
                f"{out} is not empty and is not a dlmvi phantom (no cohort.json with "
                f'"synthetic": true); choose an empty or new folder so no data is overwritten'
            )
        # Regenerating a phantom: drop the old images so no stale patients remain.
        shutil.rmtree(out / "images", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def make_phantom(
    out_dir: str | os.PathLike,
    n_patients: int = 321,
    seed: int = 0,
    size: int = 128,
    fmt: str = "nifti",
    cohorts: Sequence[tuple[str, int]] = (("2015", 149), ("2018", 172)),
    progress: bool | Callable[[int, int], None] = True,
    **options: Any,
) -> Path:
    """Write a complete synthetic cohort in dlmvi's cohort format.

    Args:
        out_dir: output folder (created; must be empty, new, or an earlier phantom).
        n_patients: number of patients; cohort sizes scale proportionally to ``cohorts``.
        seed: seed of every random draw (same seed -> byte-identical files).
        size: in-plane matrix in pixels (field of view fixed at 36 cm).
        fmt: "nifti" or "dicom" (images as DICOM series folders; masks stay NIfTI).
        cohorts: (name, patients) of the layout scaled to ``n_patients``.
        progress: show a progress bar (True), nothing (False), or call
            ``progress(done, total)`` after every patient.
        **options: other :class:`PhantomConfig` fields (``n_slices``, ``workers``, ...).

    Returns:
        The cohort folder.
    """
    cfg = PhantomConfig(n_patients=n_patients, seed=int(seed), size=int(size), fmt=fmt,
                        cohorts=tuple((str(c), int(n)) for c, n in cohorts), **options)
    return generate_cohort(cfg, out_dir, progress=progress)


def patient_specs(cfg: PhantomConfig):
    """The simulated clinical table and one :class:`PatientSpec` per patient.

    The table's ``tumor_size_cm`` still holds the target size; :func:`generate_cohort`
    replaces it by the size measured on the drawn mask.
    """
    import datetime as dt

    from dlmvi.datasets import clinical_sim as cs

    sizes = cfg.cohort_sizes()
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0]))
    patients = cs.draw_patients(sizes, rng)
    clinical = cs.simulate_clinical(patients, rng)
    first = str(cfg.cohorts[0][0])  # scanner A; every other cohort: scanner B
    specs = []
    for i, row in enumerate(clinical.itertuples(index=False), start=1):
        surgery = dt.date.fromisoformat(row.surgery_date)
        specs.append(PatientSpec(
            index=i, patient_id=row.patient_id, cohort=row.cohort,
            scanner="A" if row.cohort == first else "B", mvi_grade=row.mvi_grade,
            capsule=int(row.capsule), edmondson=int(row.edmondson),
            target_size_cm=float(row.tumor_size_cm),
            study_date=(surgery - dt.timedelta(days=7)).strftime("%Y%m%d"),
        ))
    return clinical, specs


def generate_cohort(
    cfg: PhantomConfig,
    out_dir: str | os.PathLike,
    progress: bool | Callable[[int, int], None] = True,
) -> Path:
    """Write the cohort described by ``cfg`` to ``out_dir`` (see :func:`make_phantom`)."""
    import pandas as pd

    from dlmvi import __version__
    from dlmvi.io.atomic import write_csv, write_json, write_text

    out = Path(out_dir)
    _prepare_out(out)
    sizes = cfg.cohort_sizes()
    first = str(cfg.cohorts[0][0])
    clinical, specs = patient_specs(cfg)

    workers = cfg.workers
    if workers is None:
        # A pool pays ~1 s start-up per worker: only worth it for larger cohorts.
        work = len(specs) * (cfg.size / 128) ** 2 * (2.0 if cfg.fmt == "dicom" else 1.0)
        workers = min(2, os.cpu_count() or 1) if work >= 60 else 1
    tick = _progress_callback(progress, len(specs))
    truths = []
    try:
        if workers <= 1:
            for spec in specs:
                truths.append(_write_patient(cfg, spec, str(out)))
                tick(len(truths))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers,
                                     mp_context=mp.get_context("spawn")) as pool:
                for t in pool.map(_worker, [(cfg, s, str(out)) for s in specs], chunksize=4):
                    truths.append(t)
                    tick(len(truths))
    finally:
        tick(None)

    truth = pd.DataFrame(truths)
    clinical["tumor_size_cm"] = truth["measured_size_cm"].to_numpy()
    truth.insert(0, "synthetic", 1)
    write_csv(out / "clinical.csv", clinical)
    write_csv(out / "phantom_truth.csv", truth)
    write_csv(out / "scanners.csv", pd.DataFrame(
        [{"patient_id": sp.patient_id, "sequence": seq, "vendor": "dlmvi phantom", "model": f"scanner {sp.scanner}",
          "field_strength": 1.5, "series_date": sp.study_date} for sp in specs for seq in SEQUENCES]))
    write_json(out / "cohort.json", {
        "synthetic": True,
        "generator": "dlmvi phantom",
        "seed": cfg.seed,
        "version": __version__,
        "phantom_version": PHANTOM_VERSION,
        "notice": SYNTHETIC_NOTICE,
        "format": cfg.fmt,
        # workers is left out: it does not change the files, which stay byte-identical.
        "config": {k: v for k, v in asdict(cfg).items() if k != "workers"}
        | {"spacing_mm": list(cfg.spacing)},
        "cohorts": {name: n for name, n in sizes},
        "scanners": {name: ("A" if name == first else "B") for name, _ in sizes},
    })
    write_text(out / "README_SYNTHETIC.txt", README_TEXT.format(
        notice=SYNTHETIC_NOTICE, version=__version__, pv=PHANTOM_VERSION, seed=cfg.seed,
        second=", ".join(n for n, _ in sizes if n != first) or "(none)"))
    return out


def _progress_callback(progress, total: int) -> Callable[[int | None], None]:
    """A tick(done) function; tick(None) closes the bar."""
    if callable(progress):
        return lambda done: None if done is None else progress(done, total)
    if not progress:
        return lambda done: None
    from rich.progress import Progress

    bar = Progress(transient=False)
    task = bar.add_task("synthetic patients", total=total)
    bar.start()

    def tick(done):
        if done is None:
            bar.stop()
        else:
            bar.update(task, completed=done)

    return tick
