"""Real scanner DICOM (GE, Siemens, Philips, Canon, United Imaging) against dcm2niix.

The cases live in ``<repo>/../shared/dicom_real`` (README.md, manifest.json): each
``cases/<name>.tar.xz`` holds one case's files. Every case either reads like dcm2niix's
conversion - same grid (size, origin and spacing to 0.01 mm, direction cosines to 1e-4) and
the same values to the rescale precision (half the RescaleSlope) - or is refused with a
message naming the cause. Geometry is compared in LPS after reorienting both (dlmvi's own
convention); dcm2niix's files are read with SimpleITK, i.e. as ITK reads them.

For the 12 cases with a reference in ``ref/`` the reference file is read directly. For the
others (multi-volume, enhanced, mosaic) the reference numbers below were produced with

    dcm2niix -p n -z y -b n -m n -x n -f %s_%e_%t_%d -o OUT CASE_FOLDER   # v1.0.20220720 (Debian)

and SimpleITK reading OUT/*.nii.gz (4-D files: volume t with sitk.Extract), reoriented to
LPS: size, origin, spacing, direction, the sum of the voxels and a position-weighted sum
(weights ``arange(n) % 97 + 1`` in array order, so a flipped or permuted volume differs).
CI has no dcm2niix; the numbers are pasted here.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from dlmvi.errors import ImageError
from dlmvi.io.dicom_volumes import VolumeChoiceError
from dlmvi.io.images import Where, read_volume

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "dicom_real"
pytestmark = pytest.mark.skipif(
    not (REAL / "manifest.json").is_file(),
    reason=f"real scanner cases not found at {REAL} (../shared/dicom_real beside the repository)")
W = Where("R01", "T1")

#: Cases with a dcm2niix reference in ref/ (read like it).
REF_CASES = ["canon_b0_double_oblique", "canon_b0_sag_oblique", "ge_epi_ax", "ge_t1_3d_ax_oblique",
             "philips_dti_b0_ax", "philips_fmri_oblique", "siemens_t1_sag_hfdl", "siemens_t1_sag_hfdr",
             "siemens_t1_sag_hfp", "siemens_t1_sag_hfs", "siemens_xa30_epi_sag", "uih_t1_3d_sag"]

I3 = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
#: case -> [(volume label, dcm2niix size, origin, spacing, direction, sum, weighted sum)].
MULTI = {
    # Siemens XA10 enhanced, 4 files of 6 frames: 4 temporal positions (TemporalPositionIndex)
    "enhanced_siemens": [
        (f"temporal position {t + 1}", (64, 64, 6), (-109.79, -58.4773, -5.4036), (3.375, 3.375, 2.4), I3, s, w)
        for t, (s, w) in enumerate([(2516181.0, 122971860.0), (2501204.0, 122257470.0),
                                    (2494742.0, 121920840.0), (2489522.0, 121676120.0)])],
    # Philips enhanced field map, one file of 64 frames: magnitude and field map (FrameType)
    "enhanced_philips_single": [
        ("image type M", (64, 64, 32), (-127.243, -119.7766, -38.3546), (4.0, 4.0, 4.0),
         (1.0, 0.0, -3e-05, 0.0, 1.0, 0.0, 3e-05, 0.0, 1.0), 73959703.0, 3625381200.0),
        ("image type FIELD_MAP", (64, 64, 32), (-127.243, -119.7766, -38.3546), (4.0, 4.0, 4.0),
         (1.0, 0.0, -3e-05, 0.0, 1.0, 0.0, 3e-05, 0.0, 1.0), -1572600.9, -77015288.0)],
    # Siemens EPI MOSAIC: 5 slices tiled in one 216 x 216 image
    "mosaic_single": [
        ("volume 1", (72, 72, 5), (-108.0, -108.0, 16.0), (3.0, 3.0, 12.0), I3, 5127811.0, 251898600.0)],
    "mosaic_two": [
        ("temporal position 1", (72, 72, 5), (-108.0, -108.0, 16.0), (3.0, 3.0, 12.0), I3, 5127811.0, 251898600.0),
        ("temporal position 2", (72, 72, 5), (-108.0, -108.0, 16.0), (3.0, 3.0, 12.0), I3, 5091258.0, 250109870.0)],
    # Siemens dual-echo GRE (TE 5.19 / 7.65 ms): dcm2niix writes one file per echo
    "multi_echo": [
        ("echo 1", (64, 64, 4), (-104.0, -104.0, -63.0), (3.25, 3.25, 3.6), I3, 11525326.0, 569219230.0),
        ("echo 2", (64, 64, 4), (-104.0, -104.0, -63.0), (3.25, 3.25, 3.6), I3, 11144775.0, 550469560.0)],
    # GE fMRI, 2 volumes told apart by InstanceNumber only
    "multi_volume": [
        ("volume 1", (64, 64, 15), (-118.125, -143.344, -17.6875), (3.75, 3.75, 5.0), I3, 37088523.0, 1818470400.0),
        ("volume 2", (64, 64, 15), (-118.125, -143.344, -17.6875), (3.75, 3.75, 5.0), I3, 35442104.0, 1737666300.0)],
}

#: case -> regex the refusal must match (the cause named).
REFUSED = {
    "two_series": r"holds 2 DICOM series \(numbers 4, 5\); keep one series per sequence folder",
    "localizer_like": r"is oriented differently .*2 orientations in one series, as in a 3-plane localizer",
    "missing_slice": r"uneven slice spacing \(6.00 mm between 8000_019.dcm and 8000_021.dcm, 3.00 mm "
                     r"elsewhere\); a slice is probably missing",
}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Extract a case on first use; returns a function name -> series folder."""
    root = tmp_path_factory.mktemp("dicom_real")
    done = {}

    def get(name: str) -> Path:
        if name not in done:
            with tarfile.open(REAL / "cases" / f"{name}.tar.xz") as tar:
                tar.extractall(root, filter="data")
            done[name] = root / name
        return done[name]

    return get


