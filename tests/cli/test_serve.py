"""Tests of src/dlmvi/cli/serve.py: the real ``dlmvi serve`` (uvicorn on loopback) driven by a
headless Chromium through Selenium, and by 20 concurrent API clients.

The server runs as a subprocess (``python -m dlmvi.cli serve``) on the session's exported phantom
model (``patient_model``, tests/conftest.py); its log is checked for patient ids and file names
at the end. Browser tests are skipped when Debian's chromium and chromium-driver are missing
(.ci/run installs them).
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from browser import chrome, draw_boxes  # tests/browser.py

SEQS = ("T1", "T1V", "T1D")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path):
    """Start ``dlmvi serve`` with ``args``; returns (process, base url, stdout text) once it answers."""
    import httpx2 as httpx

    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    out = log.with_suffix(".out")
    proc = subprocess.Popen([sys.executable, "-m", "dlmvi.cli", "serve", *args, "--port", str(port)],
                            stdout=open(out, "w"), stderr=open(log, "w"), env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dlmvi serve exited with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return proc, url, out.read_text()
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"dlmvi serve did not start: {log.read_text()}")


def _stop(proc) -> None:
    proc.send_signal(2)  # SIGINT: uvicorn shuts down gracefully (lifespan: uploads folder removed)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def served(patient_model, tmp_path_factory):
    """A running ``dlmvi serve`` on loopback: 2 workers, 1 MB upload limit, its own temp folder."""
    _, model_dir, cohort = patient_model
    root = tmp_path_factory.mktemp("serve")
    log = root / "server.log"
    proc, url, printed = _start([str(model_dir), "--workers", "2", "--threads", "1", "--site", "Test site",
                                 "--max-upload-mb", "1"], log)
    yield {"url": url, "log": log, "printed": printed, "model_dir": model_dir, "cohort": cohort, "root": root}
    _stop(proc)


@pytest.fixture(scope="module")
def browser():
    yield from chrome("1300,1100")


def _pid(cohort: Path, i: int) -> str:
    return sorted(p.name for p in (cohort / "images").iterdir())[i]


def _zip_to(path: Path, folder: Path, masks: bool = True, arc_folder: str = "case") -> Path:
    names = [f"{s}.nii.gz" for s in SEQS] + ([f"{s}_roi.nii.gz" for s in SEQS] if masks else [])
    with zipfile.ZipFile(path, "w") as z:
        for n in names:
            z.write(folder / n, f"{arc_folder}/{n}")
    return path


def _open_page(driver, url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    WebDriverWait(driver, 30).until(lambda d: "model:" in d.find_element(By.ID, "model-line").text)


def _submit(driver, archive: Path, afp: str):
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "archive").send_keys(str(archive))
    driver.find_element(By.ID, "afp").send_keys(afp)
    driver.find_element(By.ID, "submit").click()


def _wait_result(driver) -> float:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):  # the full result: the first answer comes before the spread and the card
        return d.find_element(By.ID, "spread").get_attribute("data-state") == "done" or d.find_element(By.ID, "error").text

    WebDriverWait(driver, 120).until(ready)
    assert driver.find_element(By.ID, "error").text == ""
    return float(driver.find_element(By.ID, "probability").get_attribute("data-probability"))


def _blob_text(driver, link_id: str) -> str:
    from selenium.webdriver.common.by import By

    href = driver.find_element(By.ID, link_id).get_attribute("href")
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; fetch(arguments[0]).then(r => r.text()).then(done);", href)


# ---------------------------------------------------------------------------------------
# the page, in headless Chromium
# ---------------------------------------------------------------------------------------
def test_the_page_shows_the_probability_of_predict_patient(served, browser, tmp_path, capsys):
    from selenium.webdriver.common.by import By

    from dlmvi.cli import run_cli

    cohort = served["cohort"]
    archive = _zip_to(tmp_path / "case.zip", cohort / "images" / _pid(cohort, 0))
    assert run_cli(["predict-patient", str(served["model_dir"]), str(archive), "--afp", "35",
                    "--out", str(tmp_path / "cli")]) == 0
    capsys.readouterr()
    cli = json.loads((tmp_path / "cli" / "result.json").read_text())
    _open_page(browser, served["url"])
    assert "SYNTHETIC" in browser.find_element(By.ID, "synthetic-banner").text
    assert browser.find_element(By.ID, "site").text == "Test site \u00b7"
    _submit(browser, archive, "35")
    p = _wait_result(browser)
    assert p == pytest.approx(cli["probability"], abs=1e-6)
    assert browser.find_element(By.ID, "probability").text == f"{cli['probability']:.3f}"
    n = cli["nomogram"]
    assert browser.find_element(By.ID, "nomogram").text.startswith(
        f"{100 * n['risk']:.1f} % (95 % CI {100 * n['ci_low']:.1f} % to {100 * n['ci_high']:.1f} %")
    assert browser.find_element(By.ID, "decision").text == cli["decision"]
    assert browser.find_element(By.ID, "spread").text.startswith("27 combinations: min ")
    # the answer came first (POST .../predict/first), the spread and the card after it
    section = browser.find_element(By.ID, "result-section")
    assert float(browser.find_element(By.ID, "probability").get_attribute("data-first")) == pytest.approx(p, abs=1e-6)
    assert 0 < int(section.get_attribute("data-first-ms")) <= int(section.get_attribute("data-full-ms"))
    assert browser.find_element(By.ID, "result-backend").text == "torch (float32)"
    downloaded = json.loads(_blob_text(browser, "dl-result"))
    assert downloaded["probability"] == pytest.approx(cli["probability"], abs=1e-6)
    assert set(downloaded) == set(cli)
    card = _blob_text(browser, "dl-card")
    assert card.count('<img src="data:image/png;base64,') == 3  # crop + Grad-CAM per sequence
    assert browser.find_element(By.ID, "card").is_displayed()
    assert browser.find_element(By.ID, "dl-rois").get_attribute("hidden") is not None  # masks: no boxes drawn


def test_the_user_draws_the_boxes_on_a_patient_without_masks(served, browser, tmp_path, capsys):
    """Boxes drawn tightly around the (withheld) tumour mask on its key slices give the mask's
    prediction; the page's rois.csv reproduces it with predict-patient --rois."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from dlmvi.cli import run_cli
    from dlmvi.cohort.patient import Patient, SequenceSource
    from dlmvi.deploy.patient import predict_patient

    cohort, model_dir = served["cohort"], served["model_dir"]
    pid = _pid(cohort, 3)
    folder = cohort / "images" / pid
    ref = predict_patient(model_dir, folder, 35.0)
    boxes = {}
    for seq in SEQS:
        mask = Patient(pid, "", "", sources={seq: SequenceSource(seq, folder / f"{seq}.nii.gz",
                                                                 folder / f"{seq}_roi.nii.gz")}).load(seq).mask
        boxes[seq] = []
        for z in ref.key_slices[seq]:
            ys, xs = np.nonzero(mask[z])
            boxes[seq].append((z, int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))
    archive = _zip_to(tmp_path / "nomask.zip", folder, masks=False)
    _open_page(browser, served["url"])
    _submit(browser, archive, "35")
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "viewer-section").is_displayed()
                                     or d.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text == ""
    assert browser.find_element(By.ID, "needs-boxes").text == "T1, T1V, T1D"
    assert browser.find_element(By.ID, "predict-boxes").get_attribute("disabled") is not None
    draw_boxes(browser, boxes)
    table = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
             for tr in browser.find_elements(By.CSS_SELECTOR, "#boxes-table tbody tr")]
    assert table == [[seq, *map(str, row)] for seq in SEQS for row in boxes[seq]]
    assert browser.find_element(By.ID, "boxes-status").text == "Ready: every sequence has its boxes."
    browser.find_element(By.ID, "predict-boxes").click()
    p = _wait_result(browser)
    assert p == pytest.approx(ref.probability, abs=1e-6)
    rois = _blob_text(browser, "dl-rois")
    assert rois.splitlines()[1] == "case,T1," + ",".join(map(str, boxes["T1"][0]))
    (tmp_path / "rois.csv").write_text(rois)
    assert browser.find_element(By.ID, "reproduce").text == (
        "To reproduce: dlmvi predict-patient MODEL_DIR PATIENT_ARCHIVE --afp 35 --id case --rois rois.csv")
    assert run_cli(["predict-patient", str(model_dir), str(archive), "--afp", "35", "--id", "case",
                    "--rois", str(tmp_path / "rois.csv"), "--out", str(tmp_path / "again")]) == 0
    capsys.readouterr()
    again = json.loads((tmp_path / "again" / "result.json").read_text())
    assert again["probability"] == pytest.approx(p, abs=1e-6)


