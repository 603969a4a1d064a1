"""``dlmvi radiomics``: IBSI-compliant radiomics features with MIRP, per patient and sequence.

From the same images and ROIs the network uses (the tumour mask, or rois.csv boxes
rasterised as a box mask and flagged ``roi = box``), for the tumour and a peritumoural ring
(:mod:`dlmvi.preprocess.radiomics_masks`), MIRP (``mirp.extract_features``) computes the
configured feature families. Reproducibility: the same features under ``readers`` perturbed
ROIs (a second reader's box or contour, noise) for up to ``reproducibility_patients``
patients.

Output folder (``FEATURES/``)::

    features.csv        one row per patient: patient_id, cohort, mvi_grade, <SEQ>.<region>.<feature>
    reproducibility.csv one row per patient and reader (0 = the original ROI)
    rois.csv            per patient and sequence: roi (mask | box), voxels, ring share outside the image
    radiomics.json      every setting (MIRP version, discretisation, resampling, families, ring)
    skipped.csv         patients left out and why (never imputed)
    cache/<pid>.json    one patient's features, with the fingerprint of its inputs and settings

A patient is recomputed only when its files (size, modification time), its rois.csv rows or
the settings change; a rerun with an unchanged cache reads it back in seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi.errors import CohortError, ConfigError, DlmviError, DlmviWarning, ImageError
from dlmvi.io.atomic import make_dirs, write_csv, write_json
from dlmvi.io.images import Where
from dlmvi.io.skipped import SKIPPED_CSV, Skipped

FEATURES_CSV = "features.csv"
REPRO_CSV = "reproducibility.csv"
ROIS_CSV = "rois.csv"
RADIOMICS_JSON = "radiomics.json"
CACHE = "cache"
FORMAT = "dlmvi-radiomics/1"
#: Identifying columns of features.csv (every other column is a feature).
ID_COLUMNS = ("patient_id", "cohort", "mvi_grade")
REGIONS = ("tumour", "ring")
FAMILIES = ("statistics", "intensity_histogram", "glcm", "glrlm", "glszm", "morphology")


@dataclass(frozen=True)
class RadiomicsConfig:
    """Settings of the feature extraction, recorded in ``radiomics.json``.

    Attributes:
        sequences: sequences to read.
        ring_mm: width of the peritumoural ring in mm (0: tumour only).
        families: MIRP base feature families.
        bins: fixed bin number of the discretisation (MRI intensities have no unit, so a
            fixed number of bins rather than a fixed bin width).
        spacing_mm: isotropic in-plane resampling (mm), or None to keep the native grid.
        by_slice: 2-D texture per slice (thick MRI slices) rather than 3-D.
        min_voxels: fewest ROI voxels accepted.
        readers: perturbed readers for the reproducibility analysis (0: none).
        reproducibility_patients: patients (the first in id order) of that analysis.
        seed: seed of the perturbations.
    """

    sequences: tuple[str, ...] = ("T1", "T1V", "T1D")
    ring_mm: float = 5.0
    families: tuple[str, ...] = FAMILIES
    bins: int = 32
    spacing_mm: float | None = None
    by_slice: bool = False
    min_voxels: int = 27
    readers: int = 4
    reproducibility_patients: int = 40
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "sequences", tuple(self.sequences))
        object.__setattr__(self, "families", tuple(self.families))
        bad = [f for f in self.families if f not in FAMILIES]
        if bad:
            raise ConfigError(f"radiomics feature families {bad}: use {', '.join(FAMILIES)}")
        if self.ring_mm < 0 or self.bins < 2 or self.readers < 0:
            raise ConfigError(f"radiomics settings: ring_mm {self.ring_mm} must be >= 0, bins {self.bins} >= 2, "
                              f"readers {self.readers} >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RadiomicsConfig":
        return cls(**d)

    def mirp_settings(self) -> dict:
        """Keyword arguments of ``mirp.extract_features`` (recorded with the output)."""
        kw = {"image_modality": "mr", "base_feature_families": list(self.families), "by_slice": self.by_slice,
              "base_discretisation_method": "fixed_bin_number", "base_discretisation_n_bins": self.bins,
              "ibsi_compliant": True}
        if self.spacing_mm is not None:
            kw["new_spacing"] = [float(self.spacing_mm)] * (2 if self.by_slice else 3)
        return kw


def mirp_version() -> str:
    from importlib.metadata import version

    return version("mirp")


def patient_fingerprint(patient, config: RadiomicsConfig, liver_files) -> str:
    """Hash of the patient's source files (path, size, mtime), boxes, settings and MIRP version."""
    h = hashlib.sha256(json.dumps([config.to_dict(), mirp_version(), FORMAT], sort_keys=True).encode())
    for seq in config.sequences:
        src = patient.sources.get(seq)
        h.update(f"{seq}|{src.boxes if src is not None else None}".encode())
        for f in (src.files() if src is not None else []) + [p for p in liver_files.get(seq, []) if p.is_file()]:
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def liver_mask_files(patient, sequences) -> dict[str, list[Path]]:
    """``images/<pid>/<SEQ>_liver.nii.gz`` per sequence (optional)."""
    from dlmvi.io.images import nifti_path

    out = {}
    for seq in sequences:
        src = patient.sources.get(seq)
        folder = src.image.parent if src is not None else None
        p = nifti_path(folder, f"{seq}_liver") if folder is not None else None
        out[seq] = [p] if p is not None else []
    return out


