"""Tests of src/dlmvi/io/images.py on hostile or inconsistent NIfTI headers.

Policy under test (documented in ``_check_nifti_header``): when qform and sform both apply and
disagree by more than XFORM_ATOL_MM at any corner of the volume the file is refused; within
that tolerance ITK's choice is used (the sform when its code is 1, else the qform). A sheared
direction is refused. A lying shape is refused before anything is allocated, and data beyond
the shape (a gzip bomb) is never decompressed.
"""

import gzip
import tracemalloc

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from dlmvi.errors import ImageError
from dlmvi.io.images import XFORM_ATOL_MM, Where, read_volume

SHAPE_XYZ = (8, 10, 6)
W = Where("P007", "T1V")


def _affine(origin=(-8.0, -10.0, 0.0), spacing=(2.0, 2.0, 5.0)):
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = origin
    return a


def _save(path, qform, qcode, sform, scode, data=None):
    data = np.arange(np.prod(SHAPE_XYZ), dtype=np.int16).reshape(SHAPE_XYZ) if data is None else data
    img = nib.Nifti1Image(data, None)
    img.set_qform(qform, code=qcode)
    img.set_sform(sform, code=scode)
    nib.save(img, str(path))
    return path


def test_qform_and_sform_disagreeing_are_refused(tmp_path):
    shifted = _affine(origin=(22.0, -10.0, 0.0))  # 30 mm to the patient's left
    p = _save(tmp_path / "T1V.nii.gz", _affine(), 1, shifted, 2)
    with pytest.raises(ImageError, match=r"patient P007, T1V: .*T1V.nii.gz: its qform \(code 1\) and sform "
                       r"\(code 2\) place the volume differently \(up to 30.00 mm apart.*silently use the qform"):
        read_volume(p, W)


def test_qform_sform_float_noise_is_read_with_itk_choice(tmp_path):
    # A 0.01 mm difference (quaternion rounding, orthonormalised cosines) is below the tolerance.
    assert XFORM_ATOL_MM > 0.01
    s = _affine(origin=(-8.01, -10.0, 0.0))
    p = _save(tmp_path / "a.nii.gz", _affine(), 1, s, 1)
    img = read_volume(p, W, reorient=False)
    # sform code 1 (scanner) wins in ITK; RAS (-8.01, -10, 0) is LPS (8.01, 10, 0)
    np.testing.assert_allclose(img.GetOrigin(), (8.01, 10.0, 0.0), atol=1e-4)
    p = _save(tmp_path / "b.nii.gz", _affine(), 1, s, 2)
    np.testing.assert_allclose(read_volume(p, W, reorient=False).GetOrigin(), (8.0, 10.0, 0.0), atol=1e-4)


def test_single_transform_is_used_whatever_the_other_holds(tmp_path):
    # sform code 0: its (stale) content is ignored, no disagreement.
    p = _save(tmp_path / "q.nii.gz", _affine(), 1, _affine(origin=(100.0, 0, 0)), 0)
    np.testing.assert_allclose(read_volume(p, W, reorient=False).GetOrigin(), (8.0, 10.0, 0.0), atol=1e-4)
    p = _save(tmp_path / "s.nii.gz", _affine(), 0, _affine(origin=(100.0, 0, 0)), 2)
    np.testing.assert_allclose(read_volume(p, W, reorient=False).GetOrigin(), (-100.0, 0.0, 0.0), atol=1e-4)


def test_non_orthonormal_direction_is_a_clear_error(tmp_path):
    sheared = _affine()
    sheared[0, 1] = 0.5  # x moves 0.5 mm per row: axes at ~14 degrees from orthogonal
    p = _save(tmp_path / "T1V.nii.gz", None, 0, sheared, 2)
    with pytest.raises(ImageError, match=r"patient P007, T1V: .*non-orthonormal direction matrix \(axes skewed "
                       r"by up to 14.036 degrees: a sheared sform\).*Resample"):
        read_volume(p, W)
    # the same shear next to a valid qform: the two transforms disagree, refused as such
    p = _save(tmp_path / "both.nii.gz", _affine(), 1, sheared, 2)
    with pytest.raises(ImageError, match="qform .* and sform .* place the volume differently"):
        read_volume(p, W)


def _gzip_bomb(path, gib: float = 1.0) -> int:
    """A valid small .nii.gz followed by ``gib`` GiB of zeros in extra gzip members."""
    data = np.arange(np.prod(SHAPE_XYZ), dtype=np.int16).reshape(SHAPE_XYZ)
    nib.save(nib.Nifti1Image(data, _affine()), str(path))
    member = gzip.compress(b"\0" * (16 * 1024**2), compresslevel=9)
    with open(path, "ab") as f:
        for _ in range(int(gib * 64)):
            f.write(member)
    return path.stat().st_size


def test_gzip_bomb_beyond_the_shape_is_never_decompressed(tmp_path):
    p = tmp_path / "bomb.nii.gz"
    size = _gzip_bomb(p)
    assert size < 2_000_000  # ~1 MB on disk, 1 GiB inflated
    tracemalloc.start()
    try:
        img = read_volume(p, W, reorient=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024**2  # Python/numpy allocations while reading: far below 1 GiB
    arr = sitk.GetArrayFromImage(img)  # (z, y, x)
    np.testing.assert_array_equal(arr.transpose(2, 1, 0), np.arange(480).reshape(SHAPE_XYZ))


@pytest.mark.parametrize("name", ["T1.nii.gz", "T1.nii"])
def test_header_larger_than_the_file_is_refused_before_allocating(tmp_path, name):
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), _affine())
    img.header.set_data_shape((512, 512, 400))  # 105 M voxels, 210 MB of int16: under MAX_VOXELS
    raw = img.header.binaryblock + b"\0" * 4 + np.zeros(64, np.int16).tobytes()
    p = tmp_path / name
    p.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match=r"patient P007, T1V: .*declares shape \(512, 512, 400\) "
                           r"\(209715552 bytes .*refused before reading: the file is truncated"):
            read_volume(p, W)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 1024**2


def test_nifti2_is_named_as_such(tmp_path):
    p = tmp_path / "T1V.nii.gz"
    nib.save(nib.Nifti2Image(np.zeros(SHAPE_XYZ, np.int16), _affine()), str(p))
    with pytest.raises(ImageError, match=r"patient P007, T1V: .*T1V.nii.gz is a NIfTI-2 file.*save it as NIfTI-1"):
        read_volume(p, W)
