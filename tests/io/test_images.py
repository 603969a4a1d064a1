import gzip
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dlmvi.errors import ImageError
from dlmvi.io.images import Where, read_volume, same_grid
from factories import write_nifti


def test_nifti_is_reoriented_to_lps(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)  # (z, y, x), RAS on disk
    p = write_nifti(tmp_path / "a.nii.gz", arr)
    import SimpleITK as sitk

    img = read_volume(p)
    out = sitk.GetArrayFromImage(img)
    # RAS -> LPS flips x (R->L) and y (A->P); z stays inferior->superior.
    np.testing.assert_array_equal(out, arr[:, ::-1, ::-1])
    np.testing.assert_allclose(img.GetSpacing(), (2.0, 2.0, 5.0))
    np.testing.assert_allclose(np.array(img.GetDirection()).reshape(3, 3), np.eye(3), atol=1e-6)


def test_pydicom_mr_test_file_values_match(tmp_path):
    src = get_testdata_file("MR_small.dcm")
    folder = tmp_path / "T1"
    folder.mkdir()
    shutil.copy(src, folder / "IM0001")
    (folder / "README.txt").write_text("notes")  # not DICOM: ignored
    (folder / ".DS_Store").write_bytes(b"\0\1")
    import SimpleITK as sitk

    img = read_volume(folder, reorient=False)
    ds = pydicom.dcmread(src)
    expected = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    np.testing.assert_allclose(sitk.GetArrayFromImage(img)[0], expected)
    assert img.GetSpacing()[:2] == pytest.approx((float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0])))


def test_truncated_dicom_is_named(tmp_path):
    data = open(get_testdata_file("MR_small.dcm"), "rb").read()
    folder = tmp_path / "T1"
    folder.mkdir()
    (folder / "IM0001").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"patient P1, T1: .*IM0001"):
        read_volume(folder, Where("P1", "T1"))


def test_empty_dicom_folder(tmp_path):
    (tmp_path / "T1").mkdir()
    with pytest.raises(ImageError, match="holds no DICOM image files"):
        read_volume(tmp_path / "T1", Where("P1", "T1"))


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="patient P1, T1D: .* does not exist"):
        read_volume(tmp_path / "nope.nii.gz", Where("P1", "T1D"))


def test_not_a_nifti(tmp_path):
    p = tmp_path / "T1.nii.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"hello" * 100)
    with pytest.raises(ImageError, match="patient P2, T1: .*T1.nii.gz"):
        read_volume(p, Where("P2", "T1"))


def test_absurd_header_is_refused_before_reading(tmp_path):
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    img.header.set_data_shape((30000, 30000, 30000))
    p = tmp_path / "big.nii"
    raw = img.header.binaryblock + b"\0" * 4 + np.zeros(8, np.int16).tobytes()
    p.write_bytes(raw)
    with pytest.raises(ImageError, match="refused before reading"):
        read_volume(p, Where("P3", "T1"))


def test_same_grid_names_the_difference(tmp_path):
    a = read_volume(write_nifti(tmp_path / "a.nii.gz", np.zeros((4, 5, 6), np.int16)), reorient=False)
    b = read_volume(write_nifti(tmp_path / "b.nii.gz", np.zeros((4, 5, 7), np.int16)), reorient=False)
    assert same_grid(a, a) is None
    assert "size" in same_grid(b, a)
    c = read_volume(write_nifti(tmp_path / "c.nii.gz", np.zeros((4, 5, 6), np.int16), spacing=(2.0, 2.0, 5.5)), reorient=False)
    assert "spacing" in same_grid(c, a)
