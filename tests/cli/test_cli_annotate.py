"""Tests of src/dlmvi/cli/annotate.py: the real ``dlmvi annotate`` (uvicorn on loopback) driven by
Debian's headless Chromium through Selenium, then ``adopt-rois``, ``validate``, ``prepare`` and
``agreement`` as subprocesses.

The phantom cohort: three patients with T1, T1V, T1D; P0001 and P0003 without masks, P0002
with masks (done from the start). P0001's T1D is resampled onto another grid (spacing, origin,
y axis flipped), so a box carried to it lands on other indices. Browser tests are skipped when
chromium and chromium-driver are missing (.ci/run installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from browser import chrome  # tests/browser.py
import SimpleITK as sitk

SEQS = ("T1", "T1V", "T1D")
HEADER = "patient_id,sequence,slice,x0,y0,x1,y1"


def _cli(*args, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "dlmvi.cli", *map(str, args)], capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"dlmvi {' '.join(map(str, args))} exited {r.returncode}: {r.stderr}")
    return r


def _resample_other_grid(path: Path) -> None:
    """Rewrite a NIfTI file on another axial grid of the same patient coordinates."""
    from dlmvi.io.images import read_volume, write_nifti

    img = read_volume(path, reorient=False)
    d = np.reshape(img.GetDirection(), (3, 3)) * np.array([1.0, -1.0, 1.0])[None, :]
    ref = sitk.Image([40, 44, 30], sitk.sitkFloat32)
    ref.SetSpacing((9.0, 8.0, 4.0))
    ref.SetDirection(tuple(d.ravel()))
    centre = np.asarray(img.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in img.GetSize()]))
    ref.SetOrigin(tuple(centre - d @ (np.array([9.0, 8.0, 4.0]) * (np.array([40, 44, 30]) - 1) / 2)))
    write_nifti(sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32), path)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from dlmvi.datasets.phantom import make_phantom

    root = make_phantom(tmp_path_factory.mktemp("annotate") / "cohort", n_patients=3, size=48, progress=False,
                        cohorts=(("2015", 3),))
    for p in (root / "images").iterdir():
        for f in p.iterdir():
            if f.name.split(".")[0].split("_")[0] not in SEQS:
                f.unlink()
    for pid in ("P0001", "P0003"):
        for seq in SEQS:
            (root / "images" / pid / f"{seq}_roi.nii.gz").unlink()
    _resample_other_grid(root / "images" / "P0001" / "T1D.nii.gz")
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(cohort):
    import httpx2 as httpx

    port = _free_port()
    log = cohort.parent / "annotate.log"
    proc = subprocess.Popen([sys.executable, "-m", "dlmvi.cli", "annotate", str(cohort), "--reader", "A",
                             "--port", str(port)], stdout=open(cohort.parent / "annotate.out", "w"),
                            stderr=open(log, "w"), env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url + "/api/worklist", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
    yield {"url": url, "log": log}
    proc.send_signal(2)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    yield from chrome("1400,1100")


def _text(driver, id_):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, id_).text


def _wait(driver, cond, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(cond)


def _boxes_table(driver):
    from selenium.webdriver.common.by import By

    return [tuple(int(td.text) for td in tr.find_elements(By.TAG_NAME, "td"))
            for tr in driver.find_elements(By.CSS_SELECTOR, "#boxes-table tbody tr")]


def _drag(driver, a, b, shift=False):
    """Drag on the canvas from the centre of voxel ``a`` (x, y) to that of voxel ``b``."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    canvas = driver.find_element(By.ID, "canvas")
    left, top, w, h, nx, ny = driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center'}); const r = arguments[0].getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height, arguments[0].width, arguments[0].height];", canvas)

    def off(x, y):  # offsets from the element's centre (Selenium 4)
        return int(round((x + 0.5) * w / nx - w / 2)), int(round((y + 0.5) * h / ny - h / 2))

    chain = ActionChains(driver)
    if shift:
        chain.key_down(Keys.SHIFT)
    chain.move_to_element_with_offset(canvas, *off(*a)).click_and_hold()
    chain.move_to_element_with_offset(canvas, *off(*b)).release()
    if shift:
        chain.key_up(Keys.SHIFT)
    chain.perform()


def _open(driver, pid):
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, f"row-{pid}").click()
    _wait(driver, lambda d: _text(d, "status") == f"patient {pid}" or _text(d, "error"))


def _key(driver, key):
    from selenium.webdriver.common.by import By

    driver.find_element(By.TAG_NAME, "body").send_keys(key)


