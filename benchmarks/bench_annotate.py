"""Benchmarks of ``dlmvi annotate`` (issue 29): the worklist page of a 321-patient phantom
cohort, warm (target < 2 s), and carrying one box across six sequences (target < 100 ms).

The server is the real application under uvicorn on loopback (a thread of this process); the
page's load is the page, its script and style sheets and ``GET /api/worklist``, as the browser
fetches them. Carrying: the six sequences of one phantom patient, five of them on other grids
(spacing, rotation, axis order), as :func:`dlmvi.preprocess.carry.carry_to_all` and as the
page's ``POST .../carry`` (checks, carrying and the proposals file written atomically).
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _server(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def _browser_page(url: str, patients: int, repeats: int) -> list[float] | None:
    """Seconds from navigating headless Chromium to the page until the worklist shows every
    patient (warm: after one load); None without chromium and chromium-driver."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        def load():
            t = time.perf_counter()
            driver.get(url + "/")
            WebDriverWait(driver, 60).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, "#worklist tbody tr")) == patients)
            return time.perf_counter() - t

        load()
        return [load() for _ in range(repeats)]
    finally:
        driver.quit()


def _grids(img):
    """Six grids of one patient: the file's own and five others of the same patient coordinates."""
    from dlmvi.preprocess.carry import Grid

    g0 = Grid.from_image(img)
    out = {"T1": g0}
    rng = np.random.default_rng(0)
    for seq in ("T1A", "T1V", "T1D", "T2", "DWI"):
        a = rng.uniform(-0.5, 0.5, 3)
        rz = np.array([[np.cos(a[0]), -np.sin(a[0]), 0], [np.sin(a[0]), np.cos(a[0]), 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, np.cos(a[1]), -np.sin(a[1])], [0, np.sin(a[1]), np.cos(a[1])]])
        d = rz @ rx @ np.reshape(g0.direction, (3, 3))
        spacing = rng.uniform(1.5, 6.0, 3)
        centre = g0.to_physical([(np.asarray(g0.size) - 1) / 2])[0]  # rotated about the volume's centre
        origin = centre - (d * spacing[None, :]) @ ((np.asarray(g0.size) - 1) / 2)
        out[seq] = Grid(g0.size, tuple(spacing), tuple(origin), tuple(d.ravel()))
    return out


def run(patients: int = 321, repeats: int = 5) -> dict:
    import httpx2 as httpx

    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.deploy.annotate import Annotator
    from dlmvi.deploy.web.annotate_app import create_annotate_app
    from dlmvi.io.images import read_volume
    from dlmvi.preprocess.carry import carry_to_all

    with tempfile.TemporaryDirectory() as tmp:
        root = make_phantom(Path(tmp) / "cohort", n_patients=patients, size=64, progress=False)
        for mask in (root / "images").glob("*/*_roi.nii.gz"):
            mask.unlink()
        t0 = time.perf_counter()
        annotator = Annotator(root, "A")
        build_s = time.perf_counter() - t0
        server, url = _server(create_annotate_app(annotator))
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                def page():
                    t = time.perf_counter()
                    for path in ("/", "/static/annotate.js", "/static/app.css", "/static/annotate.css"):
                        client.get(path).raise_for_status()
                    n = len(client.get("/api/worklist").json()["patients"])
                    assert n == patients
                    return time.perf_counter() - t

                page()  # warm-up
                page_s = [page() for _ in range(repeats)]
                browser_s = _browser_page(url, patients, repeats)
                pid = annotator.order[0]
                view = client.get(f"/api/patients/{pid}").json()
                rows = [[z, 20, 20, 40, 40] for z in (10, 11, 12)]

                def carry_api():
                    t = time.perf_counter()
                    client.post(f"/api/patients/{pid}/sequences/T1/carry",
                                json={"boxes": rows, "fingerprint": view["fingerprint"]}).raise_for_status()
                    return time.perf_counter() - t

                carry_api()
                api_s = [carry_api() for _ in range(repeats)]
        finally:
            server.should_exit = True
        grids = _grids(read_volume(root / "images" / pid / "T1.nii.gz", reorient=False))

        def carry_pure():
            t = time.perf_counter()
            carried, refused = carry_to_all(rows, "T1", grids)
            assert len(carried) == 5 and not refused, refused
            return time.perf_counter() - t

        carry_pure()
        pure_s = [carry_pure() for _ in range(max(repeats, 20))]
    return {"patients": patients, "worklist_build_s": build_s, "page_warm_median_s": statistics.median(page_s),
            "browser_page_warm_median_s": None if browser_s is None else statistics.median(browser_s),
            "carry_six_sequences_median_ms": 1000 * statistics.median(pure_s),
            "carry_api_six_sequences_median_ms": 1000 * statistics.median(api_s),
            "targets": {"page_warm_s": 2.0, "carry_ms": 100.0}}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
