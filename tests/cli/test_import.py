"""``dlmvi import``: a PACS/CD export of the SYNTHETIC phantom in, a cohort out.

The phantom (3 patients, 32 px, 12 slices, seed 5) is written twice: as NIfTI (the
reference) and as DICOM series. The DICOM files are flattened into one folder of randomly
named files (a PACS export) or written as a DICOM File-set with a DICOMDIR (a CD), imported
with a map, given the phantom's masks and clinical table, and prepared: the patches equal
those of the NIfTI phantom (stated below). A dynamic series holding the three contrast phases
and a DWI series holding three b-values, built from the phantom with pydicom, are split and
mapped. The export's bytes never change; a rerun keeps what is written; no identifying field
reaches any output.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from dlmvi.cli import run_cli
from dlmvi.constants import SEQUENCES
from dlmvi.datasets.phantom import PhantomConfig, make_phantom
from dlmvi.io.dicom_write import write_dicomdir_export, write_flat_export, write_multivolume_series
from dlmvi.io.images import Where, read_volume

SEED, N, SIZE, SLICES = 5, 3, 32, 12
IDS = ["P0001", "P0002", "P0003"]

MAP = """
[patients]
id = "table"
table = "{table}"
cohort = "2015"
""" + "".join(f'[sequences.{s}]\nseries = "^{s}$"\n' for s in SEQUENCES)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    nifti = make_phantom(root / "nifti", n_patients=N, seed=SEED, size=SIZE, progress=False, n_slices=SLICES)
    dicom = make_phantom(root / "dicom", n_patients=N, seed=SEED, size=SIZE, fmt="dicom", progress=False,
                         n_slices=SLICES)
    assert sorted(p.name for p in (nifti / "images").iterdir()) == IDS
    return nifti, dicom


def _series_folders(dicom_cohort: Path) -> list[Path]:
    return sorted(p for p in (dicom_cohort / "images").glob("*/*") if p.is_dir())


def _map(tmp_path: Path, text: str = MAP, ids=IDS) -> Path:
    key = tmp_path / "secure" / "key.csv"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text("dicom_patient_id,patient_id\n" + "".join(f"{i},{i}\n" for i in ids))
    p = tmp_path / "map.toml"
    p.write_text(text.format(table=key.as_posix()))
    return p


def _checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _complete(cohort: Path, nifti: Path) -> None:
    """What the hospital adds after the import: the radiologists' masks and the clinical table."""
    shutil.copy(nifti / "clinical.csv", cohort / "clinical.csv")
    for pid in IDS:
        for s in SEQUENCES:
            shutil.copy(nifti / "images" / pid / f"{s}_roi.nii.gz", cohort / "images" / pid / f"{s}_roi.nii.gz")


def _prepare(cohort: Path, cache: Path):
    from dlmvi.preprocess.cache import PrepareConfig
    from dlmvi.preprocess.prepare import prepare_cohort

    c = prepare_cohort(cohort, cache, PrepareConfig(sequences=SEQUENCES, size=32, margin=4), progress=False)
    return c.stack(IDS), c.index