def mirp_features(image: np.ndarray, labels: np.ndarray, spacing_xyz, settings: dict, tmp: Path) -> pd.DataFrame:
    """MIRP's features of each label (1 = tumour, 2 = ring) of ``labels`` on ``image`` (z, y, x).

    The arrays go to MIRP as NIfTI files on their grid (MIRP reads the voxel spacing from
    them). Returns one row per region, indexed by region name, feature columns only.
    """
    import SimpleITK as sitk
    from mirp import extract_features

    img = sitk.GetImageFromArray(np.ascontiguousarray(image, dtype=np.float32))
    img.SetSpacing(tuple(float(v) for v in spacing_xyz))
    lab = sitk.GetImageFromArray(np.ascontiguousarray(labels, dtype=np.uint8))
    lab.CopyInformation(img)
    ip, mp = tmp / "image.nii", tmp / "mask.nii"  # uncompressed: written and read at once
    sitk.WriteImage(img, str(ip), useCompression=False)
    sitk.WriteImage(lab, str(mp), useCompression=False)
    before = logging.root.manager.disable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(max(before, logging.INFO))  # MIRP logs every image at INFO
        try:
            tables = extract_features(image=str(ip), mask=str(mp), export_features=True, write_features=False,
                                      **settings)
        finally:
            logging.disable(before)
    frame = pd.concat(tables, ignore_index=True)
    names = {f"region_{i + 1}": r for i, r in enumerate(REGIONS)}
    frame.index = [names.get(str(v), str(v)) for v in frame["image_mask_label"]]
    meta = [c for c in frame.columns if c.startswith(("image_", "sample_"))]
    return frame.drop(columns=meta).apply(pd.to_numeric, errors="coerce")


@dataclass
class PatientFeatures:
    """One patient's features: ``values`` {column: value} per reader (0 = original ROI)."""

    patient_id: str
    fingerprint: str
    readers: dict[int, dict[str, float]] = field(default_factory=dict)
    rois: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "patient_id": self.patient_id, "fingerprint": self.fingerprint,
                "readers": {str(k): v for k, v in self.readers.items()}, "rois": self.rois}

    @classmethod
    def from_dict(cls, d: dict) -> "PatientFeatures":
        return cls(d["patient_id"], d["fingerprint"], {int(k): v for k, v in d["readers"].items()}, d["rois"])


def _load_liver(files: list[Path], shape, where: Where):
    from dlmvi.io.images import read_volume
    import SimpleITK as sitk

    if not files:
        return None
    arr = sitk.GetArrayFromImage(read_volume(files[0], where, reorient=True)) != 0
    if arr.shape != tuple(shape):
        raise ImageError(f"{where}: liver mask {files[0]} has shape {arr.shape}, the image {tuple(shape)}; "
                         "re-export the liver mask on the image grid")
    return arr


