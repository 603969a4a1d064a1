"""Privacy: identifying DICOM fields never reach dlmvi's outputs, logs or report.

A small synthetic cohort is written as DICOM series with identifying fields planted in every
file (name, birth date, MRN, other IDs, address, institution, referring physician, accession
number, distinctive study/series UIDs); one patient's series has a missing slice so that the
error path runs too. Then `dlmvi validate`, `dlmvi prepare`, the whole study pipeline (train,
predict, evaluate, shift, clinical, survival, report) and `dlmvi predict` on the cohort folder
run, and every output file (text and binary, gzip and zip members included), every file
name, everything printed and every warning is searched for the planted values.
"""

from __future__ import annotations

import base64
import gzip
import io
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dlmvi.cli import run_cli

pytestmark = pytest.mark.slow

PLANTED = {
    "PatientName": "Doe^Jane",
    "PatientBirthDate": "19450817",
    "PatientID": "MRN-123456",
    "OtherPatientIDs": "ALT-555-0199",
    "PatientAddress": "221B Baker Street, London",
    "InstitutionName": "St Wendeline Clinic",
    "ReferringPhysicianName": "House^Gregory",
    "AccessionNumber": "ACC98765",
}
UID_ROOT = "1.2.826.0.1.3680043.9.7777"  # planted Study/Series UIDs start with this

#: What must never appear (case-insensitive), including obvious reformattings.
NEEDLES = [
    "Doe^Jane", "Jane", "Doe^", "MRN-123456", "19450817", "1945-08-17", "17/08/1945", "ALT-555-0199",
    "Baker Street", "Wendeline", "House^Gregory", "Gregory", "ACC98765", "3680043.9.7777",
]


def _dicom_cohort(root: Path) -> Path:
    """A 12-patient phantom, T1/T1V/T1D converted to DICOM with identifying fields planted."""
    import pydicom
    import SimpleITK as sitk

    from dlmvi.datasets.phantom import make_phantom
    from dlmvi.io.dicom_write import write_dicom_series
    from dlmvi.io.images import read_volume

    make_phantom(root, n_patients=12, seed=3, size=32, progress=False)
    for i, pdir in enumerate(sorted((root / "images").iterdir())):
        for f in list(pdir.iterdir()):
            if not f.name.startswith(("T1_", "T1V", "T1D", "T1.")):
                f.unlink()  # T1A, T2, DWI: not used here
        for j, seq in enumerate(("T1", "T1V", "T1D")):
            nii = pdir / f"{seq}.nii.gz"
            img = read_volume(nii, reorient=False)
            files = write_dicom_series(
                sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin(), pdir / seq, seq,
                patient_id=PLANTED["PatientID"], direction=np.array(img.GetDirection()).reshape(3, 3),
                series_uid=f"{UID_ROOT}.{i}.{j}", study_uid=f"{UID_ROOT}.{i}")
            nii.unlink()
            for f in files:
                ds = pydicom.dcmread(f)
                for k, v in PLANTED.items():
                    setattr(ds, k, v)
                ds.save_as(f)
    # one broken series: a slice missing in the middle (an error path with a message)
    (root / "images" / "P0003" / "T1D" / "IM0010.dcm").unlink()
    return root


def _blobs(path: Path):
    """(label, bytes) of a file and of what it contains (gzip payload, zip members)."""
    raw = path.read_bytes()
    if path.suffix == ".html":
        # Embedded figures: scan the decoded PNGs, not their base64 text (in which any short
        # word turns up by chance).
        pattern = rb"data:image/png;base64,([A-Za-z0-9+/=]+)"
        for k, m in enumerate(re.finditer(pattern, raw)):
            yield f"{path} (embedded image {k})", base64.b64decode(m.group(1))
        raw = re.sub(pattern, b"", raw)
    yield str(path), raw
    if raw[:2] == b"\x1f\x8b":
        try:
            yield f"{path} (gunzipped)", gzip.decompress(raw)
        except (OSError, EOFError):
            pass
    if raw[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            for name in zf.namelist():
                yield f"{path}:{name}", name.encode() + b"\n" + zf.read(name)


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _leaks(label: str, data: bytes) -> list[str]:
    low = data.lower()
    # In binary data (weights, arrays, compressed images) a 4-letter word such as "jane"
    # occurs by chance about once per 300 MB; there only needles of 6+ characters count.
    needles = NEEDLES if _is_text(data) else [n for n in NEEDLES if len(n) >= 6]
    found = [n for n in needles if n.lower().encode() in low]
    # also UTF-16 (e.g. text inside some binary formats)
    found += [n + " (utf-16)" for n in needles if n.lower().encode("utf-16-le") in low]
    return [f"{label}: {n}" for n in found]


def test_no_identifying_dicom_field_reaches_any_output(tmp_path, capfd):
    from dlmvi.workflow.study import Study, StudyConfig

    cohort = _dicom_cohort(tmp_path / "cohort")
    # the scanner finds what was planted (here, in an input file)
    probe = _leaks("probe", (cohort / "images" / "P0001" / "T1" / "IM0001.dcm").read_bytes())
    assert {x.split(": ", 1)[1] for x in probe} >= {"Doe^Jane", "MRN-123456", "19450817", "ALT-555-0199",
                                                    "Baker Street", "Wendeline", "House^Gregory",
                                                    "ACC98765", "3680043.9.7777"}
    out = tmp_path / "out"
    logs: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_cli(["validate", str(cohort)]) == 1  # the broken series is an error
        study = Study(StudyConfig.from_options(cohort, folds=2, bootstrap=10, epochs=2, develop_cohort=None),
                      out / "study", log=logs.append)
        # The CLI prepare writes exactly the cache the study's prepare stage reuses.
        assert run_cli(["prepare", str(cohort), "--out", str(study.cache), "--size", "64"]) == 0
        study.run()
        assert run_cli(["predict", str(out / "study" / "train"), str(cohort), "--out",
                        str(out / "pred" / "predictions.csv"), "--device", "cpu"]) == 0
    printed = capfd.readouterr()
    text = printed.out + printed.err + "\n".join(logs) + "\n".join(str(w.message) for w in caught)

    # the pipeline did run end to end, and the broken patient was named by its folder id
    assert "P0003" in printed.out and "uneven slice spacing" in printed.out
    assert (out / "study" / "report.html").is_file() and (out / "pred" / "predictions.csv").is_file()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 50 and {p.suffix for p in files} >= {".npy", ".json", ".csv", ".safetensors", ".html", ".png"}

    leaks = _leaks("printed output, logs and warnings", text.encode())
    for p in files:
        leaks += _leaks("file name", str(p.relative_to(out)).encode())
        for label, data in _blobs(p):
            leaks += _leaks(label, data)
    assert not leaks, "identifying DICOM values found in outputs:\n" + "\n".join(leaks)