def _confirm(driver, seq):
    _key(driver, "c")
    _wait(driver, lambda d: _text(d, "status").startswith(f"{seq} confirmed") or _text(d, "error"))
    assert _text(driver, "error") == ""


def _grids(cohort, pid):
    from dlmvi.io.images import read_volume
    from dlmvi.preprocess.carry import Grid

    return {s: Grid.from_image(read_volume(cohort / "images" / pid / f"{s}.nii.gz", reorient=False)) for s in SEQS}


def test_a_reader_annotates_the_worklist_in_the_browser(cohort, served, browser):
    """Worklist, draw on one sequence, carried boxes on the others, bad input refused on the page,
    confirm, next patient; the saved file passes validate and prepares like boxes typed by hand."""
    from selenium.webdriver.common.by import By

    from dlmvi.preprocess.carry import carry_boxes

    browser.get(served["url"] + "/")
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#worklist tbody tr")) == 3)
    assert _text(browser, "progress-text") == "1 of 3 patients done"
    assert _text(browser, "synthetic-banner").startswith("SYNTHETIC")
    assert [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#row-P0002 td")] == ["P0002", "2015", "mask",
                                                                                            "mask", "mask"]
    _open(browser, "P0001")
    assert _text(browser, "seq-name") == "T1"
    browser.execute_script("setSlice(11)")
    _drag(browser, (14, 16), (27, 30))
    _wait(browser, lambda d: _text(d, "status").startswith("carried to") or _text(d, "error"))
    assert _text(browser, "status") == "carried to T1V, T1D"
    drawn = [(z, 14, 16, 27, 30) for z in (10, 11, 12)]
    assert _boxes_table(browser) == drawn
    grids = _grids(cohort, "P0001")
    expected = {"T1": drawn, **{s: list(carry_boxes(drawn, grids["T1"], grids[s])) for s in ("T1V", "T1D")}}
    assert expected["T1D"] != expected["T1V"] == drawn  # T1D lies on another grid
    for seq in ("T1V", "T1D"):
        browser.find_element(By.ID, f"tab-{seq}").click()
        assert _boxes_table(browser) == expected[seq] and _text(browser, "seq-state") == "proposed"
    # closing the browser now loses nothing: the proposals are on disk
    assert (cohort / ".rois.A.proposed.csv").read_text().count("P0001,") == 9
    # bad input: one message on the page, nothing written
    browser.find_element(By.ID, "tab-T1V").click()
    browser.execute_script("setSlice(12)")
    _key(browser, "\ue017")  # Delete: this slice's box
    _key(browser, "c")
    _wait(browser, lambda d: _text(d, "error"))
    assert _text(browser, "error") == ("patient P0001, T1V: box the tumour on 3 consecutive slices (boxed slices: "
                                       "10, 11); nothing was saved")
    assert not (cohort / "rois.A.csv").exists()
    browser.execute_script("S.boxes.T1V = {10: [14, 16, 27, 30], 11: [14, 16, 27, 30], 12: [14, 16, 27, 48]}")
    _key(browser, "c")
    _wait(browser, lambda d: "off the image" in _text(d, "error"))
    assert _text(browser, "error").startswith("patient P0001, T1V: the box on slice 12, (14,16)-(27,48), lies off "
                                              "the image of 48x48x24 voxels")
    assert not (cohort / "rois.A.csv").exists()
    browser.execute_script("S.boxes.T1V = {10: [14, 16, 27, 30], 11: [14, 16, 27, 30], 12: [14, 16, 27, 30]}")
    # confirm each sequence (the page moves on to the next unconfirmed one)
    browser.find_element(By.ID, "tab-T1").click()
    for seq in SEQS:
        assert _text(browser, "seq-name") == seq
        _confirm(browser, seq)
    assert _text(browser, "progress-text") == "2 of 3 patients done"
    # the folder of P0003 changes after the worklist was built: refused on the page until reloaded
    t1 = cohort / "images" / "P0003" / "T1.nii.gz"
    os.utime(t1, ns=(t1.stat().st_atime_ns, t1.stat().st_mtime_ns + 10**9))
    _key(browser, "n")  # next patient not done: P0003 (P0002 has masks)
    _wait(browser, lambda d: _text(d, "error"))
    assert "patient P0003: the patient's folder" in _text(browser, "error")
    assert "changed since the worklist was built" in _text(browser, "error")
    _key(browser, "r")
    _wait(browser, lambda d: _text(d, "status") == "worklist reloaded")
    _open(browser, "P0003")
    assert _text(browser, "patient-id") == "P0003" and _text(browser, "error") == ""
    browser.find_element(By.ID, "tab-T1V").click()
    browser.execute_script("setSlice(9)")
    _drag(browser, (20, 18), (33, 31))
    _wait(browser, lambda d: _text(d, "status").startswith("carried to"))
    browser.find_element(By.ID, "tab-T1D").click()
    _drag(browser, (25, 25), (27, 26), shift=True)  # breathing: the reader moves T1D's boxes by (+2, +1)
    _wait(browser, lambda d: _text(d, "status") == "saved as a proposal")
    p3 = {"T1V": [(z, 20, 18, 33, 31) for z in (8, 9, 10)], "T1": [(z, 20, 18, 33, 31) for z in (8, 9, 10)],
          "T1D": [(z, 22, 19, 35, 32) for z in (8, 9, 10)]}
    assert _boxes_table(browser) == p3["T1D"]
    for seq in ("T1D", "T1", "T1V"):
        browser.find_element(By.ID, f"tab-{seq}").click()
        _confirm(browser, seq)
    assert _text(browser, "progress-text") == "3 of 3 patients done"
    lines = (cohort / "rois.A.csv").read_text().splitlines()
    typed = [HEADER] + [",".join(map(str, ("P0001", s, *r))) for s in SEQS for r in expected[s]] + [
        ",".join(map(str, ("P0003", s, *r))) for s in SEQS for r in p3[s]]
    assert lines == typed
    assert served["log"].read_text().count("P000") == 0  # the log names no patient
    _adopted_file_validates_and_prepares_like_typed_boxes(cohort, "\n".join(typed) + "\n")