def sequence_features(patient, seq: str, config: RadiomicsConfig, liver_files, readers, tmp: Path
                      ) -> tuple[dict[int, dict[str, float]], dict]:
    """Features of one sequence for the original ROI (reader 0) and each perturbed reader."""
    from dlmvi.preprocess.radiomics_masks import perturb_roi, tumour_and_ring

    where = Where(patient.patient_id, seq)
    loaded = patient.load(seq, notes=[])
    src = patient.sources[seq]
    box = src.mask is None
    label = f"{where}: {'boxes of rois.csv' if box else src.mask}"
    liver = _load_liver(liver_files, loaded.image.shape, where)
    settings = config.mirp_settings()
    out: dict[int, dict[str, float]] = {}
    info: dict = {}
    for p in [None, *readers]:
        image, mask = (loaded.image, loaded.mask) if p is None else perturb_roi(loaded.image, loaded.mask, p, box)
        labels = mask.astype(np.uint8)
        if config.ring_mm > 0:
            reg = tumour_and_ring(mask, loaded.spacing, config.ring_mm, liver, where=label,
                                  min_voxels=config.min_voxels)
            labels[reg.ring] = 2
            if p is None:
                info = {"ring_voxels": int(reg.ring.sum()), "ring_outside_image": round(reg.ring_outside, 4),
                        "ring_removed_by_liver": round(reg.ring_liver_removed, 4)}
        elif int(mask.sum()) < config.min_voxels:
            raise ImageError(f"{label}: the ROI has {int(mask.sum())} voxel(s), fewer than the "
                             f"{config.min_voxels} radiomics needs; draw it larger or leave the patient out")
        frame = mirp_features(image, labels, loaded.spacing, settings, tmp)
        values = {f"{seq}.{region}.{col}": float(v) for region, row in frame.iterrows() for col, v in row.items()}
        bad = sorted(k for k, v in values.items() if not np.isfinite(v))
        if p is None and bad:
            raise ImageError(f"{label}: MIRP could not compute {len(bad)} feature(s) ({', '.join(bad[:3])}"
                             f"{' ...' if len(bad) > 3 else ''}); the patient is left out, not imputed")
        out[0 if p is None else p.reader] = values
    roi = {"patient_id": patient.patient_id, "sequence": seq, "roi": "box" if box else "mask",
           "roi_file": "rois.csv" if box else str(src.mask), "voxels": int(loaded.mask.sum()),
           "liver_mask": str(liver_files[0]) if liver_files else "", **info}
    return out, roi


def patient_features(patient, config: RadiomicsConfig, readers, fingerprint: str) -> PatientFeatures:
    """Every sequence of one patient (raises ImageError/CohortError naming patient, sequence, file)."""
    livers = liver_mask_files(patient, config.sequences)
    res = PatientFeatures(patient.patient_id, fingerprint)
    with tempfile.TemporaryDirectory(prefix="dlmvi-radiomics-") as tmp:
        for seq in config.sequences:
            values, roi = sequence_features(patient, seq, config, livers[seq], readers, Path(tmp))
            for r, v in values.items():
                res.readers.setdefault(r, {}).update(v)
            res.rois.append(roi)
    return res


def _cached(path: Path, fingerprint: str) -> PatientFeatures | str | None:
    """The cached features, or the cached error message (unchanged inputs fail again), or None."""
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    if d.get("format") != FORMAT or d.get("fingerprint") != fingerprint:
        return None
    return d["error"] if "error" in d else PatientFeatures.from_dict(d)


def _work(args):
    """One patient (module level: runs in a worker process)."""
    patient, config, readers, fp, cache_file = args
    try:
        res = patient_features(patient, config, readers, fp)
    except DlmviError as exc:
        write_json(cache_file, {"format": FORMAT, "fingerprint": fp, "error": str(exc)})
        return patient.patient_id, None, str(exc)
    write_json(cache_file, res.to_dict())
    return patient.patient_id, res, None


@dataclass
class RadiomicsResult:
    """Features of a cohort (``features``), of the perturbed readers (``reproducibility``)."""

    features: pd.DataFrame
    reproducibility: pd.DataFrame
    rois: pd.DataFrame
    settings: dict
    skipped: Skipped
    computed: int = 0

    def write(self, out) -> Path:
        out = make_dirs(out)
        write_csv(out / FEATURES_CSV, self.features)
        write_csv(out / REPRO_CSV, self.reproducibility)
        write_csv(out / ROIS_CSV, self.rois)
        self.skipped.write(out / SKIPPED_CSV)
        write_json(out / RADIOMICS_JSON, self.settings)  # last: marks the output complete
        return out


def extract_cohort(cohort_dir, out, config: RadiomicsConfig = RadiomicsConfig(), column_map=None,
                   workers: int = 1, progress: bool = True) -> RadiomicsResult:
    """Extract (or read back from the cache) every patient's features and write ``out``.

    Args:
        cohort_dir: the cohort folder.
        out: the output folder (``FEATURES``); its ``cache/`` makes a rerun incremental.
        config: extraction settings.
        column_map: the hospital's column map.
        workers: patients computed at once (processes).
        progress: show a progress bar.

    Patients whose features cannot be computed (an ROI of a few voxels, a ring that leaves
    the image, a sequence without a mask, a feature MIRP returns as NaN) are listed in
    ``skipped.csv`` with the message naming patient, sequence and file, and left out.

    Raises:
        CohortError: no patient could be computed.
    """
    from dlmvi.cohort.cohort import Cohort
    from dlmvi.preprocess.radiomics_masks import perturbations

    out = make_dirs(out)
    cache = make_dirs(out / CACHE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DlmviWarning)
        cohort = Cohort.from_folder(cohort_dir, column_map)
    readers = perturbations(config.readers, config.seed)
    ids = sorted(cohort.patients)
    repro_ids = set(ids[: config.reproducibility_patients])
    skipped = Skipped("radiomics")
    todo, done = [], {}
    for pid in ids:
        patient = cohort.patients[pid]
        missing = [s for s in config.sequences if s not in patient.sources]
        if missing:
            skipped.add(pid, f"patient {pid}: no image for {', '.join(missing)} under images/{pid}/")
            continue
        fp = patient_fingerprint(patient, config, liver_mask_files(patient, config.sequences))
        fp = fp + ("r" if pid in repro_ids else "")
        hit = _cached(cache / f"{pid}.json", fp)
        if isinstance(hit, str):
            skipped.add(pid, hit)
        elif hit is not None:
            done[pid] = hit
        else:
            todo.append((patient, config, readers if pid in repro_ids else [], fp, cache / f"{pid}.json"))
    for pid, res, err in _run(todo, workers, progress):
        if err is not None:
            skipped.add(pid, err)
        else:
            done[pid] = res
    if not done:
        raise CohortError(f"{cohort_dir}: radiomics features could not be computed for any patient; "
                          + skipped.summary(out / SKIPPED_CSV))
    result = _assemble(cohort, done, config, readers, skipped)
    result.computed = len(todo)
    result.write(out)
    if len(skipped):
        skipped.warn(DlmviWarning, out / SKIPPED_CSV)
    return result


