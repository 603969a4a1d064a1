"""The on-disk patch cache that ``dlmvi prepare`` writes and training reads.

Layout (everything written atomically)::

    CACHE/
      cache.json                       format version, parameters, source fingerprints summary
      patients.csv                     one row per patient of the cohort: patient_id, cohort,
                                       mvi_grade, included (0/1), exclusion_reason, synthetic
      index.csv                        one row per prepared (patient, sequence): patient_id,
                                       sequence, source, fingerprint, slices ("12;13;14"),
                                       box ("y0;x0;y1;x1", voxel indices, end exclusive,
                                       margin included), spacing_mm ("x;y;z"), file
      patches/<patient_id>/<SEQ>.npy   float32 (or float16, ``--dtype float16``) array
                                       (3, size, size): the 3 key slices, cropped, resized
                                       and normalised

Patch files are plain ``.npy`` (no pickle) and are memory-mapped on read, so training never
needs the whole cohort in memory; :meth:`PatchCache.stack` reads a chosen subset when it fits.

float16 storage halves the disk and, for training (:func:`load_patches` with
``dtype=np.float16``), the memory: 1.8 MB instead of 3.7 MB per patient and 3 sequences at
320 px. z-scored patches lie within +-5, where float16's relative rounding (2^-11) is at most
0.0025, far below the augmentation's noise (sd 0.1); raw intensities above float16's range
(65504) are refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.constants import GRADES, SEQUENCES
from dlmvi.errors import CacheError

CACHE_FORMAT = "dlmvi-cache/1"

#: Storage types of patch files.
PATCH_DTYPES = ("float32", "float16")

#: File names of a cache folder (see the module docstring).
CACHE_JSON, PATIENTS_CSV, INDEX_CSV, PROBLEMS_CSV, PATCHES = (
    "cache.json", "patients.csv", "index.csv", "problems.csv", "patches")


def patch_file(patient_id: str, sequence: str) -> str:
    """Path of a patch relative to the cache folder: ``patches/<patient_id>/<SEQ>.npy``."""
    return f"{PATCHES}/{patient_id}/{sequence}.npy"


@dataclass(frozen=True)
class PrepareConfig:
    """Parameters of ``dlmvi prepare``; saved in ``cache.json`` and in every checkpoint.

    Attributes:
        sequences: sequences to prepare (a patient must have all of them to be included).
        size: side of the square patch in pixels after resizing.
        margin: pixels added on every side of the tumour's bounding box before cropping
            (the study enlarged the radiologists' box by 5-10 pixels).
        n_slices: consecutive axial slices kept per sequence (3 in the study).
        normalization: per-image intensity normalisation: ``"zscore"`` (mean 0, sd 1 over
            the cropped slices, clipped to +-5 sd) or ``"none"`` (raw intensities, for
            harmonisation fitted later on the development cohort).
        dtype: storage type of the patch files, ``"float32"`` or ``"float16"`` (half the
            disk and training memory). Recorded in cache.json only when float16, so caches
            written before the option existed keep their parameters and fingerprints.
    """

    sequences: tuple[str, ...] = ("T1", "T1V", "T1D")
    size: int = 320
    margin: int = 8
    n_slices: int = 3
    normalization: str = "zscore"
    dtype: str = "float32"

    def __post_init__(self):
        from dlmvi.errors import ConfigError

        unknown = [s for s in self.sequences if s not in SEQUENCES]
        if unknown or not self.sequences:
            raise ConfigError(
                f"unknown sequence(s) {unknown or '(none given)'}; choose from {', '.join(SEQUENCES)}"
            )
        if self.size < 16:
            raise ConfigError(f"--size {self.size} is too small; use at least 16 pixels")
        if self.margin < 0:
            raise ConfigError(f"--margin {self.margin} must be >= 0 pixels")
        if self.n_slices < 1:
            raise ConfigError("n_slices must be >= 1")
        if self.normalization not in ("zscore", "none"):
            raise ConfigError(
                f"normalization {self.normalization!r} unknown; use 'zscore' or 'none'"
            )
        if self.dtype not in PATCH_DTYPES:
            raise ConfigError(f"--dtype {self.dtype!r} unknown; use {' or '.join(PATCH_DTYPES)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sequences"] = list(self.sequences)
        if d["dtype"] == "float32":
            del d["dtype"]  # the format before the option: unchanged parameters, no rebuild
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PrepareConfig":
        d = dict(d)
        d["sequences"] = tuple(d["sequences"])
        return cls(**d)


def grade_to_label(grades, classes: int = 2) -> np.ndarray:
    """Map MVI grades ("M0", "M1", "M2") to class indices.

    ``classes=2``: M0 -> 0 (absent), M1/M2 -> 1 (present). ``classes=3``: M0/M1/M2 -> 0/1/2.
    """
    idx = np.array([GRADES.index(g) for g in grades], dtype=np.int64)
    if classes == 2:
        return (idx > 0).astype(np.int64)
    if classes == 3:
        return idx
    raise ValueError(f"classes must be 2 or 3, got {classes}")


@dataclass
class PatchCache:
    """Read access to a prepared cache.

    Example:
        >>> cache = PatchCache("runs/demo/cache")            # doctest: +SKIP
        >>> ids = cache.patient_ids(cohort="2015")           # doctest: +SKIP
        >>> x = cache.stack(ids, ("T1", "T1V", "T1D"))       # (N, 3 seq, 3 slices, S, S)
    """

    root: Path
    config: PrepareConfig = field(init=False)
    meta: dict = field(init=False)
    patients: pd.DataFrame = field(init=False)
    index: pd.DataFrame = field(init=False)

    def __post_init__(self):
        self.root = Path(self.root)
        meta_path = self.root / CACHE_JSON
        if not meta_path.is_file():
            raise CacheError(
                f"{self.root} is not a dlmvi cache (no cache.json); run `dlmvi prepare COHORT --out {self.root}`"
            )
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != CACHE_FORMAT:
            raise CacheError(
                f"{meta_path}: cache format {self.meta.get('format')!r} is not {CACHE_FORMAT!r}; "
                "rerun `dlmvi prepare` to rebuild it"
            )
        if not self.meta.get("complete", False):
            raise CacheError(
                f"{self.root}: the cache is incomplete (an interrupted prepare?); rerun `dlmvi prepare`"
            )
        self.config = PrepareConfig.from_dict(self.meta["params"])
        self.patients = pd.read_csv(
            self.root / PATIENTS_CSV, dtype={"patient_id": str, "cohort": str}, keep_default_na=False
        )
        self.index = pd.read_csv(self.root / INDEX_CSV, dtype={"patient_id": str})

    @property
    def synthetic(self) -> bool:
        """True when the cohort is dlmvi's synthetic phantom."""
        return bool(self.meta.get("synthetic", False))

    @property
    def sequences(self) -> tuple[str, ...]:
        return self.config.sequences

    @property
    def cohorts(self) -> list[str]:
        inc = self.patients[self.patients["included"] == 1]
        return sorted(inc["cohort"].unique().tolist())

    def patient_ids(self, cohort: str | None = None, sequences=None) -> list[str]:
        """Included patients (optionally of one cohort) that have every requested sequence."""
        sequences = tuple(sequences or self.sequences)
        self._check_sequences(sequences)
        p = self.patients[self.patients["included"] == 1]
        if cohort is not None:
            p = p[p["cohort"] == str(cohort)]
        have = self.index.groupby("patient_id")["sequence"].apply(set)
        ok = [pid for pid in p["patient_id"] if set(sequences) <= have.get(pid, set())]
        return ok

    def grades(self, patient_ids) -> list[str]:
        g = self.patients.set_index("patient_id")["mvi_grade"]
        return [g[pid] for pid in patient_ids]

    def labels(self, patient_ids, classes: int = 2) -> np.ndarray:
        """Class index per patient (see :func:`grade_to_label`)."""
        return grade_to_label(self.grades(patient_ids), classes)

    def cohort_of(self, patient_ids) -> list[str]:
        c = self.patients.set_index("patient_id")["cohort"]
        return [c[pid] for pid in patient_ids]

    def patch_path(self, patient_id: str, sequence: str) -> Path:
        return self.root / patch_file(patient_id, sequence)

    @property
    def dtype(self) -> np.dtype:
        """Storage type of the patches (float32, or float16 for ``--dtype float16``)."""
        return np.dtype(self.config.dtype)

    def load(self, patient_id: str, sequence: str, mmap: bool = True) -> np.ndarray:
        """The (n_slices, size, size) patch of one patient and sequence, in the storage type."""
        path = self.patch_path(patient_id, sequence)
        if not path.is_file():
            raise CacheError(
                f"patient {patient_id}, {sequence}: no patch in the cache ({path}); "
                "rerun `dlmvi prepare` with this sequence"
            )
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)

    def stack(self, patient_ids, sequences=None, dtype=np.float32) -> np.ndarray:
        """Read patches into memory as (N, n_sequences, n_slices, size, size) ``dtype``."""
        sequences = tuple(sequences or self.sequences)
        self._check_sequences(sequences)
        c = self.config
        out = np.empty((len(patient_ids), len(sequences), c.n_slices, c.size, c.size), dtype)
        for i, pid in enumerate(patient_ids):
            for j, seq in enumerate(sequences):
                out[i, j] = self.load(pid, seq)
        return out

    def _check_sequences(self, sequences):
        missing = [s for s in sequences if s not in self.sequences]
        if missing:
            raise CacheError(
                f"sequence(s) {missing} are not in the cache {self.root} (it holds "
                f"{', '.join(self.sequences)}); rerun `dlmvi prepare --sequences "
                f"{','.join(dict.fromkeys(self.sequences + tuple(missing)))}`"
            )
