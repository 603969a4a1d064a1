"""Reading DICOM series: ordering, spacing, rescale, orientation and every broken-series case."""

import shutil

import numpy as np
import pydicom
import pytest

from dlmvi.errors import ImageError
from dlmvi.io.dicom_write import write_dicom_series
from dlmvi.io.images import Where, read_volume
from dlmvi.preprocess.cache import PrepareConfig
from dlmvi.preprocess.prepare import prepare_cohort
from factories import SPACING, tumour_volume, write_cohort

W = Where("P007", "T1V")


def _series(folder, vol=None, **kw):
    if vol is None:
        vol, _ = tumour_volume()
    return write_dicom_series(vol.astype(np.float32), SPACING, (0.0, 0.0, 0.0), folder, "T1V", **kw)


def _array(img):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(img)


def test_series_round_trip_order_spacing_values(tmp_path):
    vol, _ = tumour_volume()
    files = _series(tmp_path / "T1V", vol)
    # Shuffle file names: order must come from ImagePositionPatient, not names.
    for i, f in enumerate(reversed(files)):
        f.rename(f.with_name(f"x{i:03d}.dcm"))
    img = read_volume(tmp_path / "T1V", W, reorient=False)
    np.testing.assert_allclose(_array(img), vol, atol=0.5)
    np.testing.assert_allclose(img.GetSpacing(), SPACING, rtol=1e-6)


def test_dicom_and_nifti_of_same_volume_give_same_patch(tmp_path):
    root = write_cohort(tmp_path / "nifti", n=2)
    dcm = tmp_path / "dicom"
    shutil.copytree(root, dcm)
    import nibabel as nib

    for pid in ("P000", "P001"):
        for seq in ("T1", "T1V", "T1D"):
            nii = dcm / "images" / pid / f"{seq}.nii.gz"
            img = nib.load(nii)
            arr_zyx = np.asarray(img.dataobj).transpose(2, 1, 0).astype(np.float32)
            # NIfTI RAS affine -> DICOM LPS: flip x and y of the array and the origin's sign.
            aff = img.affine
            nx, ny = arr_zyx.shape[2], arr_zyx.shape[1]
            corner_ras = aff @ np.array([nx - 1, ny - 1, 0, 1.0])
            origin_lps = (-corner_ras[0], -corner_ras[1], corner_ras[2])
            write_dicom_series(arr_zyx[:, ::-1, ::-1], SPACING, origin_lps, dcm / "images" / pid / seq, seq,
                               patient_id=pid)
            nii.unlink()
    cfg = PrepareConfig(size=32, margin=4)
    a = prepare_cohort(root, tmp_path / "c1", cfg, progress=False)
    b = prepare_cohort(dcm, tmp_path / "c2", cfg, progress=False)
    assert b.patient_ids() == ["P000", "P001"]
    np.testing.assert_allclose(a.stack(["P000", "P001"]), b.stack(["P000", "P001"]), atol=1e-4)
    assert a.index["box"].tolist() == b.index["box"].tolist()


def test_missing_slice_is_named(tmp_path):
    files = _series(tmp_path / "T1V")
    files[5].unlink()
    with pytest.raises(ImageError, match=r"patient P007, T1V: .*uneven slice spacing \(10.00 mm between IM0005.dcm and IM0007.dcm, 5.00 mm elsewhere\)"):
        read_volume(tmp_path / "T1V", W)


def test_float_noise_in_positions_passes(tmp_path):
    files = _series(tmp_path / "T1V")
    for f in files[::2]:
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient = [float(v) + 1e-4 for v in ds.ImagePositionPatient]
        ds.save_as(f)
    img = read_volume(tmp_path / "T1V", W)
    assert img.GetSpacing()[2] == pytest.approx(5.0, abs=1e-3)


def test_two_series_in_one_folder(tmp_path):
    _series(tmp_path / "T1V", series_number=1)
    _series(tmp_path / "other", series_uid=pydicom.uid.generate_uid(entropy_srcs=["b"]), series_number=2)
    for f in (tmp_path / "other").iterdir():
        f.rename(tmp_path / "T1V" / f"b_{f.name}")
    with pytest.raises(ImageError, match=r"patient P007, T1V: .* holds 2 DICOM series \(numbers 1, 2\); keep one series"):
        read_volume(tmp_path / "T1V", W)


