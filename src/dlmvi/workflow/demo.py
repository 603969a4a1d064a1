"""``dlmvi demo``: the synthetic phantom and the whole study on it."""

from __future__ import annotations

import time
from pathlib import Path

from dlmvi.workflow.config import StudyConfig
from dlmvi.workflow.study import Study


def run_demo(out: Path, patients: int = 321, seed: int = 0, ablate: bool = False, folds: int = 5,
             epochs: int | None = None, bootstrap: int | None = None, log=print) -> dict:
    """Generate the synthetic phantom under ``out/cohort`` (if absent) and run the study.

    ``folds``, ``epochs`` and ``bootstrap`` are :meth:`StudyConfig.from_options`'s (smaller
    values make a quicker, rougher demo).
    """
    from dlmvi.datasets.phantom import make_phantom

    out = Path(out)
    cohort = out / "cohort"
    if not (cohort / "clinical.csv").is_file():
        log(f"[phantom] writing the synthetic cohort ({patients} patients) to {cohort} ...")
        t0 = time.perf_counter()
        make_phantom(cohort, n_patients=patients, seed=seed)
        log(f"[phantom] done in {time.perf_counter() - t0:.1f} s")
    cfg = StudyConfig.from_options(cohort, preset="fast", develop_cohort="2015", seed=seed, ablate=ablate,
                                   folds=folds, epochs=epochs, bootstrap=bootstrap)
    return Study(cfg, out, log=log).run()
