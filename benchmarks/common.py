"""Shared helpers of the benchmarks: timing and peak memory of a child process."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time


def timeit(fn, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_child(code: str, env: dict | None = None) -> tuple[float, int, str]:
    """Run ``python -c code``; return (wall seconds, largest peak RSS in MiB of any child so
    far, stdout). Children that must be measured alone print their own RUSAGE_SELF."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, check=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: run the small case first.
    return wall, max(peak, before) // 1024, out.stdout


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.json")


def merge_results(entries: dict, path: str = RESULTS) -> str:
    """Write ``entries`` into results.json, keeping the entries of other benchmark scripts
    (``make bench``, the device check, the preset curves each own their keys)."""
    import json

    from dlmvi.io.atomic import write_text

    old = {}
    if os.path.isfile(path):
        try:
            with open(path) as fh:
                old = json.load(fh)
        except (OSError, ValueError):
            old = {}
    old.update(entries)
    write_text(path, json.dumps(old, indent=2, default=float))
    return path