def _adopted_file_validates_and_prepares_like_typed_boxes(cohort: Path, typed: str) -> None:
    from dlmvi.preprocess.cache import PatchCache

    work = cohort.parent / "adopt"
    shutil.copytree(cohort, work / "annotated")
    shutil.copytree(cohort, work / "typed")
    assert "boxes of 2 patients from reader A" in _cli("adopt-rois", work / "annotated", "--reader", "A").stdout
    (work / "typed" / "rois.csv").write_text(typed)
    assert _cli("validate", work / "annotated").returncode == 0
    caches = []
    for name in ("annotated", "typed"):
        _cli("prepare", work / name, "--out", work / f"cache_{name}", "--size", "32")
        caches.append(PatchCache(work / f"cache_{name}"))
    for pid in ("P0001", "P0002", "P0003"):
        for seq in SEQS:
            np.testing.assert_array_equal(caches[0].load(pid, seq), caches[1].load(pid, seq))
    r = _cli("adopt-rois", work / "annotated", "--reader", "A", check=False)
    assert r.returncode == 2 and "rois.csv exists; pass --replace" in r.stderr and "Traceback" not in r.stderr


def test_agreement_of_two_readers_from_the_command_line(cohort, tmp_path):
    rows_a = [HEADER] + [f"P0001,T1,{z},10,10,19,19" for z in (10, 11, 12)] + [
        f"P0003,T1,{z},10,10,19,19" for z in (10, 11, 12)]
    rows_b = [HEADER] + [f"P0001,T1,{z},15,10,24,19" for z in (11, 12, 13)] + [
        f"P0003,T1,{z},10,10,19,19" for z in (10, 11, 12)]
    c = tmp_path / "c"
    shutil.copytree(cohort, c)
    (c / "rois.A.csv").write_text("\n".join(rows_a) + "\n")
    (c / "rois.B.csv").write_text("\n".join(rows_b) + "\n")
    r = _cli("agreement", c, "--readers", "A,B", "--out", tmp_path / "agr")
    assert r.stdout.startswith("SYNTHETIC: 2 sequences boxed by both: IoU median 0.600 (0.400-0.800), Dice mean "
                               "0.667, same key slices 50.0 %")
    doc = json.loads((tmp_path / "agr" / "agreement.json").read_text())
    assert doc["synthetic"] and doc["readers"] == ["A", "B"] and doc["n_sequences_compared"] == 2
    import pandas as pd

    boxes = pd.read_csv(tmp_path / "agr" / "boxes.csv")
    # P0001: 5 x 10 of 10 x 10 voxels overlap on 2 of 3 slices: 100 / (600 - 100)
    assert boxes["iou"].round(6).tolist() == [0.2, 1.0]
    assert boxes["same_key_slices"].tolist() == [False, True]
    bad = _cli("agreement", c, "--readers", "A,C", "--out", tmp_path / "agr2", check=False)
    assert bad.returncode == 2 and "rois.C.csv does not exist (reader C); readers with a file: A, B" in bad.stderr
    inside = _cli("agreement", c, "--readers", "A,B", "--out", c / "agr", check=False)
    assert inside.returncode == 2 and "Traceback" not in inside.stderr