def _run(todo, workers: int, progress: bool):
    def track(items, show, label, total):
        if not show:
            return items
        from rich.progress import track as rich_track

        return rich_track(items, description=label, total=total)

    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            yield from track(pool.map(_work, todo), progress, "radiomics", total=len(todo))
    else:
        yield from track(map(_work, todo), progress, "radiomics", total=len(todo))


def _assemble(cohort, done: dict, config: RadiomicsConfig, readers, skipped: Skipped) -> RadiomicsResult:
    rows, repro, rois = [], [], []
    for pid in sorted(done):
        p = cohort.patients[pid]
        ident = {"patient_id": pid, "cohort": p.cohort, "mvi_grade": p.mvi_grade}
        rows.append({**ident, **done[pid].readers[0]})
        if len(done[pid].readers) > 1:
            repro.extend({**ident, "reader": r, **v} for r, v in sorted(done[pid].readers.items()))
        rois.extend(done[pid].rois)
    features = pd.DataFrame(rows)
    settings = {"format": FORMAT, "library": "MIRP", "mirp_version": mirp_version(), "ibsi_compliant": True,
                "config": config.to_dict(), "mirp_settings": config.mirp_settings(),
                "resampling": (f"in-plane {config.spacing_mm} mm (MIRP)" if config.spacing_mm
                               else "none: the native voxel grid"),
                "discretisation": f"fixed bin number, {config.bins} bins",
                "filters": "none (original image)",
                "ring": f"{config.ring_mm:g} mm (at least one pixel) around the tumour on each of its axial slices, clipped to the image and to the "
                        "liver mask <SEQ>_liver.nii.gz where present",
                "roi": "the tumour mask <SEQ>_roi.nii.gz; rois.csv boxes rasterised as box masks (rois.csv "
                       "column roi = box)",
                "perturbations": [p.to_dict() for p in readers],
                "synthetic": bool(cohort.synthetic), "n_patients": len(features), "n_skipped": len(skipped),
                "n_features": len(features.columns) - len(ID_COLUMNS)}
    if cohort.synthetic:
        features.insert(len(ID_COLUMNS), "synthetic", True)
        settings["notice"] = "SYNTHETIC data: features of the built-in phantom, not of patients"
    return RadiomicsResult(features, pd.DataFrame(repro), pd.DataFrame(rois), settings, skipped)


def read_features(folder) -> tuple[pd.DataFrame, dict]:
    """``features.csv`` and ``radiomics.json`` of an extraction.

    Raises:
        CohortError: the folder holds no finished extraction.
    """
    folder = Path(folder)
    meta = folder / RADIOMICS_JSON
    if not meta.is_file() or not (folder / FEATURES_CSV).is_file():
        raise CohortError(f"{folder}: no radiomics features (features.csv and radiomics.json); "
                          f"run `dlmvi radiomics COHORT --out {folder}` first")
    frame = pd.read_csv(folder / FEATURES_CSV, dtype={"patient_id": str, "cohort": str, "mvi_grade": str})
    return frame, json.loads(meta.read_text())


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a features table (everything but the identifying columns)."""
    return [c for c in frame.columns if c not in ID_COLUMNS and c != "synthetic" and c != "reader"]


__all__ = ["RadiomicsConfig", "RadiomicsResult", "extract_cohort", "read_features", "feature_columns",
           "mirp_features", "patient_features", "FEATURES_CSV", "REPRO_CSV", "ROIS_CSV", "RADIOMICS_JSON",
           "ID_COLUMNS", "FAMILIES"]