def test_manifest_lists_every_case_tested_here():
    names = {c["name"] for c in json.loads((REAL / "manifest.json").read_text())["cases"]}
    assert names == set(REF_CASES) | set(MULTI) | set(REFUSED)


def _lps(img):
    return sitk.DICOMOrient(img, "LPS")


def _slope(folder: Path) -> float:
    from dlmvi.io.dicom_series import index_folder

    return max(abs(fr.slope) for rec in index_folder(folder, W) for fr in rec.frames)


@pytest.mark.parametrize("name", REF_CASES)
def test_classic_series_reads_like_dcm2niix(cases, name):
    folder = cases(name)
    img = read_volume(folder, W)
    ref = _lps(sitk.ReadImage(str(REAL / "ref" / f"{name}.nii.gz")))
    assert img.GetSize() == ref.GetSize()
    np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin(), atol=0.01)
    np.testing.assert_allclose(img.GetSpacing(), ref.GetSpacing(), atol=0.01)
    np.testing.assert_allclose(img.GetDirection(), ref.GetDirection(), atol=1e-4)
    a = sitk.GetArrayFromImage(img)
    b = sitk.GetArrayFromImage(ref).astype(np.float32)
    np.testing.assert_allclose(a, b, rtol=0, atol=0.5 * _slope(folder) + 1e-4)


