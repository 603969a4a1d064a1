"""Tests of src/dlmvi/io/images.py on hostile or inconsistent NIfTI headers.

Policy under test (documented in ``_check_nifti_transforms`` and ``itk_transform``): when qform
and sform both apply and disagree by more than XFORM_ATOL_MM (1 mm) at any corner of the volume
the file is refused; within that tolerance ITK's choice is used (the sform when it is
orthonormal and its code is 1, or no qform is set, or it equals the qform within 1e-4; else the
qform). A sheared direction is refused. A lying shape is refused before anything is allocated,
and data beyond the shape (a gzip bomb) is never decompressed. Header extensions are read; a
4-D file is a list of volumes to choose from.
"""

import gzip
import tracemalloc
from pathlib import Path

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


def test_disagreement_below_one_mm_is_read_with_itk_choice_and_above_is_refused(tmp_path):
    assert XFORM_ATOL_MM == 1.0
    # 0.6 mm: rounding-scale, read with the scanner sform (code 1), as ITK does
    p = _save(tmp_path / "a.nii.gz", _affine(), 1, _affine(origin=(-8.6, -10.0, 0.0)), 1)
    np.testing.assert_allclose(read_volume(p, W, reorient=False).GetOrigin(), (8.6, 10.0, 0.0), atol=1e-4)
    # 1.5 mm: a different placement, refused naming both transforms and the distance
    p = _save(tmp_path / "b.nii.gz", _affine(), 1, _affine(origin=(-9.5, -10.0, 0.0)), 1)
    with pytest.raises(ImageError, match=r"qform \(code 1\) and sform \(code 1\) place the volume differently "
                       r"\(up to 1.50 mm apart; tolerance 1.0 mm\). ITK would silently use the sform"):
        read_volume(p, W)


def test_itk_rule_for_an_aligned_sform(tmp_path):
    """sform code 2 (aligned): ITK takes it only when it equals the qform within 1e-4 (the same
    transform at higher precision), else the qform."""
    from dlmvi.io.images import itk_transform

    same = _save(tmp_path / "same.nii.gz", _affine(), 1, _affine(), 2)
    assert itk_transform(nib.load(same).header)[0] == "sform"
    off = _save(tmp_path / "off.nii.gz", _affine(), 1, _affine(origin=(-8.3, -10.0, 0.0)), 2)
    assert itk_transform(nib.load(off).header)[0] == "qform"
    assert read_volume(off, W, reorient=False).GetOrigin() == pytest.approx((8.0, 10.0, 0.0), abs=1e-4)
    only_s = _save(tmp_path / "s.nii.gz", _affine(), 0, _affine(origin=(-8.3, -10.0, 0.0)), 2)
    assert itk_transform(nib.load(only_s).header)[0] == "sform"


def test_no_transform_is_read_like_itk(tmp_path):
    """Neither qform nor sform (ANALYZE-style): voxel sizes, origin 0, identity direction."""
    p = _save(tmp_path / "n.nii.gz", _affine(), 0, _affine(), 0)
    img = read_volume(p, W, reorient=False)
    ref = sitk.ReadImage(str(p))
    np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(img.GetSpacing(), (2.0, 2.0, 5.0))
    np.testing.assert_allclose(img.GetDirection(), ref.GetDirection(), atol=1e-6)


def test_header_extensions_are_read(tmp_path):
    data = np.arange(np.prod(SHAPE_XYZ), dtype=np.int16).reshape(SHAPE_XYZ)
    img = nib.Nifti1Image(data, _affine())
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"converted by a tool that writes a comment"))
    img.header.extensions.append(nib.nifti1.Nifti1Extension(4, b"<AFNI_attributes></AFNI_attributes>"))
    for name in ("ext.nii.gz", "ext.nii"):
        nib.save(img, str(tmp_path / name))
        assert len(nib.load(tmp_path / name).header.extensions) == 2
        out = read_volume(tmp_path / name, W, reorient=False)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(out).transpose(2, 1, 0), data)


def _example4d():
    p = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"
    if not p.is_file():
        pytest.skip("nibabel's test data (example4d.nii.gz) is not installed")
    return p


def test_nibabel_example4d_with_extensions_lists_its_volumes_and_reads_the_chosen_one():
    p = _example4d()
    assert len(nib.load(p).header.extensions) == 2 and nib.load(p).shape == (128, 96, 24, 2)
    with pytest.raises(ImageError, match=r"patient P007, T1V: .*example4d.nii.gz \(4-D NIfTI\) holds 2 volumes "
                       r"\(told apart by 4th dimension\): volume 1; volume 2; say which one to read"):
        read_volume(p, W)
    info = {}
    img = read_volume(p, W, volume="volume 2", info=info)
    assert info == {"volumes": ["volume 1", "volume 2"], "chosen": "volume 2", "key": "4th dimension"}
    ref = sitk.ReadImage(str(p))
    ref = sitk.DICOMOrient(sitk.Extract(ref, [*ref.GetSize()[:3], 0], [0, 0, 0, 1]), "LPS")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(ref))
    np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin(), atol=0.01)


def test_4d_nifti_with_dcm2niix_bval_is_chosen_by_b_value(tmp_path):
    data = np.stack([np.full(SHAPE_XYZ, v, np.int16) for v in (100, 60, 20)], axis=-1)
    nib.save(nib.Nifti1Image(data, _affine()), str(tmp_path / "DWI.nii.gz"))
    (tmp_path / "DWI.bval").write_text("0 50 800\n")
    arr = sitk.GetArrayFromImage(read_volume(tmp_path / "DWI.nii.gz", W, volume="highest b"))
    assert np.unique(arr).tolist() == [20.0]
    arr = sitk.GetArrayFromImage(read_volume(tmp_path / "DWI.nii.gz", W, volume="b 50"))
    assert np.unique(arr).tolist() == [60.0]