def test_the_page_explains_a_bad_upload(served, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "scan.zip"
    bad.write_text("not an archive")
    _open_page(browser, served["url"])
    _submit(browser, bad, "12")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text == (
        "the uploaded archive: not a zip or tar archive; send the images as .zip, .tar or .tar.gz")
    big = tmp_path / "big.zip"
    big.write_bytes(b"\0" * (2 * 1024**2))
    _open_page(browser, served["url"])
    _submit(browser, big, "12")
    WebDriverWait(browser, 30).until(lambda d: "larger than this server's limit" in d.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text.startswith(
        "The upload (2.0 MB) is larger than this server's limit of 1 MB;")


# ---------------------------------------------------------------------------------------
# the API on the real server
# ---------------------------------------------------------------------------------------
def test_twenty_concurrent_requests_all_succeed_unmixed(served, tmp_path):
    """20 requests at once on 2 workers: they queue, all succeed, each gets its own patient's result."""
    import httpx2 as httpx

    from dlmvi.deploy.model import load_model
    from dlmvi.deploy.patient import predict_patient

    cohort = served["cohort"]
    em = load_model(served["model_dir"])
    pids = [_pid(cohort, i) for i in range(10)]
    expected = {pid: predict_patient(None, cohort / "images" / pid, 35.0, model=em) for pid in pids}
    assert len({round(r.probability, 6) for r in expected.values()}) == 10  # distinguishable patients
    archives = {pid: _zip_to(tmp_path / f"{pid}.zip", cohort / "images" / pid).read_bytes() for pid in pids}

    def one(i):
        pid, afp = pids[i % 10], (5.0 if i < 10 else 35.0)
        r = httpx.post(served["url"] + "/api/predict", files={"archive": ("upload", archives[pid])},
                       data={"afp": str(afp), "patient_id": f"req-{i:02d}"}, timeout=300)
        return i, pid, afp, r.status_code, r.json()

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert [status for *_, status, _ in results] == [200] * 20
    for i, pid, afp, _, res in results:
        assert res["patient_id"] == f"req-{i:02d}" and res["afp_ng_ml"] == afp
        assert res["probability"] == pytest.approx(expected[pid].probability, abs=1e-6)
        assert res["key_slices"] == expected[pid].key_slices
        assert res["nomogram"]["inputs"]["afp > 20"] == float(afp > 20)


def test_oversized_and_traversal_uploads_are_refused_on_the_socket(served, tmp_path):
    import httpx2 as httpx

    url = served["url"] + "/api/predict"
    r = httpx.post(url, files={"archive": ("upload", os.urandom(2 * 1024**2))}, data={"afp": "1"}, timeout=60)
    assert r.status_code == 413
    assert r.json()["detail"].startswith("the upload (2.0 MB) is larger than this server's limit of 1.0 MB;")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../../tmp/escape-i18.txt", b"owned")
    r = httpx.post(url, files={"archive": ("upload", buf.getvalue())}, data={"afp": "1"}, timeout=60)
    assert r.status_code == 400 and "'..' component" in r.json()["detail"]
    assert not Path("/tmp/escape-i18.txt").exists()
    for path in ("/api/model", "/docs", "/openapi.json"):
        assert httpx.get(served["url"] + path, timeout=30).status_code == 200  # loopback: no token needed


def test_the_log_names_no_patient_and_no_file(served):
    """Runs after the others in this module: everything they sent went through this server."""
    text = served["log"].read_text()
    assert "POST /api/predict 200" in text and "POST /api/uploads/{upload_id}/predict/first 200" in text
    assert "GET /api/followups/{followup_id} 200" in text  # the page: the answer first, then the rest
    assert "GET /api/uploads/{upload_id}/volumes/{sequence} 200" in text
    for secret in ["req-0", "case", ".nii", ".zip", "escape", *(_pid(served["cohort"], i) for i in range(10))]:
        assert secret not in text, secret
    assert "Traceback" not in text
    assert served["printed"].splitlines()[1] == f"  open {served['url']}/"


# ---------------------------------------------------------------------------------------
# the command's options
# ---------------------------------------------------------------------------------------
def test_beyond_loopback_a_token_is_generated_and_required(patient_model, monkeypatch, capsys):
    """``--host 0.0.0.0`` without --token: the command prints a new token and the API requires it
    (uvicorn.run is replaced by a capture, so nothing listens on the network here)."""
    import uvicorn
    from fastapi.testclient import TestClient

    from dlmvi.cli import run_cli

    import dlmvi.deploy.server

    _, model_dir, _ = patient_model
    started, quieted = {}, []
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: started.update(app=application, **kw))
    # the real one changes this process's warning filters (tested with the served subprocess)
    monkeypatch.setattr(dlmvi.deploy.server, "quiet_warnings", lambda: quieted.append(True))
    assert run_cli(["serve", str(model_dir), "--host", "0.0.0.0", "--port", "9999"]) == 0
    out, err = capsys.readouterr()
    token = out.split("#token=")[1].split()[0]
    assert len(token) == 32 and f"  open http://127.0.0.1:9999/#token={token}" in out
    assert f"access token (generated; give it to the API as 'Authorization: Bearer TOKEN'): {token}" in out
    assert "listening on 0.0.0.0: other machines can connect; they need the token" in err
    assert (started["host"], started["port"], started["access_log"]) == ("0.0.0.0", 9999, False) and quieted
    assert started["log_config"]["loggers"]["uvicorn.access"]["level"] == "CRITICAL"
    with TestClient(started["app"]) as client:
        assert client.get("/api/model").status_code == 401
        ok = client.get("/api/model", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["sequences"] == list(SEQS)
    assert run_cli(["serve", str(model_dir)]) == 0  # loopback: no token
    out, _ = capsys.readouterr()
    assert "#token=" not in out and started["host"] == "127.0.0.1" and started["port"] == 8765


def test_serve_refuses_a_folder_without_a_model(tmp_path, capsys):
    from dlmvi.cli import run_cli

    assert run_cli(["serve", str(tmp_path)]) == 2
    assert f"{tmp_path}: no model.json; this is not an exported dlmvi model" in capsys.readouterr().err
    assert run_cli(["serve", str(tmp_path), "--token", "short"]) == 2
    assert "--token: use at least 16 characters" in capsys.readouterr().err
