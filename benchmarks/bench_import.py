"""Speed of ``dlmvi import`` on a PACS-like export of 321 SYNTHETIC patients.

The phantom (321 patients, six sequences, 24 slices each: 46,224 DICOM files; 64 px by
default, as pixel size barely matters to the header index) is written as DICOM and
hard-linked into ONE folder of randomly named files, as a PACS export looks. The OS file
cache is warmed (every byte read once), then:

* floor: ``pydicom.dcmread(f, stop_before_pixels=True)`` over every file, one process - the
  least any header index must do. CPU time (process_time), so other jobs on a shared machine
  do not distort the ratio;
* index: :func:`dlmvi.io.dicom_index.index_paths` (header parsing into frames) in one process,
  CPU time, as a fraction of the floor's rate (target >= 0.5); and with ``workers`` processes
  (wall time, files/s);
* import: the whole ``dlmvi import`` (index with ``workers`` processes, grouping, volume
  split, map, decoding every pixel and writing 1,926 de-identified .nii.gz) - wall time,
  files/s;
* restart: the same import again (every output exists, so only the index runs).

Usage::

    .venv/bin/python benchmarks/bench_import.py [--patients 321] [--size 64] [--workers 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

MAP = """
[patients]
id = "sequential"
table = "{table}"
cohort = "2015"
""" + "".join(f'[sequences.{s}]\nseries = "^{s}$"\n' for s in ("T1", "T1A", "T1V", "T1D", "T2", "DWI"))


def build(root: Path, patients: int, size: int, seed: int = 0) -> Path:
    """The flat export (hard links into the phantom's series folders); reused when present."""
    import numpy as np

    from dlmvi.datasets.phantom import make_phantom

    export = root / "export"
    if export.is_dir() and any(export.iterdir()):
        return export
    cohort = make_phantom(root / "phantom", n_patients=patients, seed=seed, size=size, fmt="dicom",
                          progress=False)
    rng = np.random.default_rng(seed)
    export.mkdir(parents=True, exist_ok=True)
    for f in sorted((cohort / "images").glob("*/*/*.dcm")):
        os.link(f, export / "".join(f"{b:02x}" for b in rng.integers(0, 256, 8)))
    return export


def run(patients: int = 321, size: int = 64, workers: int = 2, keep: str | None = None) -> dict:
    import pydicom

    from dlmvi.io.dicom_import import ImportMap, plan_import, run_import
    from dlmvi.io.dicom_index import index_paths, walk_files

    tmp = None if keep else tempfile.TemporaryDirectory(prefix="bench_import_")
    root = Path(keep or tmp.name)
    try:
        t0 = time.perf_counter()
        export = build(root, patients, size)
        setup_s = time.perf_counter() - t0
        files = walk_files(export)
        for f in files:
            f.read_bytes()
        n = len(files)
        index_paths(files[:50])  # imports, caches
        c0 = time.process_time()
        for f in files:
            pydicom.dcmread(f, stop_before_pixels=True)
        floor_cpu = time.process_time() - c0
        c0 = time.process_time()
        res = index_paths(files)
        index_cpu = time.process_time() - c0
        assert len(res.files) == n
        w0 = time.perf_counter()
        index_paths(files, workers=workers)
        index_wall = time.perf_counter() - w0

        (root / "secure").mkdir(exist_ok=True)
        table = root / "secure" / "key.csv"
        table.unlink(missing_ok=True)
        (root / "map.toml").write_text(MAP.format(table=table.as_posix()))
        imap = ImportMap.from_toml(root / "map.toml")
        out = root / "cohort"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        w0 = time.perf_counter()
        plan = run_import(plan_import(export, out, imap, workers=workers), out, imap)
        import_wall = time.perf_counter() - w0
        written = sum(o.state == "written" for o in plan.outputs)
        w0 = time.perf_counter()
        plan2 = run_import(plan_import(export, out, imap, workers=workers), out, imap)
        restart_wall = time.perf_counter() - w0
        assert sum(o.state == "exists" for o in plan2.outputs) == written
        return {
            "patients": patients, "size": size, "files": n, "workers": workers, "setup_s": round(setup_s, 1),
            "floor_files_per_cpu_s": round(n / floor_cpu, 1),
            "index_files_per_cpu_s": round(n / index_cpu, 1),
            "index_vs_floor": round(floor_cpu / index_cpu, 3),
            "index_files_per_s_workers": round(n / index_wall, 1),
            "import_s": round(import_wall, 1), "import_files_per_s": round(n / import_wall, 1),
            "volumes_written": written, "restart_s": round(restart_wall, 1),
            "cpu_count": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
        }
    finally:
        if tmp is not None:
            tmp.cleanup()


def add_to(res: dict, rows: list, quick: bool = False) -> None:
    """For benchmarks/run.py: run, store under res["import"] and add the summary rows."""
    r = res["import"] = run(patients=40 if quick else 321)
    rows.append((f"import index / pydicom header floor ({r['files']} files, CPU)", f"{r['index_vs_floor']:.2f}", ">= 0.50"))
    rows.append((f"import of {r['patients']} patients, files/s ({r['workers']} workers)",
                 f"{r['import_files_per_s']:.0f}", ""))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=321)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", help="folder to keep (and reuse) the export in")
    args = ap.parse_args(argv)
    r = run(args.patients, args.size, args.workers, args.keep)
    print(json.dumps(r, indent=2))
    return r


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
