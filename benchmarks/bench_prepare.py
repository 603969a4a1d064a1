"""Preparation speed against the floor of merely reading the volumes, and memory vs cohort size."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common import run_child


def speed(n_patients: int = 40) -> dict:
    import nibabel as nib
    import numpy as np

    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.preprocess.cache import PrepareConfig
    from dlmvi.preprocess.prepare import prepare_cohort

    seqs = ("T1", "T1V", "T1D")
    with tempfile.TemporaryDirectory() as tmp:
        cohort = make_phantom(Path(tmp) / "c", n_patients=n_patients, seed=0, size=128, progress=False)
        files = [f for pid in sorted((cohort / "images").iterdir()) for s in seqs
                 for f in (pid / f"{s}.nii.gz", pid / f"{s}_roi.nii.gz")]
        t0 = time.perf_counter()
        for f in files:
            np.asarray(nib.load(f).dataobj)
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepare_cohort(cohort, Path(tmp) / "cache", PrepareConfig(sequences=seqs, size=64), progress=False)
        t_prep = time.perf_counter() - t0
    return {"patients": n_patients, "read_floor_patients_per_s": n_patients / t_read,
            "prepare_patients_per_s": n_patients / t_prep, "ratio": t_read / t_prep, "target": 0.7}


# The child reports its own peak RSS (VmHWM of /proc/self/status, which execve resets):
# RUSAGE_CHILDREN would also count the phantom generator's workers, and ru_maxrss keeps the
# forking parent's high-water mark across exec.
CHILD = """
from pathlib import Path
from dlmvi.preprocess.cache import PrepareConfig
from dlmvi.preprocess.prepare import prepare_cohort
prepare_cohort(Path({cohort!r}), Path({cache!r}),
               PrepareConfig(sequences=("T1", "T1V", "T1D"), size=64), progress=False)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(int(hwm) // 1024)
"""


def memory(small: int = 100, large: int = 400) -> dict:
    from dlmvi.datasets.phantom import make_phantom

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (small, large):  # small first: RUSAGE_CHILDREN keeps the maximum
            cohort = make_phantom(Path(tmp) / f"c{n}", n_patients=n, seed=0, size=128, progress=False)
            wall, _, stdout = run_child(CHILD.format(cohort=str(cohort), cache=str(Path(tmp) / f"cache{n}")))
            out[n] = {"seconds": wall, "peak_rss_mib": int(stdout.strip().splitlines()[-1])}
    return {"patients": [small, large], "peak_rss_mib": [out[small]["peak_rss_mib"], out[large]["peak_rss_mib"]],
            "seconds": [out[small]["seconds"], out[large]["seconds"]],
            "ratio": out[large]["peak_rss_mib"] / out[small]["peak_rss_mib"], "target": 1.2}