@pytest.mark.parametrize("name", REF_CASES)
def test_dcm2niix_nifti_reads_like_itk(name):
    """dcm2niix's own output reads as ITK reads it (ITK's choice of sform/qform)."""
    p = REAL / "ref" / f"{name}.nii.gz"
    img = read_volume(p, W)
    ref = _lps(sitk.ReadImage(str(p)))
    assert img.GetSize() == ref.GetSize()
    np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin(), atol=0.01)
    np.testing.assert_allclose(img.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(img.GetDirection(), ref.GetDirection(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(ref).astype(np.float32))


def test_philips_dti_nifti_reads_as_image_and_as_mask(tmp_path):
    """dcm2niix stores this near-180-degree rotation's quaternion in float32: qform and sform
    differ by up to 0.22 mm along one axis (0.25 mm as a distance) at the far corner. Below the
    1 mm tolerance: read with ITK's sform, as image and as a mask written with the same header."""
    from dlmvi.cohort.patient import Patient, SequenceSource

    src = REAL / "ref" / "philips_dti_b0_ax.nii.gz"
    hdr = nib.load(src).header
    corners = np.array([[i, j, k, 1.0] for i in (0, 79) for j in (0, 79) for k in (0, 39)]).T
    diff = ((hdr.get_qform() @ corners) - (hdr.get_sform() @ corners))[:3]
    assert np.abs(diff).max() == pytest.approx(0.224, abs=0.001)
    assert np.sqrt((diff ** 2).sum(0)).max() == pytest.approx(0.251, abs=0.001)
    folder = tmp_path / "images" / "R01"
    folder.mkdir(parents=True)
    shutil.copy(src, folder / "DWI.nii.gz")
    mask = np.zeros(nib.load(src).shape, np.uint8)
    mask[30:50, 30:50, 18:23] = 1
    m = nib.Nifti1Image(mask, None, header=hdr.copy())
    m.set_qform(hdr.get_qform(), code=int(hdr["qform_code"]))
    m.set_sform(hdr.get_sform(), code=int(hdr["sform_code"]))
    nib.save(m, folder / "DWI_roi.nii.gz")
    p = Patient("R01", "2018", "M0", {}, {"DWI": SequenceSource("DWI", folder / "DWI.nii.gz", folder / "DWI_roi.nii.gz")})
    ls = p.load("DWI")
    assert ls.image.shape == (40, 80, 80) and int(ls.mask.sum()) == 20 * 20 * 5
    # ITK's choice is the sform (code 1): the origin ITK reports
    ref = _lps(sitk.ReadImage(str(src)))
    np.testing.assert_allclose(read_volume(folder / "DWI_roi.nii.gz", W).GetOrigin(), ref.GetOrigin(), atol=0.01)


def _stats(img):
    a = sitk.GetArrayFromImage(img).astype(np.float64)
    w = (np.arange(a.size) % 97 + 1).reshape(a.shape)
    return float(a.sum()), float((a * w).sum())


@pytest.mark.parametrize("name", sorted(MULTI))
def test_multivolume_enhanced_and_mosaic_read_like_dcm2niix(cases, name):
    from dlmvi.io.dicom_series import index_folder, series_frames, volumes_of

    folder = cases(name)
    vols = volumes_of(series_frames(index_folder(folder, W), W, folder), W, folder)
    expected = MULTI[name]
    assert [v.label for v in vols] == [e[0] for e in expected]
    for label, size, origin, spacing, direction, total, weighted in expected:
        info = {}
        img = read_volume(folder, W, volume=label, info=info)
        assert info["chosen"] == label
        assert img.GetSize() == size
        np.testing.assert_allclose(img.GetOrigin(), origin, atol=0.01)
        np.testing.assert_allclose(img.GetSpacing(), spacing, atol=0.01)
        np.testing.assert_allclose(img.GetDirection(), direction, atol=1e-4)
        s, ws = _stats(img)
        assert s == pytest.approx(total, rel=1e-6)
        assert ws == pytest.approx(weighted, rel=1e-6)


@pytest.mark.parametrize("name", [n for n in sorted(MULTI) if len(MULTI[n]) > 1])
def test_multivolume_without_a_choice_lists_the_volumes(cases, name):
    labels = [e[0] for e in MULTI[name]]
    with pytest.raises(VolumeChoiceError, match=rf"patient R01, T1: .* holds {len(labels)} volumes \(told apart by "
                       rf".*\): {labels[0]} \(.*{labels[-1]} \(.*say which one to read") as exc:
        read_volume(cases(name), W)
    assert [v.label for v in exc.value.volumes] == labels


def test_mosaic_is_never_read_as_one_tiled_slice(cases):
    """Read as a plain image the mosaic would be one 216 x 216 slice."""
    img = read_volume(cases("mosaic_single"), W)
    assert img.GetSize() == (72, 72, 5)
    import pydicom

    f = next(cases("mosaic_single").glob("*.dcm"))
    assert "MOSAIC" in pydicom.dcmread(f, stop_before_pixels=True).ImageType
    assert (pydicom.dcmread(f).Rows, pydicom.dcmread(f).Columns) == (216, 216)


def test_multi_echo_choice_by_echo_time(cases):
    a = sitk.GetArrayFromImage(read_volume(cases("multi_echo"), W, volume="te 7.65"))
    b = sitk.GetArrayFromImage(read_volume(cases("multi_echo"), W, volume="echo 2"))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_mixed_or_broken_series_are_refused_naming_the_cause(cases, name):
    with pytest.raises(ImageError, match=rf"patient R01, T1: .*{REFUSED[name]}"):
        read_volume(cases(name), W)


@pytest.mark.parametrize("name, plane", [("enhanced_siemens", "axial"), ("mosaic_single", "axial"),
                                         ("siemens_t1_sag_hfs", "sagittal")])
def test_image_orientation_reads_enhanced_and_mosaic_headers(cases, name, plane):
    """predict-patient checks the acquisition plane: enhanced files keep their orientation in
    the functional groups, not at the top level."""
    from dlmvi.io.images import image_orientation

    assert image_orientation(cases(name))[1] == plane
