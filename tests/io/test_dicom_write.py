"""Tests of the DICOM series writer (src/dlmvi/io/dicom_write.py)."""

import hashlib

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from dlmvi.errors import ImageError
from dlmvi.io.dicom_write import MR_IMAGE_STORAGE, choose_rescale, write_dicom_series


def _read_sitk(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def volume():
    return np.random.default_rng(0).integers(-200, 3000, size=(7, 20, 30)).astype(np.int16)


def test_int16_round_trip_through_simpleitk(volume, tmp_path):
    files = write_dicom_series(volume, (0.8, 0.9, 5.0), (-10.0, 20.0, 30.5), tmp_path / "S",
                               "T1V", patient_id="P0042")
    assert [f.name for f in files] == [f"IM{k:04d}.dcm" for k in range(1, 8)]
    img = _read_sitk(tmp_path / "S")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), volume)
    np.testing.assert_allclose(img.GetSpacing(), (0.8, 0.9, 5.0))
    np.testing.assert_allclose(img.GetOrigin(), (-10.0, 20.0, 30.5))
    np.testing.assert_allclose(img.GetDirection(), np.eye(3).ravel())


def test_tags_and_no_identifying_data(volume, tmp_path):
    write_dicom_series(volume, (0.8, 0.9, 5.0), (-10.0, 20.0, 30.5), tmp_path / "S", "T1V",
                       patient_id="P0042", study_date="20180312", series_number=3)
    ds = [pydicom.dcmread(p) for p in sorted((tmp_path / "S").iterdir())]
    first, third = ds[0], ds[2]
    assert first.SOPClassUID == MR_IMAGE_STORAGE and first.Modality == "MR"
    assert str(first.PatientName) == "SYNTHETIC^PHANTOM" and first.PatientID == "P0042"
    assert first.PatientBirthDate == "" and first.StudyDate == "20180312"
    assert first.SeriesDescription == "T1V" and first.SeriesNumber == 3
    assert [float(v) for v in first.PixelSpacing] == [0.9, 0.8]  # row, column spacing
    assert float(first.SliceThickness) == 5.0
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in third.ImagePositionPatient] == [-10.0, 20.0, 40.5]
    assert third.InstanceNumber == 3 and first.PixelRepresentation == 1
    assert float(first.RescaleSlope) == 1.0 and float(first.RescaleIntercept) == 0.0
    assert len({d.SOPInstanceUID for d in ds}) == 7
    assert len({d.SeriesInstanceUID for d in ds}) == 1
    np.testing.assert_array_equal(third.pixel_array, volume[2])


def test_deterministic_uids_and_bytes(volume, tmp_path):
    kw = dict(patient_id="P1", entropy="seed0")
    write_dicom_series(volume, (1, 1, 2), (0, 0, 0), tmp_path / "a", "T1", **kw)
    write_dicom_series(volume, (1, 1, 2), (0, 0, 0), tmp_path / "b", "T1", **kw)
    write_dicom_series(volume, (1, 1, 2), (0, 0, 0), tmp_path / "c", "T1", patient_id="P1",
                       entropy="seed1")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    ua = pydicom.dcmread(tmp_path / "a" / "IM0001.dcm")
    uc = pydicom.dcmread(tmp_path / "c" / "IM0001.dcm")
    assert ua.SeriesInstanceUID != uc.SeriesInstanceUID
    # Series of one patient share study and frame of reference; series differ.
    write_dicom_series(volume, (1, 1, 2), (0, 0, 0), tmp_path / "d", "T2", **kw)
    ud = pydicom.dcmread(tmp_path / "d" / "IM0001.dcm")
    assert ud.StudyInstanceUID == ua.StudyInstanceUID
    assert ud.FrameOfReferenceUID == ua.FrameOfReferenceUID
    assert ud.SeriesInstanceUID != ua.SeriesInstanceUID
    assert ua.SeriesInstanceUID.startswith("1.2.826.0.1.3680043.8.498.")


def test_float_volume_uses_uint16_with_rescale(tmp_path):
    vol = np.random.default_rng(1).normal(100.0, 30.0, size=(4, 10, 12))
    stored, slope, intercept, signed = choose_rescale(vol)
    assert stored.dtype == np.uint16 and not signed and stored.max() == 65535
    write_dicom_series(vol, (1, 1, 2), (0, 0, 0), tmp_path / "f", "T2")
    ds = pydicom.dcmread(tmp_path / "f" / "IM0001.dcm")
    assert ds.PixelRepresentation == 0 and float(ds.RescaleSlope) == pytest.approx(slope)
    back = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.abs(back - vol[0]).max() <= slope / 2 + 1e-9
    img = sitk.GetArrayFromImage(_read_sitk(tmp_path / "f"))
    assert np.abs(img - vol).max() <= slope / 2 + 1e-6


def test_explicit_rescale_and_oblique_direction(tmp_path):
    vol = np.arange(3 * 4 * 5, dtype=float).reshape(3, 4, 5) * 2.0 - 20.0
    th = np.deg2rad(30.0)
    direction = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    write_dicom_series(vol, (1.5, 1.5, 3.0), (5.0, -5.0, 10.0), tmp_path / "o", "T1",
                       direction=direction, rescale=(2.0, -20.0))
    ds = pydicom.dcmread(tmp_path / "o" / "IM0002.dcm")
    assert ds.pixel_array[0, 1] == 21  # (value + 20) / 2 for value 22
    img = _read_sitk(tmp_path / "o")
    np.testing.assert_allclose(sitk.GetArrayFromImage(img), vol)
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), direction, atol=1e-5)
    np.testing.assert_allclose(img.GetOrigin(), (5.0, -5.0, 10.0), atol=1e-5)


def test_rewriting_replaces_the_series(volume, tmp_path):
    write_dicom_series(volume, (1, 1, 2), (0, 0, 0), tmp_path / "s", "T1")
    write_dicom_series(volume[:3], (1, 1, 2), (0, 0, 0), tmp_path / "s", "T1")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "IM0001.dcm", "IM0002.dcm", "IM0003.dcm"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "vol, kwargs, message",
    [
        (np.full((2, 3, 3), np.nan), {}, "NaN"),
        (np.zeros((3, 3)), {}, "3-D"),
        (np.zeros((2, 3, 3)), {"rescale": (0.0, 0.0)}, "slope"),
        (np.full((2, 3, 3), 1e6), {"rescale": (1.0, 0.0)}, "uint16"),
    ],
)
def test_bad_input(vol, kwargs, message, tmp_path):
    with pytest.raises(ImageError, match=message):
        write_dicom_series(vol, (1, 1, 1), (0, 0, 0), tmp_path / "bad", "T1", **kwargs)
    assert not (tmp_path / "bad").exists()
