"""``dlmvi prepare``: build the patch cache from a cohort folder, incrementally and atomically.

Per patient and sequence: read the image and mask, pick the key slices, crop the enlarged box,
resize and normalise (:mod:`dlmvi.preprocess.roi`), write ``patches/<pid>/<SEQ>.npy``.
A patch is rebuilt only when its source files (size and modification time) or the
parameters change. Patients with unusable data are excluded, with the reason recorded in
``patients.csv`` (for the report's cohort flow) and listed in ``skipped.csv``; ``strict=True``
fails instead. Patients without ``mvi_grade`` (prospective) are prepared like any other.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from dlmvi import __version__
from dlmvi.cohort.cohort import Cohort
from dlmvi.cohort.validate import Problem, check_patient
from dlmvi.errors import CacheError, CohortError, DlmviWarning
from dlmvi.io.atomic import atomic_path, make_dirs, write_csv, write_json
from dlmvi.io.skipped import SKIPPED_CSV, Skipped
from dlmvi.io.tables import ColumnMap
from dlmvi.preprocess.cache import (CACHE_FORMAT, CACHE_JSON, INDEX_CSV, PATCHES, PATIENTS_CSV,
                                    PROBLEMS_CSV, PatchCache, PrepareConfig, patch_file)
from dlmvi.preprocess.patches import sequence_patch


def fingerprint(files, config: PrepareConfig) -> str:
    """Hash of the source files' paths, sizes and modification times plus the parameters."""
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def prepare_cohort(
    cohort_dir: str | Path,
    cache_dir: str | Path,
    config: PrepareConfig = PrepareConfig(),
    column_map: ColumnMap | None = None,
    strict: bool = False,
    progress: bool = True,
    lock_timeout: float = 0.0,
    workers: int = 2,
) -> PatchCache:
    """Prepare (or update) the patch cache of a cohort.

    Args:
        cohort_dir: the cohort folder (clinical.csv, images/).
        cache_dir: where the cache is written.
        config: sequences, patch size, margin, normalisation.
        column_map: the hospital's column names and units.
        strict: raise on the first unusable patient instead of excluding it.
        progress: show a progress bar.
        lock_timeout: seconds to wait for another prepare on the same cache (0: fail at once).
        workers: patients prepared at once (threads).

    Returns:
        The finished :class:`PatchCache`.
    """
    from filelock import FileLock, Timeout

    cache_dir = make_dirs(cache_dir)
    lock = FileLock(str(cache_dir / ".lock"))
    try:
        lock.acquire(timeout=lock_timeout)
    except Timeout:
        raise CacheError(
            f"{cache_dir} is being prepared by another dlmvi process; wait for it to finish "
            "(or remove the stale lock file .lock if none is running)"
        ) from None
    try:
        return _prepare_locked(Path(cohort_dir), cache_dir, config, column_map, strict, progress, workers)
    finally:
        lock.release()


def _prepare_locked(cohort_dir, cache_dir, config, column_map, strict, progress, workers=2) -> PatchCache:
    # Temporary files of an interrupted run (hidden, never read): remove them under the lock.
    for tmp in cache_dir.rglob(".*.tmp*"):
        tmp.unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DlmviWarning)  # reported per patient below
        cohort = Cohort.from_folder(cohort_dir, column_map)
    meta_path = cache_dir / CACHE_JSON
    old_index = _reusable_index(cache_dir, meta_path, config)
    meta = {
        "format": CACHE_FORMAT,
        "complete": False,
        "params": config.to_dict(),
        "cohort_dir": str(cohort_dir.resolve()),
        "synthetic": cohort.synthetic,
        "dlmvi_version": __version__,
    }
    write_json(meta_path, meta)  # marks the cache incomplete until the end
    old_rows = {(r["patient_id"], r["sequence"]): r for r in old_index.to_dict("records")}
    rows, patients, problems = _prepare_patients(cohort, config, cache_dir, old_rows, strict, progress, workers)

    skipped = Skipped("the cache")
    for p in patients:
        if not p["included"]:
            skipped.add(p["patient_id"], p["exclusion_reason"])
    if not any(p["included"] for p in patients):
        raise CacheError(
            f"no usable patient in {cohort_dir} ({skipped.summary(show=3)}); run `dlmvi validate {cohort_dir}` "
            "for every problem"
        )
    pdf = pd.DataFrame(patients)
    pdf["synthetic"] = int(cohort.synthetic)
    write_csv(cache_dir / INDEX_CSV, pd.DataFrame(rows, columns=INDEX_COLUMNS))
    write_csv(cache_dir / PATIENTS_CSV, pdf)
    skipped.write(cache_dir / SKIPPED_CSV)
    write_csv(cache_dir / PROBLEMS_CSV, pd.DataFrame(
        [(p.patient_id, p.sequence, p.level, p.message) for p in problems],
        columns=["patient_id", "sequence", "level", "message"],
    ))
    meta.update(
        complete=True,
        n_patients=len(pdf),
        n_included=int(pdf["included"].sum()),
        image_only_ids=cohort.image_only_ids,
    )
    write_json(meta_path, meta)
    return PatchCache(cache_dir)