@pytest.mark.parametrize("layout", ["flat", "dicomdir"])
def test_imported_export_prepares_like_the_nifti_phantom(phantoms, tmp_path, capsys, layout):
    nifti, dicom = phantoms
    export = tmp_path / "export"
    if layout == "flat":
        files = write_flat_export(_series_folders(dicom), export, seed=1)
        assert len(files) == N * len(SEQUENCES) * SLICES == 216 and len(list(export.iterdir())) == 216
    else:
        write_dicomdir_export(_series_folders(dicom), export)
        assert (export / "DICOMDIR").is_file()
    before = _checksums(export)
    cohort = tmp_path / "cohort"
    assert run_cli(["import", str(export), "--out", str(cohort), "--map", str(_map(tmp_path)), "-q",
                    "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "216 DICOM image file(s) indexed" in out
    assert "18 volume(s) written, 0 already there, 0 problem(s)" in out
    if layout == "dicomdir":
        assert "DICOMDIR: every referenced file present" in out
    assert _checksums(export) == before  # the export is never modified
    assert sorted(p.name for p in (cohort / "images").iterdir()) == IDS
    assert (cohort / "scanners.csv").read_text().splitlines()[:2] == [
        "patient_id,sequence,vendor,model,field_strength,series_date",
        "P0001,T1,dlmvi synthetic phantom,,,20150714"]
    _complete(cohort, nifti)
    a, idx_a = _prepare(nifti, tmp_path / "cache_nifti")
    b, idx_b = _prepare(cohort, tmp_path / "cache_import")
    # 3 patients x 6 sequences x 3 key slices x 32 x 32, identical to the last bit: the phantom's
    # int16 voxels survive DICOM (slope 1) and the de-identified NIfTI (int16) exactly.
    assert a.shape == b.shape == (3, 6, 3, 32, 32)
    assert float(np.abs(a - b).max()) == 0.0
    assert idx_a["slices"].tolist() == idx_b["slices"].tolist()
    assert idx_a["box"].tolist() == idx_b["box"].tolist()


def test_rerun_keeps_what_is_written_and_redoes_what_is_missing(phantoms, tmp_path, capsys):
    _, dicom = phantoms
    export = tmp_path / "export"
    write_flat_export(_series_folders(dicom), export, seed=2)
    cohort, m = tmp_path / "cohort", _map(tmp_path)
    args = ["import", str(export), "--out", str(cohort), "--map", str(m), "-q", "--workers", "2"]
    assert run_cli(args) == 0
    t1 = cohort / "images" / "P0002" / "T1.nii.gz"
    stamp = t1.stat().st_mtime_ns
    (cohort / "images" / "P0003" / "DWI.nii.gz").unlink()
    (cohort / "images" / "P0003" / ".DWI.nii.gz.x1.tmp.nii.gz").write_bytes(b"half")  # an interrupted write
    (cohort / "clinical.csv").write_text("patient_id,cohort,mvi_grade\nP0001,2015,M1\n")  # the user's table
    capsys.readouterr()
    assert run_cli(args) == 0
    assert "1 volume(s) written, 17 already there, 0 problem(s)" in capsys.readouterr().out
    assert t1.stat().st_mtime_ns == stamp
    assert not (cohort / "images" / "P0003" / ".DWI.nii.gz.x1.tmp.nii.gz").exists()
    assert (cohort / "clinical.csv").read_text() == "patient_id,cohort,mvi_grade\nP0001,2015,M1\n"
    assert len((cohort / "scanners.csv").read_text().splitlines()) == 1 + 18


def _phase_and_b_export(nifti: Path, out: Path) -> dict[str, np.ndarray]:
    """One patient's export whose T1A/T1V/T1D are the 3 temporal positions of one dynamic
    series and whose DWI is b 800 of a series holding b = 0, 50, 800 (b 0 and b 50 synthetic:
    the b 800 image scaled by 2.0 and 1.5)."""
    cfg = PhantomConfig(n_patients=N, seed=SEED, size=SIZE, n_slices=SLICES)
    vols = {s: sitk.GetArrayFromImage(read_volume(nifti / "images" / "P0002" / f"{s}.nii.gz")).astype(np.int16)
            for s in SEQUENCES}
    kw = dict(patient_id="P0002", study_date="20180301", extra_tags={"Manufacturer": "Synthetic Vendor",
                                                                         "MagneticFieldStrength": 1.5})
    series = out / "series"
    write_multivolume_series([vols["T1"]], cfg.spacing, cfg.origin, series / "a", "t1_vibe_pre", [{}],
                             series_number=3, **kw)
    write_multivolume_series([vols[s] for s in ("T1A", "T1V", "T1D")], cfg.spacing, cfg.origin, series / "b",
                             "t1_vibe_dyn", [{"TemporalPositionIdentifier": t, "NumberOfTemporalPositions": 3,
                                              "AcquisitionTime": f"1030{15 * t:02d}"} for t in (1, 2, 3)],
                             series_number=4, **kw)
    write_multivolume_series([vols["T2"]], cfg.spacing, cfg.origin, series / "c", "t2_haste_tra", [{}],
                             series_number=5, **kw)
    dwi = vols["DWI"].astype(np.float64)
    write_multivolume_series([np.rint(dwi * 2.0).astype(np.int16), np.rint(dwi * 1.5).astype(np.int16), vols["DWI"]],
                             cfg.spacing, cfg.origin, series / "d", "ep2d_diff_b0_50_800",
                             [{"DiffusionBValue": b} for b in (0.0, 50.0, 800.0)], series_number=6, **kw)
    write_multivolume_series([vols["T1"][:1]], cfg.spacing, cfg.origin, series / "e", "localizer", [{}],
                             series_number=1, **kw)
    write_flat_export(sorted(series.iterdir()), out / "export", seed=3)
    return vols


DYN_MAP = """
[patients]
id = "table"
table = "{table}"
[sequences.T1]
series = "(?i)t1.*pre"
[sequences.T1A]
series = "(?i)dyn"
volume = "temporal position 1"
[sequences.T1V]
series = "(?i)dyn"
volume = "temporal position 2"
[sequences.T1D]
series = "(?i)dyn"
volume = "temporal position 3"
[sequences.T2]
series = "(?i)t2"
[sequences.DWI]
series = "(?i)diff"
"""


def test_dynamic_phases_and_dwi_b_values_are_split_and_mapped(phantoms, tmp_path, capsys):
    nifti, _ = phantoms
    vols = _phase_and_b_export(nifti, tmp_path)
    cohort = tmp_path / "cohort"
    assert run_cli(["import", str(tmp_path / "export"), "--out", str(cohort), "--map",
                    str(_map(tmp_path, DYN_MAP, ["P0002"])), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    for s in SEQUENCES:
        got = sitk.GetArrayFromImage(read_volume(cohort / "images" / "P0002" / f"{s}.nii.gz", Where("P0002", s)))
        np.testing.assert_array_equal(got, vols[s].astype(np.float32))
    lines = out.splitlines()
    row = next(ln for ln in lines if " t1_vibe_dyn " in ln)
    assert "T1A (temporal position 1), T1V (temporal position 2), T1D (temporal position 3)" in row
    assert "  DWI: series 6 'ep2d_diff_b0_50_800', b 800 of 3 volumes (the highest b-value, the default for DWI)" in lines
    assert "  unmapped: series 1 'localizer'" in lines
    assert (cohort / "scanners.csv").read_text().splitlines()[1] == "P0002,T1,Synthetic Vendor,,1.5,20180301"
    series_csv = (cohort / "import_series.csv").read_text()
    assert "P0002,20180301,6,ep2d_diff_b0_50_800,ep2d_diff_b0_50_800,20180301,36,b 0; b 50; b 800,axial," in series_csv


def test_unmapped_missing_and_ambiguous_series_are_reported_per_patient(phantoms, tmp_path, capsys):
    nifti, _ = phantoms
    _phase_and_b_export(nifti, tmp_path)
    text = DYN_MAP.replace('volume = "temporal position 2"\n', "") + '[sequences.T1A]\n'
    text = text.replace('[sequences.T2]\nseries = "(?i)t2"', '[sequences.T2]\nseries = "(?i)t"')
    text = text.rsplit("[sequences.T1A]\n", 1)[0]
    m = _map(tmp_path, text, ["P0002"])
    cohort = tmp_path / "cohort"
    assert run_cli(["import", str(tmp_path / "export"), "--out", str(cohort), "--map", str(m), "-q"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "patient P0002" in lines
    t1v = next(ln for ln in lines if ln.startswith("  T1V: "))
    assert t1v == ("  T1V: series 4 't1_vibe_dyn' holds 3 volumes (told apart by TemporalPositionIdentifier): "
                   "temporal position 1 (12 slices, acquired 10:30:15); temporal position 2 (12 slices, acquired "
                   "10:30:30); temporal position 3 (12 slices, acquired 10:30:45); say which one is T1V: add "
                   "volume = \"temporal position 3\" (or another label) to [sequences.T1V] in map.toml")
    t2 = next(ln for ln in lines if ln.startswith("  T2: "))
    assert t2 == ("  T2: ambiguous: 3 series match [sequences.T2] (series 3 't1_vibe_pre'; series 4 't1_vibe_dyn'; "
                  "series 5 't2_haste_tra'); tighten `series`, add `exclude`, or set pick = \"first\"/\"last\" in the map")
    assert not (cohort / "images" / "P0002" / "T1V.nii.gz").exists()
    assert (cohort / "images" / "P0002" / "T1A.nii.gz").is_file()


def test_nothing_identifying_reaches_the_cohort_or_the_output(phantoms, tmp_path, capsys):
    import pydicom

    _, dicom = phantoms
    export = tmp_path / "export"
    write_flat_export(_series_folders(dicom), export, seed=4)
    planted = {"PatientName": "Doe^Jane", "PatientBirthDate": "19450817", "OtherPatientIDs": "ALT-555-0199",
               "InstitutionName": "St Wendeline Clinic", "AccessionNumber": "ACC98765",
               "ReferringPhysicianName": "House^Gregory"}
    secret_ids = {pid: f"MRN-{i}7731" for i, pid in enumerate(IDS)}
    for f in export.iterdir():
        ds = pydicom.dcmread(f)
        for k, v in planted.items():
            setattr(ds, k, v)
        ds.PatientID = secret_ids[ds.PatientID]
        ds.save_as(f)
    text = MAP.replace('id = "table"', 'id = "sequential"\nprefix = "HCC"')
    m = _map(tmp_path, text, [])
    cohort = tmp_path / "cohort"
    assert run_cli(["import", str(export), "--out", str(cohort), "--map", str(m)]) == 0
    printed = capsys.readouterr()
    needles = [*planted.values(), "Jane", "Wendeline", "1945", *secret_ids.values()]
    for p in cohort.rglob("*"):
        if p.is_file():
            blob = p.read_bytes()
            if p.name.endswith(".gz"):
                blob = gzip.decompress(blob)
            for n in needles:
                assert n.encode() not in blob, (p, n)
            assert not any(n in str(p) for n in needles)
    for n in needles:
        assert n not in printed.out and n not in printed.err
    assert sorted(p.name for p in (cohort / "images").iterdir()) == ["HCC001", "HCC002", "HCC003"]
    # the link DICOM PatientID -> cohort id lives only in the user's table, outside the cohort
    key = (tmp_path / "secure" / "key.csv").read_text().splitlines()
    assert key == ["dicom_patient_id,patient_id", "MRN-07731,HCC001", "MRN-17731,HCC002", "MRN-27731,HCC003"]
    hdr = nib.load(cohort / "images" / "HCC001" / "T1.nii.gz").header
    assert bytes(hdr["descrip"]).rstrip(b"\0") == b"dlmvi import T1" and len(hdr.extensions) == 0


def test_patients_missing_from_the_pseudonym_table_are_skipped_and_listed_beside_it(phantoms, tmp_path, capsys):
    _, dicom = phantoms
    export = tmp_path / "export"
    write_flat_export(_series_folders(dicom), export, seed=6)
    m = _map(tmp_path, MAP, ["P0001", "P0003"])
    cohort = tmp_path / "cohort"
    assert run_cli(["import", str(export), "--out", str(cohort), "--map", str(m), "-q"]) == 1
    out = capsys.readouterr().out
    assert f"1 patient(s) of the export are not in {tmp_path / 'secure' / 'key.csv'}; skipped" in out
    assert sorted(p.name for p in (cohort / "images").iterdir()) == ["P0001", "P0003"]
    assert (tmp_path / "secure" / "key.missing.csv").read_text() == "dicom_patient_id\nP0002\n"
    assert "P0002" not in out


def test_dry_run_writes_nothing(phantoms, tmp_path, capsys):
    _, dicom = phantoms
    export = tmp_path / "export"
    write_flat_export(_series_folders(dicom)[:6], export, seed=7)
    cohort = tmp_path / "cohort"
    assert run_cli(["import", str(export), "--out", str(cohort), "--map", str(_map(tmp_path)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "6 volume(s) would write, 0 already there, 0 problem(s)" in out
    assert next(ln for ln in out.splitlines() if ln.startswith("P0001  ") and " T1A " in ln).endswith("would write")
    assert not cohort.exists()


@pytest.mark.parametrize("text, message", [
    ('[patients]\nid = "dicom"\n[sequences.T1]\nseries = "(unclosed"\n', r"\[sequences.T1\]: invalid regular expression"),
    ('[patients]\nid = "dicom"\n[sequences.T9]\nseries = "x"\n', r"\[sequences.T9\]: unknown sequence"),
    ('[patients]\nid = "sequential"\n[sequences.T1]\nseries = "x"\n', r"needs table = "),
    ('[patients]\nid = "name"\n[sequences.T1]\nseries = "x"\n', r"id = 'name'; use one of sequential, table, dicom"),
    ('[patients]\nid = "dicom"\n[sequences.DWI]\nseries = "x"\nvolume = "b eight hundred"\n',
     r"cannot read 'b eight hundred'"),
])
def test_bad_map_is_a_clear_error(tmp_path, capsys, text, message):
    (tmp_path / "export").mkdir()
    m = tmp_path / "map.toml"
    m.write_text(text)
    assert run_cli(["import", str(tmp_path / "export"), "--out", str(tmp_path / "c"), "--map", str(m)]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_output_inside_the_export_is_refused(tmp_path, capsys):
    (tmp_path / "export").mkdir()
    m = _map(tmp_path)
    assert run_cli(["import", str(tmp_path / "export"), "--out", str(tmp_path / "export" / "cohort"),
                    "--map", str(m)]) == 2
    assert "overlap; write the cohort to a separate folder (the export is never modified)" in capsys.readouterr().err


def test_import_runs_as_a_subprocess(phantoms, tmp_path):
    _, dicom = phantoms
    export = tmp_path / "export"
    write_flat_export(_series_folders(dicom)[:2], export, seed=8)
    r = subprocess.run([sys.executable, "-m", "dlmvi.cli", "import", str(export), "--out", str(tmp_path / "c"),
                        "--map", str(_map(tmp_path)), "-q"], capture_output=True, text=True)
    assert r.returncode == 1  # only T1 and T1A of P0001 in this export: its 4 other sequences are missing
    assert "2 volume(s) written, 0 already there, 4 problem(s)" in r.stdout


def test_dry_run_without_a_map_lists_the_series_to_write_one(phantoms, tmp_path, capsys):
    """Issue 28, point 4: a first look at an export before any map exists; nothing is written."""
    _, dicom = phantoms
    export = tmp_path / "export"
    write_flat_export(_series_folders(dicom), export, seed=2)
    before = _checksums(export)
    assert run_cli(["import", str(export), "--dry-run", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "no --map: every series is listed as unmapped" in out
    assert out.count("unmapped") == N * len(SEQUENCES) + 1
    assert _checksums(export) == before and sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert run_cli(["import", str(export), "--out", str(tmp_path / "c")]) == 2
    assert "run it with --dry-run (and no --map) first" in capsys.readouterr().err
