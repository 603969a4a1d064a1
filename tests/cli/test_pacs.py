"""Tests of src/dlmvi/cli/pacs.py (``dlmvi pacs find``, ``predict-patient --pacs``, ``dlmvi listen``)
against a real Orthanc (tests/orthanc.py; one per module), on phantom studies stored as DICOM.

What the README's "PACS" section runs: find (DICOMweb and DIMSE), retrieve + predict + store
the SR, read the SR back from Orthanc and compare it with ``predict-patient`` on the same
files; the DICOM node receiving from DCMTK's ``storescu`` and from Orthanc itself (REST
``/modalities/DLMVI/store``), a study still arriving, a study without ROI (then its RTSTRUCT),
a study that does not map, an unknown AE title, a restart. Skipped where Orthanc is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import orthanc as ot  # tests/orthanc.py
from browser import chrome, draw_boxes  # tests/browser.py

pytestmark = pytest.mark.skipif(ot.skip_reason() is not None, reason=ot.skip_reason() or "")
STORESCU = shutil.which("storescu")
AFP = "35"


def dlmvi(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlmvi.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, patient_model):
    """Orthanc with study 0 (+ its SEG, accession ACC001) and study 1 (no ROI, ACC002); configs."""
    import SimpleITK as sitk

    from dlmvi.datasets.phantom import make_phantom

    root = tmp_path_factory.mktemp("pacs")
    cohort = make_phantom(root / "dcm", n_patients=3, size=64, n_slices=16, seed=5, progress=False, workers=1,
                          fmt="dicom")
    studies = [ot.phantom_study(cohort, i, root / f"study{i}", f"ACC00{i + 1}") for i in range(3)]
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(studies[0] / "T1V_roi.nii.gz")))
    seg = ot.write_seg(mask, studies[0] / "T1V", root / "seg0.dcm")
    mask1 = sitk.GetArrayFromImage(sitk.ReadImage(str(studies[1] / "T1V_roi.nii.gz")))
    rt1 = ot.write_rtstruct(mask1, studies[1] / "T1V", root / "rt1.dcm")
    listen_port = ot.free_port()
    server = ot.start_orthanc(root / "orthanc", {"DLMVI": ("DLMVI", listen_port)})
    server.upload(ot.study_files(studies[0]) + [seg] + ot.study_files(studies[1]))
    (root / "map.toml").write_text(ot.MAP_TOML)
    cfg = root / "pacs.toml"
    ot.pacs_config(cfg, "hospital", server, root / "map.toml")
    ot.pacs_config(cfg, "dimse", server, root / "map.toml", dimse=True)
    ot.pacs_config(cfg, "badpw", server, root / "map.toml", password="wrong")
    (root / "t1only.toml").write_text(ot.MAP_TOML.replace('"^T1D$"', '"^T1-delayed$"'))
    ot.pacs_config(cfg, "unmapped", server, root / "t1only.toml")
    (root / "afp.csv").write_text(f"accession,afp\nACC001,{AFP}\n")
    down = ot.free_port()
    cfg.write_text(cfg.read_text() + f'[pacs.down]\ndicomweb = "http://127.0.0.1:{down}/dicom-web"\n'
                   f'map = "{root / "map.toml"}"\ntimeout = 5\n')
    _, model_dir, _ = patient_model
    yield {"root": root, "server": server, "cfg": cfg, "studies": studies, "seg": seg, "rt1": rt1,
           "model": model_dir, "listen_port": listen_port,
           "afp_table": root / "afp.csv"}
    server.stop()


def _srs(pacs, accession):
    """The dlmvi SRs of a study on Orthanc (read back with DICOMweb), oldest first."""
    from dlmvi.deploy.dicom_sr import read_sr
    from dlmvi.io.pacs import connect, read_pacs_config

    client = connect(read_pacs_config(pacs["cfg"], "hospital"))
    (st,) = client.find_studies(accession=accession)
    out = []
    for se in st.series:
        if se.modality == "SR":
            for ds in client.client.retrieve_series(st.study_uid, se.series_uid):
                out.append((str(ds.ContentDate) + str(ds.ContentTime), read_sr(ds), ds))
    return [(sr, ds) for _, sr, ds in sorted(out, key=lambda t: t[0])]


def test_find_lists_studies_and_series_deidentified(pacs):
    res = dlmvi("pacs", "find", "--pacs", "hospital", "--pacs-config", pacs["cfg"])
    assert res.returncode == 0, res.stderr
    assert "2 studies" in res.stdout and "de-identified" in res.stdout
    assert res.stdout.count("-> T1V") == 2 and "-> tumour ROI" in res.stdout
    assert "ACC001" not in res.stdout and "P000" not in res.stdout and "SYNTHETIC^" not in res.stdout
    ident = dlmvi("pacs", "find", "--pacs", "dimse", "--accession", "ACC001", "--identified",
                  "--pacs-config", pacs["cfg"])
    assert ident.returncode == 0, ident.stderr
    assert "1 study" in ident.stdout and "accession ACC001" in ident.stdout and "-> T1D" in ident.stdout


@pytest.mark.parametrize("name", ["hospital", "dimse"])
def test_find_by_study_date_and_range(pacs, name):
    """The phantom dates each study a week before surgery: its own date finds it, a range from the
    earliest to the latest finds both, a range before them none - over DICOMweb (QIDO-RS) and DIMSE
    (C-FIND) alike; a malformed date is one message."""
    import re

    args = ("pacs", "find", "--pacs", name, "--pacs-config", pacs["cfg"], "--date")
    listed = dlmvi("pacs", "find", "--pacs", name, "--pacs-config", pacs["cfg"])
    dates = sorted(re.findall(r"date (\d{8})", listed.stdout))
    assert len(dates) == 2, listed.stdout
    first = int(dates[0][:4])
    for date, want in ((dates[0], "1 study" if dates[0] != dates[1] else "2 studies"),
                       (f"{dates[0]}-{dates[1]}", "2 studies"), (f"{first - 2}0101-{first - 1}1231", "0 studies")):
        res = dlmvi(*args, date)
        assert res.returncode == 0, res.stderr
        assert f": {want}" in res.stdout, (date, res.stdout)
    bad = dlmvi(*args, "2000-01-01")
    assert bad.returncode == 2 and "--date '2000-01-01': write YYYYMMDD" in bad.stderr and "Traceback" not in bad.stderr


@pytest.fixture(scope="module")
def predicted(pacs):
    """`predict-patient --pacs hospital --accession ACC001 --store` and, on the same files,
    `predict-patient STUDY_DIR` (DICOM series folders + NIfTI masks)."""
    root = pacs["root"]
    res = dlmvi("predict-patient", pacs["model"], "--pacs", "hospital", "--accession", "ACC001", "--afp", AFP,
                "--out", root / "out_pacs", "--store", "--store-card", "--pacs-config", pacs["cfg"])
    assert res.returncode == 0, res.stderr
    ref = dlmvi("predict-patient", pacs["model"], pacs["studies"][0], "--afp", AFP, "--out", root / "out_ref")
    assert ref.returncode == 0, ref.stderr
    return {"stdout": res.stdout, "result": json.loads((root / "out_pacs" / "result.json").read_text()),
            "ref": json.loads((root / "out_ref" / "result.json").read_text())}


def _same_values(sr: dict, ref: dict) -> None:
    assert sr["state"] == "predicted"
    assert sr["probability"] == pytest.approx(ref["probability"], rel=1e-9)
    assert sr["probability_first_slice"] == pytest.approx(ref["probability_first_slice"], rel=1e-9)
    for k in ("min", "median", "max", "sd", "n"):
        assert sr["spread"][k] == pytest.approx(ref["spread"][k], rel=1e-9, abs=1e-12)
    for k in ("risk", "ci_low", "ci_high"):
        assert sr["nomogram"][k] == pytest.approx(ref["nomogram"][k], rel=1e-9)
    assert sr["decision"] == ref["decision"] and sr["dl_mvi"] == ref["dl_mvi"]


def test_predict_store_and_read_the_sr_back(pacs, predicted):
    ref, mine = predicted["ref"], predicted["result"]
    assert mine["probability"] == ref["probability"] and mine["nomogram"] == ref["nomogram"]
    assert mine["boxes"] == ref["boxes"] and mine["key_slices"] == ref["key_slices"]
    assert "DICOM SR stored into the study" in predicted["stdout"]
    assert "DICOM OT stored into the study" in predicted["stdout"]  # the card as a secondary capture
    srs = _srs(pacs, "ACC001")
    assert len(srs) == 1
    sr, ds = srs[0]
    _same_values(sr, ref)
    assert sr["afp_ng_ml"] == 35.0 and sr["synthetic"] and "not a medical device" in sr["notice"]
    model = json.loads((Path(pacs["model"]) / "model.json").read_text())
    assert sr["model"]["weights_sha256"] == model["weights_sha256"] and sr["site"] == "none"
    assert set(sr["series"]) == {"T1", "T1V", "T1D"}
    assert all(len(s["boxes_mm"]) == 3 and len(s["images"]) == 3 for s in sr["series"].values())
    # the SR is in the patient's own study, keeping its identifiers
    assert ds.AccessionNumber == "ACC001" and ds.PatientID.startswith("P000")
    # the standard's validator and DCMTK read it
    path = pacs["root"] / "sr.dcm"
    ds.save_as(path, enforce_file_format=True)
    val = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    assert not [ln for ln in (val.stdout + val.stderr).splitlines() if ln.startswith("Error")], val.stderr
    from dlmvi.io.pacs import connect, read_pacs_config

    client = connect(read_pacs_config(pacs["cfg"], "hospital"))
    (st,) = client.find_studies(accession="ACC001")
    (card_series,) = [se for se in st.series if se.description == "DL-MVI card (research use)"]
    (card,) = client.client.retrieve_series(st.study_uid, card_series.series_uid)
    assert card.SamplesPerPixel == 3 and card.Rows > 100 and "not a medical device" in card.ImageComments
    card.save_as(pacs["root"] / "card.dcm", enforce_file_format=True)
    val = subprocess.run(["dciodvfy", str(pacs["root"] / "card.dcm")], capture_output=True, text=True)
    assert not [ln for ln in (val.stdout + val.stderr).splitlines() if ln.startswith("Error")], val.stderr
    dump = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True)
    assert dump.returncode == 0 and '"DL-MVI probability")' in dump.stdout and "SCOORD3D" in dump.stdout
    # the local outputs hold no identifier of the study
    text = (pacs["root"] / "out_pacs" / "result.json").read_text()
    assert "ACC001" not in text and "P000" not in text and str(ds.StudyInstanceUID) not in text


@pytest.mark.parametrize("args, expected", [
    (["--pacs", "down", "--accession", "ACC001"], "cannot be reached"),
    (["--pacs", "badpw", "--accession", "ACC001"], "refused the credentials (HTTP 401)"),
    (["--pacs", "hospital", "--study", "1.2.3.4.5"], "study 1.2.3.4.5 not found"),
    (["--pacs", "unmapped", "--accession", "ACC001"], "T1D: no series matches [sequences.T1D]"),
    (["--pacs", "hospital", "--accession", "ACC002"], "has no tumour ROI"),
    (["--pacs", "nowhere", "--accession", "ACC001"], "no [pacs.nowhere] (configured: badpw, dimse, down"),
])
def test_pacs_errors_are_one_message_and_store_nothing(pacs, predicted, args, expected, capsys):
    from dlmvi.cli import run_cli

    code = run_cli(["predict-patient", str(pacs["model"]), *args, "--afp", AFP, "--store", "--pacs-config",
                    str(pacs["cfg"])])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err
    assert ot.PASSWORD not in err and "wrong" not in err.replace("wrong credentials", "")
    assert len(_srs(pacs, "ACC001")) == 1 and not _srs(pacs, "ACC002")  # nothing half-stored


def _storescu(port, files, aet="STORESCU"):
    return subprocess.run([STORESCU, "-R", "-aet", aet, "-aec", "DLMVI", "127.0.0.1", str(port), *map(str, files)],
                          capture_output=True, text=True, timeout=120)


def _wait_state(spool: Path, status: str, n: int = 1, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        docs = [json.loads(p.read_text()) for p in spool.glob("*/state.json")]
        hits = [d for d in docs if d.get("status") == status]
        if len(hits) >= n:
            return hits
        time.sleep(0.3)
    raise AssertionError(f"no {n} stud(ies) {status!r} in {timeout} s: {[p.read_text() for p in spool.glob('*/state.json')]}")


def _key(study: Path) -> str:
    import pydicom

    from dlmvi.deploy.pacs_study import study_pseudonym

    first = next(iter(sorted((study / "T1").glob("*.dcm"))))
    return study_pseudonym(str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID))


def _listen(pacs, spool: Path, log: Path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlmvi.cli", "listen", str(pacs["model"]), "--spool", str(spool), "--port",
         str(pacs["listen_port"]), "--allow-ae", "STORESCU,ORTHANC", "--send-to", "hospital", "--pacs-config",
         str(pacs["cfg"]), "--quiet-seconds", "2", "--threads", "1", "--afp-table", str(pacs["afp_table"])],
        stdout=open(log, "a"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 90
    while "dlmvi listen: AE" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return proc


@pytest.mark.skipif(STORESCU is None, reason="DCMTK's storescu is not installed (Debian package dcmtk)")
def test_listener_round_trips(pacs, predicted):
    spool, log = pacs["root"] / "spool", pacs["root"] / "listen.log"
    log.write_text("")
    proc = _listen(pacs, spool, log)
    try:
        # an unknown calling AE title is refused at association; the node keeps running
        bad = _storescu(pacs["listen_port"], ot.study_files(pacs["studies"][0])[:1], aet="INTRUDER")
        assert bad.returncode != 0 and "Association Rejected" in (bad.stdout + bad.stderr)
        # a study still arriving is not touched: half of study 0 ...
        files0 = ot.study_files(pacs["studies"][0])
        assert _storescu(pacs["listen_port"], files0[:20]).returncode == 0
        (state,) = [json.loads(p.read_text()) for p in spool.glob("*/state.json")]
        assert state["status"] == "receiving"
        # ... then the rest with its SEG, as a modality would send it (DCMTK storescu)
        assert _storescu(pacs["listen_port"], files0[20:] + [pacs["seg"]]).returncode == 0
        _wait_state(spool, "predicted")
        srs = _srs(pacs, "ACC001")
        assert len(srs) == 2  # the one predict-patient --store sent, and the node's
        _same_values(srs[-1][0], predicted["ref"])
        # a study without ROI, sent by Orthanc itself: an SR saying so; then its RTSTRUCT arrives
        (oid,) = pacs["server"].rest("POST", "/tools/find", json={"Level": "Study",
                                                                  "Query": {"AccessionNumber": "ACC002"}})
        pacs["server"].rest("POST", "/modalities/DLMVI/store", json={"Resources": [oid], "Synchronous": True})
        _wait_state(spool, "waiting for ROI")
        (waiting,) = _srs(pacs, "ACC002")
        assert "no tumour ROI" in waiting[0]["state"] and "probability" not in waiting[0]
        assert _storescu(pacs["listen_port"], [pacs["rt1"]]).returncode == 0
        _wait_state(spool, "predicted", n=2)
        last = _srs(pacs, "ACC002")[-1][0]
        assert last["state"] == "predicted" and 0 <= last["probability"] <= 1
        # a study whose series do not map fails alone: study 2 without its T1D
        assert _storescu(pacs["listen_port"], ot.study_files(pacs["studies"][2], ("T1", "T1V"))).returncode == 0
        (failed,) = _wait_state(spool, "failed")
        assert "T1D: no series matches" in failed["message"]
        assert proc.poll() is None
        # a restart resumes a study left receiving: kill the node right after study 2's T1D arrives
        assert _storescu(pacs["listen_port"], ot.study_files(pacs["studies"][2], ("T1D",))).returncode == 0
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert json.loads((spool / _key(pacs["studies"][2]) / "state.json").read_text())["status"] == "receiving"
        proc = _listen(pacs, spool, log)
        _wait_state(spool, "waiting for ROI")  # study 2 is now complete, without a ROI
        assert "resuming 1 pending study: " + _key(pacs["studies"][2]) in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    text = log.read_text()
    assert "ACC00" not in text and "P000" not in text and "Traceback" not in text


@pytest.fixture(scope="module")
def served_pacs(pacs):
    """`dlmvi serve MODEL --pacs hospital` on loopback."""
    import httpx2 as httpx

    port, log = ot.free_port(), pacs["root"] / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "dlmvi.cli", "serve", str(pacs["model"]), "--pacs", "hospital",
                             "--pacs-config", str(pacs["cfg"]), "--port", str(port), "--threads", "1"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.3)
    yield {"url": url, "log": log}
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    yield from chrome("1300,1100")


def test_serve_worklist_draw_the_box_and_send_the_sr(pacs, served_pacs, browser):
    """Point 5: the page lists the PACS's studies; a study without ROI opens in the viewer, the
    boxes are drawn, and the SR sent from the page lands in the study with the page's values."""
    import SimpleITK as sitk
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from dlmvi.deploy.patient import predict_patient

    study = pacs["studies"][1]
    ref_mask = predict_patient(pacs["model"], study, 35.0)
    boxes = {}
    for seq in ("T1", "T1V", "T1D"):
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(study / f"{seq}_roi.nii.gz")))
        boxes[seq] = []
        for z in ref_mask.key_slices[seq]:
            ys, xs = np.nonzero(mask[z])
            boxes[seq].append((z, int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))
    ref = predict_patient(pacs["model"], study, 35.0, boxes=boxes)
    n_before = len(_srs(pacs, "ACC002"))
    browser.get(served_pacs["url"] + "/")
    # studies 0 and 1, and study 2 once the node has stored its SR (a STOW-RS creates the study)
    WebDriverWait(browser, 60).until(lambda d: " studies" in d.find_element(By.ID, "worklist-status").text)
    rows = browser.find_elements(By.CSS_SELECTOR, "#worklist-table tbody tr")
    assert {r.get_attribute("id") for r in rows} >= {f"study-{_key(s)}" for s in pacs["studies"][:2]}
    assert browser.find_element(By.ID, "worklist-pacs").text == "hospital"
    browser.find_element(By.ID, "worklist-afp").send_keys("35")
    browser.find_element(By.ID, f"open-{_key(study)}").click()
    WebDriverWait(browser, 120).until(lambda d: d.find_element(By.ID, "viewer-section").is_displayed()
                                      or d.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text == ""
    assert browser.find_element(By.ID, "needs-boxes").text == "T1, T1V, T1D"
    draw_boxes(browser, boxes)
    browser.find_element(By.ID, "predict-boxes").click()
    WebDriverWait(browser, 120).until(lambda d: d.find_element(By.ID, "result-section").is_displayed()
                                      or d.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text == ""
    p = float(browser.find_element(By.ID, "probability").get_attribute("data-probability"))
    assert p == pytest.approx(ref.probability, abs=1e-6)
    # the page shows the answer first, then the full result with the SR to send
    WebDriverWait(browser, 120).until(lambda d: d.find_element(By.ID, "send-sr").is_displayed()
                                      or d.find_element(By.ID, "error").text)
    p = float(browser.find_element(By.ID, "probability").get_attribute("data-probability"))
    assert p == pytest.approx(ref.probability, abs=1e-6)
    repro = browser.find_element(By.ID, "reproduce").text
    assert repro.startswith("To reproduce: dlmvi predict-patient MODEL_DIR --pacs hospital --study ")
    browser.find_element(By.ID, "send-sr").click()
    WebDriverWait(browser, 60).until(lambda d: "stored in the study" in d.find_element(By.ID, "send-sr-status").text
                                     or d.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text == ""
    srs = _srs(pacs, "ACC002")
    assert len(srs) == n_before + 1
    sr = srs[-1][0]
    assert sr["probability"] == pytest.approx(p, rel=1e-9) and sr["nomogram"]["risk"] == pytest.approx(
        ref.nomogram.risk, rel=1e-9)
    assert "ACC00" not in served_pacs["log"].read_text()
    # the page's command reproduces the page's numbers from the PACS (the boxes as rois.csv)
    rois = browser.execute_script("return fetch(arguments[0].href).then(r => r.text());",
                                  browser.find_element(By.ID, "dl-rois"))
    (pacs["root"] / "rois_page.csv").write_text(rois)
    again = dlmvi("predict-patient", pacs["model"], "--pacs", "hospital", "--study", repro.split("--study ")[1].split()[0],
                  "--afp", "35", "--rois", pacs["root"] / "rois_page.csv", "--out", pacs["root"] / "out_again",
                  "--pacs-config", pacs["cfg"])
    assert again.returncode == 0, again.stderr
    assert json.loads((pacs["root"] / "out_again" / "result.json").read_text())["probability"] == pytest.approx(
        p, abs=1e-6)


def test_predict_over_dimse_retrieves_by_c_get(pacs, predicted, capsys):
    """A PACS without DICOMweb: C-FIND for the accession number, C-GET of the study."""
    from dlmvi.cli import run_cli

    out = pacs["root"] / "out_dimse"
    assert run_cli(["predict-patient", str(pacs["model"]), "--pacs", "dimse", "--accession", "ACC001", "--afp", AFP,
                    "--out", str(out), "--pacs-config", str(pacs["cfg"])]) == 0, capsys.readouterr().err
    got = json.loads((out / "result.json").read_text())
    assert got["probability"] == predicted["ref"]["probability"] and got["nomogram"] == predicted["ref"]["nomogram"]


def test_store_over_dimse_sends_the_sr_by_c_store(pacs, predicted, capsys):
    """A PACS without DICOMweb receives the SR by C-STORE into the patient's study; read back, its
    values are predict-patient's on the same files."""
    from dlmvi.cli import run_cli

    before = len(_srs(pacs, "ACC001"))
    out = pacs["root"] / "out_dimse_store"
    assert run_cli(["predict-patient", str(pacs["model"]), "--pacs", "dimse", "--accession", "ACC001", "--afp", AFP,
                    "--out", str(out), "--store", "--pacs-config", str(pacs["cfg"])]) == 0, capsys.readouterr().err
    srs = _srs(pacs, "ACC001")
    assert len(srs) == before + 1
    sr, ds = srs[-1]
    _same_values(sr, predicted["ref"])
    assert ds.StudyInstanceUID == srs[0][1].StudyInstanceUID