def _reusable_index(cache_dir: Path, meta_path: Path, config: PrepareConfig) -> pd.DataFrame:
    """The index of a cache prepared with the same parameters (empty otherwise; the patches of
    a cache prepared with other parameters are removed)."""
    old_index = pd.DataFrame()
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("format") == CACHE_FORMAT and old.get("params") == config.to_dict() and (cache_dir / INDEX_CSV).is_file():
            old_index = pd.read_csv(cache_dir / INDEX_CSV, dtype={"patient_id": str})
        elif (cache_dir / PATCHES).exists():
            shutil.rmtree(cache_dir / PATCHES)  # parameters changed: rebuild everything
    return old_index


def _prepare_patients(cohort, config: PrepareConfig, cache_dir: Path, old_rows: dict, strict: bool,
                      progress: bool, workers: int) -> tuple[list[dict], list[dict], list[Problem]]:
    """Prepare every patient of the cohort; returns (index rows, patients.csv rows, problems)."""
    table_errors: dict[str, list[str]] = {}
    for level, pid, col, msg in cohort.table.problems:
        if level == "error":
            table_errors.setdefault(pid, []).append(f"{col}: {msg}")
    table_only = set(cohort.table_only_ids)
    rows, patients, problems = [], [], []
    items = list(cohort)

    def work(patient):
        if table_errors.get(patient.patient_id) or patient.patient_id in table_only:
            return None
        return _prepare_patient(patient, config, cache_dir, old_rows)

    # Two threads: reading (zlib) and resizing (torch) release the GIL, so I/O of one patient
    # overlaps the work on another; results come back in cohort order.
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=max(workers, 1))
    try:
        results = pool.map(work, items) if workers > 1 else map(work, items)
        for patient, result in _track(zip(items, results), progress, f"preparing {len(items)} patients", len(items)):
            pid = patient.patient_id
            reasons = list(table_errors.get(pid, []))
            if pid in table_only:
                reasons.append("no images/ folder")
            prow = {"patient_id": pid, "cohort": patient.cohort, "mvi_grade": patient.mvi_grade}
            if result is not None:
                new_rows, pprobs = result
                problems.extend(pprobs)
                reasons = [f"{p.sequence}: {p.message}" for p in pprobs if p.level == "error"]
                if not reasons:
                    rows.extend(new_rows)
            if reasons and strict:
                raise CohortError(f"patient {pid}: " + "; ".join(reasons))
            prow["included"] = int(not reasons)
            prow["exclusion_reason"] = "; ".join(reasons)
            patients.append(prow)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a strict error stops the queued patients
    return rows, patients, problems


INDEX_COLUMNS = ["patient_id", "sequence", "source", "fingerprint", "slices", "box", "spacing_mm", "file"]


def _prepare_patient(patient, config: PrepareConfig, cache_dir: Path, old_rows: dict):
    """Patches of one patient; returns (index rows, problems). Reuses up-to-date patches."""
    pid = patient.patient_id
    todo, rows, problems = [], [], []
    for seq in config.sequences:
        src = patient.sources.get(seq)
        if src is None:
            continue
        fp = fingerprint(src.files(), config)
        old = old_rows.get((pid, seq))
        rel = patch_file(pid, seq)
        if old is not None and old["fingerprint"] == fp and (cache_dir / rel).is_file():
            rows.append(old)
        else:
            todo.append(seq)
    missing = [s for s in config.sequences if s not in patient.sources]
    loaded, problems = check_patient(patient, todo + missing)
    for seq, ls in loaded.items():
        src = patient.sources[seq]
        try:
            sp = sequence_patch(ls, config, pid, seq)
        except CohortError as exc:
            problems.append(Problem("error", str(exc), pid, seq, str(src.image)))
            continue
        rel = patch_file(pid, seq)
        with atomic_path(cache_dir / rel, suffix=".npy") as tmp:
            np.save(tmp, _stored(sp.patch, config.dtype, pid, seq), allow_pickle=False)
        rows.append({
            "patient_id": pid,
            "sequence": seq,
            "source": "rois.csv" if src.mask is None else "mask",
            "fingerprint": fingerprint(src.files(), config),
            "slices": ";".join(str(s) for s in sp.slices),
            "box": ";".join(str(b) for b in sp.box),
            "spacing_mm": ";".join(f"{s:.4g}" for s in sp.spacing),
            "file": rel,
        })
    return rows, problems


def _stored(patch: np.ndarray, dtype: str, patient_id: str, sequence: str) -> np.ndarray:
    """The patch in the cache's storage type; intensities beyond float16's range are refused."""
    if dtype == "float16":
        peak = float(np.abs(patch).max()) if patch.size else 0.0
        if not peak <= float(np.finfo(np.float16).max):
            raise CacheError(
                f"patient {patient_id}, {sequence}: intensities up to {peak:.6g} exceed float16's range "
                f"({float(np.finfo(np.float16).max):.0f}); prepare with --dtype float32, or with "
                "--normalization zscore"
            )
    return patch.astype(dtype, copy=False)


def _track(items, show: bool, label: str, total: int | None = None):
    if not show:
        yield from items
        return
    from rich.progress import track

    yield from track(items, description=label, total=total)
