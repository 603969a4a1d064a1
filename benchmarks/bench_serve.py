"""Time per patient of the warm ``dlmvi serve`` against the ``predict-patient`` command.

The fixture of :mod:`bench_patient_latency`: a paper-preset network (320 px input, 6 + 6
bottleneck blocks, 3 sequences: T1, T1V, T1D; random weights, latency does not depend on
them) exported with a nomogram, and one synthetic phantom patient (320 x 320 x 40 voxels per
sequence, NIfTI with masks) zipped as a radiologist would upload it.

* server: the application of ``dlmvi serve`` under uvicorn on loopback (in this process, one
  worker, ``torch.set_num_threads(threads)``), the model loaded once. After one warm-up
  request, the median over ``repeats`` of ``POST /api/predict`` (multipart upload of the zip
  and AFP -> result.json: extraction, checks, crops, 9 encoder passes, 27 combinations,
  nomogram) measured by the client, with the part spent in ``predict_patient`` (its
  ``seconds``: total, and up to the study's first-slice probability); and of the page's path (``POST /api/uploads`` then
  ``POST /api/uploads/{id}/predict``, which adds the card with a Grad-CAM per sequence).
* CLI: ``python -m dlmvi.cli predict-patient MODEL ARCHIVE.zip --afp 35 --threads N`` (no
  ``--out``: no card, the work of ``/api/predict``) as a new process each time (imports, model
  loading, extraction, prediction), median of ``cli_repeats``: what the server saves per patient.

Usage::

    .venv/bin/python benchmarks/bench_serve.py [--threads 2] [--repeats 5] [--cli-repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def _zip_patient(patient_dir: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as z:
        for s in ("T1", "T1V", "T1D"):
            for name in (f"{s}.nii.gz", f"{s}_roi.nii.gz"):
                z.write(patient_dir / name, f"case/{name}")
    return dest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(threads: int = 2, repeats: int = 5, cli_repeats: int = 3, image_size: int = 320) -> dict:
    """Build the fixture, time the warm server and the CLI; returns the figures (seconds)."""
    import httpx2 as httpx
    import torch
    import uvicorn

    import bench_patient_latency
    from dlmvi.deploy.model import load_model
    from dlmvi.deploy.server import ServeConfig, create_app, log_config
    from dlmvi.report.card import render_card

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="dlmvi_bench_serve_") as tmp:
        root = Path(tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model_dir, patient_dir = bench_patient_latency.build_fixture(root, image_size=image_size)
        archive = _zip_patient(patient_dir, root / "case.zip")
        data = archive.read_bytes()

        t0 = time.perf_counter()
        em = load_model(model_dir)
        load_s = time.perf_counter() - t0
        port = _free_port()
        app = create_app(em, ServeConfig(port=port, work_dir=root / "work"), render_card=render_card)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=log_config("WARNING"),
                                               access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        while not server.started:
            time.sleep(0.05)

        def api():
            r = httpx.post(url + "/api/predict", files={"archive": ("upload", data)}, data={"afp": "35"}, timeout=600)
            r.raise_for_status()
            return r.json()

        def page():
            up = httpx.post(url + "/api/uploads", files={"archive": ("upload", data)}, timeout=600)
            up.raise_for_status()
            r = httpx.post(url + f"/api/uploads/{up.json()['upload_id']}/predict", json={"afp": 35.0}, timeout=600)
            r.raise_for_status()
            return r.json()["result"]

        def timed(fn, n):
            fn()  # warm-up
            out, cpu, inner = [], [], []
            for _ in range(n):
                t, c = time.perf_counter(), time.process_time()
                res = fn()
                out.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
                inner.append(res["seconds"])
            return out, cpu, inner

        api_s, api_cpu, api_inner = timed(api, repeats)
        page_s, _, _ = timed(page, max(1, repeats // 2))
        prob_server = api()["probability"]
        server.should_exit = True
        thread.join(timeout=30)

        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        cli_s, printed = [], ""
        for _ in range(cli_repeats):  # no --out: the same work as /api/predict (no card)
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "dlmvi.cli", "predict-patient", str(model_dir), str(archive),
                                   "--afp", "35", "--threads", str(threads)],
                                  capture_output=True, text=True, env=env, check=True)
            cli_s.append(time.perf_counter() - t)
            printed = done.stdout

    med = statistics.median
    return {
        "benchmark": "dlmvi serve (warm) vs predict-patient (new process), one patient, paper preset",
        "threads": threads,
        "repeats": repeats,
        "cli_repeats": cli_repeats,
        "input_px": em.network.input_size,
        "sequences": list(em.sequences),
        "image_matrix": f"{image_size}x{image_size}x40 voxels per sequence (phantom NIfTI + masks, zipped)",
        "upload_bytes": len(data),
        "server_model_load_s (once)": round(load_s, 3),
        "median_server_api_s": round(med(api_s), 4),
        "median_server_api_cpu_s": round(med(api_cpu), 4),
        # inside the server: predict_patient from the extracted files (the rest is HTTP, upload, extraction)
        "median_server_predict_patient_s": round(med(x["total"] for x in api_inner), 4),
        "median_server_to_probability_s": round(med(x["to_probability"] for x in api_inner), 4),
        "min_server_api_s": round(min(api_s), 4),
        "max_server_api_s": round(max(api_s), 4),
        "median_server_page_with_card_s": round(med(page_s), 4),
        "median_cli_s": round(med(cli_s), 4),
        "cli_runs_s": [round(v, 3) for v in cli_s],
        "speedup_server_vs_cli": round(med(cli_s) / med(api_s), 1),
        "same_probability_3dp": f"DL-MVI probability    {prob_server:.3f}" in printed,
        "target_s": 1.0,
        "meets_target": bool(med(api_s) <= 1.0),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cli-repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=320, help="in-plane matrix of the phantom images (px)")
    args = ap.parse_args(argv)
    res = run(threads=args.threads, repeats=args.repeats, cli_repeats=args.cli_repeats, image_size=args.size)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