def test_duplicate_sop_instance(tmp_path):
    files = _series(tmp_path / "T1V")
    shutil.copy(files[3], files[3].with_name("copy.dcm"))
    with pytest.raises(ImageError, match="duplicate SOPInstanceUID"):
        read_volume(tmp_path / "T1V", W)


def test_per_file_rescale_is_applied(tmp_path):
    vol, _ = tumour_volume()
    files = _series(tmp_path / "T1V", vol)
    ds = pydicom.dcmread(files[2])
    raw = ds.pixel_array.astype(np.float64)
    ds.RescaleSlope, ds.RescaleIntercept = 2.0, -7.0
    ds.save_as(files[2])
    out = _array(read_volume(tmp_path / "T1V", W, reorient=False))
    np.testing.assert_allclose(out[2], raw * 2.0 - 7.0, rtol=1e-6)


def test_oblique_series_keeps_anatomy_upright(tmp_path):
    """A series stored with rows running anterior->posterior (rotated 90 degrees in-plane)
    reads back in LPS with the same anatomy as the axial one."""
    vol = np.zeros((6, 20, 30), np.float32)
    vol[:, 2:5, 20:28] = 100  # a bar near the anterior, left side
    _series(tmp_path / "axial", vol)
    # Rotated acquisition: x axis of the file = +y (posterior), y axis = -x (right).
    rot = vol.transpose(0, 2, 1)[:, ::-1, :]  # (z, 30, 20): rows along -x, cols along +y
    direction = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # columns: file x -> LPS +y, file y -> LPS -x
    origin = (SPACING[0] * 29, 0.0, 0.0)
    write_dicom_series(np.ascontiguousarray(rot), (SPACING[1], SPACING[0], SPACING[2]), origin, tmp_path / "rot", "T1V",
                       direction=direction)
    a = _array(read_volume(tmp_path / "axial", W))
    b = _array(read_volume(tmp_path / "rot", W))
    np.testing.assert_allclose(a, b, atol=0.5)


def test_compressed_without_codec_is_a_clear_error(tmp_path):
    files = _series(tmp_path / "T1V")
    ds = pydicom.dcmread(files[0])
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(files[0], enforce_file_format=True)
    with pytest.raises(ImageError, match=r"cannot decode pixels of .*IM0001.dcm \(transfer syntax 1.2.840.10008.1.2.4.91"):
        read_volume(tmp_path / "T1V", W)


def test_multiframe_without_functional_groups_is_refused_clearly(tmp_path):
    """A classic MR file given 3 frames has nothing that places them: refused, naming the fix.
    (Real enhanced MR, with functional groups, is read: tests/io/test_dicom_real.py.)"""
    files = _series(tmp_path / "T1V")
    for f in files[1:]:
        f.unlink()
    ds = pydicom.dcmread(files[0])
    arr = np.stack([ds.pixel_array] * 3)
    ds.NumberOfFrames = 3
    ds.PixelData = arr.tobytes()
    ds.save_as(files[0])
    with pytest.raises(ImageError, match=r"IM0001.dcm holds 3 frames but no per-frame functional groups \(a multi-frame MR Image Storage file.*convert the series to NIfTI"):
        read_volume(tmp_path / "T1V", W)


def test_error_messages_carry_no_dicom_identity(tmp_path):
    files = _series(tmp_path / "T1V")
    for f in files:
        ds = pydicom.dcmread(f)
        ds.PatientName, ds.PatientBirthDate, ds.PatientID = "Doe^Jane", "19500101", "MRN-123456"
        ds.save_as(f)
    files[4].unlink()
    with pytest.raises(ImageError) as exc:
        read_volume(tmp_path / "T1V", W)
    for secret in ("Doe", "Jane", "19500101", "MRN-123456"):
        assert secret not in str(exc.value)
