"""``dlmvi validate``: each bad input gives a problem naming patient, sequence and file."""

import shutil

import nibabel as nib
import numpy as np
import pytest

from dlmvi.cli import run_cli
from dlmvi.cohort.validate import validate_cohort
from factories import write_nifti


def errors(problems):
    return [str(p) for p in problems if p.level == "error"]


def test_clean_cohort_has_no_problem(small_cohort):
    assert validate_cohort(small_cohort) == []


def _mask(root, pid="P001", seq="T1V"):
    return root / "images" / pid / f"{seq}_roi.nii.gz"


def test_missing_sequence(small_cohort):
    (small_cohort / "images" / "P001" / "T1D.nii.gz").unlink()
    errs = errors(validate_cohort(small_cohort))
    assert errs == ["ERROR: patient P001, T1D: sequence T1D is missing (expected images/P001/T1D.nii.gz or the DICOM folder images/P001/T1D/)"]


def test_missing_sequence_not_used_is_fine(small_cohort):
    (small_cohort / "images" / "P001" / "T1D.nii.gz").unlink()
    (small_cohort / "images" / "P001" / "T1D_roi.nii.gz").unlink()
    assert errors(validate_cohort(small_cohort, sequences=("T1", "T1V"))) == []


def test_missing_mask(small_cohort):
    _mask(small_cohort).unlink()
    (err,) = errors(validate_cohort(small_cohort))
    assert "patient P001, T1V: no tumour mask (P001/T1V_roi.nii.gz)" in err


def test_empty_mask(small_cohort):
    write_nifti(_mask(small_cohort), np.zeros((12, 40, 48), np.uint8))
    (err,) = errors(validate_cohort(small_cohort))
    assert "patient P001, T1V: mask" in err and "is empty" in err and "T1V_roi.nii.gz" in err


def test_mask_shape_off_grid(small_cohort):
    write_nifti(_mask(small_cohort), np.ones((12, 40, 47), np.uint8))
    (err,) = errors(validate_cohort(small_cohort))
    assert "not on the image grid" in err and "size (47, 40, 12) differs from the image's (48, 40, 12)" in err


def test_mask_affine_off_grid(small_cohort):
    p = _mask(small_cohort)
    img = nib.load(p)
    aff = img.affine.copy()
    aff[0, 3] += 2.0  # one voxel
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), aff), p)
    (err,) = errors(validate_cohort(small_cohort))
    assert "origin is shifted" in err and "re-export the mask on the image grid" in err


def test_mask_labels_other_than_0_1_warn(small_cohort):
    p = _mask(small_cohort)
    m = np.asarray(nib.load(p).dataobj).copy()
    m[m > 0] = 2
    nib.save(nib.Nifti1Image(m, nib.load(p).affine), p)
    probs = validate_cohort(small_cohort)
    assert errors(probs) == []
    (w,) = [str(p) for p in probs if p.level == "warning"]
    assert "patient P001, T1V: mask" in w and "labels [2.0]" in w


def test_nan_voxels(small_cohort):
    arr = np.full((12, 40, 48), 100.0, np.float32)
    arr[3, 4, 5] = np.nan
    write_nifti(small_cohort / "images" / "P002" / "T1.nii.gz", arr)
    (err,) = errors(validate_cohort(small_cohort))
    assert "patient P002, T1:" in err and "1 NaN or infinite voxels" in err


def test_duplicate_and_unmatched_ids(small_cohort):
    csv = small_cohort / "clinical.csv"
    lines = csv.read_text().splitlines()
    lines.append(lines[1])  # duplicate P000
    lines.append(lines[2].replace("P001", "P999", 1))  # row without images
    csv.write_text("\n".join(lines) + "\n")
    shutil.copytree(small_cohort / "images" / "P002", small_cohort / "images" / "X123")  # images without row
    errs = errors(validate_cohort(small_cohort))
    assert any("patient P000" in e and "duplicate patient_id" in e for e in errs)
    assert any("1 patient(s) in clinical.csv have no images/ folder: P999" in e for e in errs)
    assert any("1 image folder(s) have no row in clinical.csv: X123" in e for e in errs)


def test_invalid_grade_and_negative_follow_up(small_cohort):
    csv = small_cohort / "clinical.csv"
    text = csv.read_text().replace("P001,2015,M1", "P001,2015,M7")
    text = text.replace(",13.0,1\n", ",-13.0,1\n")  # P001's rfs_months
    csv.write_text(text)
    errs = errors(validate_cohort(small_cohort))
    assert any("patient P001: mvi_grade: invalid mvi_grade 'M7'" in e for e in errs)
    assert any("patient P001: rfs_months: negative follow-up -13" in e for e in errs)


def test_box_outside_image(small_cohort):
    for seq in ("T1", "T1V", "T1D"):
        _mask(small_cohort, "P003", seq).unlink()
    (small_cohort / "rois.csv").write_text(
        "patient_id,sequence,slice,x0,y0,x1,y1\n"
        + "".join(f"P003,{s},{z},10,10,20,20\n" for s in ("T1", "T1V") for z in (5, 6, 7))
        + "".join(f"P003,T1D,{z},10,10,60,20\n" for z in (5, 6, 7))
    )
    (err,) = errors(validate_cohort(small_cohort))
    assert "patient P003, T1D: box slice 5, (10,10)-(60,20) lies outside the image" in err


def test_cli_exit_codes(small_cohort, capsys):
    assert run_cli(["validate", str(small_cohort)]) == 0
    _mask(small_cohort).unlink()
    assert run_cli(["validate", str(small_cohort)]) == 1
    out = capsys.readouterr().out
    assert "ERROR: patient P001, T1V" in out and "1 error(s)" in out


def test_cli_missing_folder_is_an_error_not_a_traceback(tmp_path, capsys):
    assert run_cli(["validate", str(tmp_path / "nope")]) == 1
    assert "is not a folder" in capsys.readouterr().out


# ---------------------------------------------------------------- inputs that go wrong later


def test_inverted_mask_is_an_error_naming_the_file(small_cohort):
    p = _mask(small_cohort, "P002", "T1D")
    m = np.asarray(nib.load(p).dataobj)
    nib.save(nib.Nifti1Image((m == 0).astype(np.uint8), nib.load(p).affine), p)
    (err,) = errors(validate_cohort(small_cohort))
    # the tumour ellipsoid (radii 2.5, 6, 8 voxels) is 2% of the 12 x 40 x 48 volume
    assert err == (f"ERROR: patient P002, T1D: the mask covers 98% of the volume including every corner: it looks "
                   "inverted (background = 1, tumour = 0), so the crop would be the whole image - invert it "
                   f"(tumour = 1) [{p}]")


def test_a_large_tumour_mask_is_not_taken_for_an_inverted_one(small_cohort):
    """A tumour filling most of a tightly cropped volume still leaves the corners out."""
    p = _mask(small_cohort, "P002", "T1D")
    z, y, x = np.ogrid[:12, :40, :48]
    big = (((z - 5.5) / 7) ** 2 + ((y - 19.5) / 24) ** 2 + ((x - 23.5) / 29) ** 2 <= 1).astype(np.uint8)
    assert big.mean() > 0.5 and not big[0, 0, 0]
    write_nifti(p, big)
    assert errors(validate_cohort(small_cohort)) == []


@pytest.mark.parametrize("value, what", [(0.0, "all zero"), (250.0, "all equal to 250")])
def test_blank_or_constant_image_is_an_error(small_cohort, value, what):
    p = small_cohort / "images" / "P004" / "T1.nii.gz"
    write_nifti(p, np.full((12, 40, 48), value, np.float32))
    (err,) = errors(validate_cohort(small_cohort))
    assert err == (f"ERROR: patient P004, T1: the image is {what} (no contrast); the export is blank or failed - "
                   f"re-export it [{p}]")


def test_single_slice_volume_is_an_error_naming_the_need(small_cohort):
    folder = small_cohort / "images" / "P005"
    img, mask = nib.load(folder / "T1V.nii.gz"), nib.load(folder / "T1V_roi.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, 6:7], img.affine), folder / "T1V.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(mask.dataobj)[:, :, 6:7], mask.affine), folder / "T1V_roi.nii.gz")
    (err,) = errors(validate_cohort(small_cohort))
    assert err == (f"ERROR: patient P005, T1V: the volume has 1 axial slice (shape (1, 40, 48)); prepare needs at "
                   "least 3 (3 consecutive key slices) - export the whole series, not a single slice "
                   f"[{folder / 'T1V.nii.gz'}]")


@pytest.mark.parametrize("slices, message", [
    ((5, 6), "rois.csv boxes lie on 2 slice(s) (5, 6); prepare needs boxes on 3 consecutive slices (the key "
             "slices) - add the missing rows"),
    ((4, 6, 7), "rois.csv boxes lie on slices 4, 6, 7, which are not consecutive (gap before slice 6); box 3 "
                "consecutive key slices"),
])
def test_rois_boxes_on_too_few_or_non_consecutive_slices(small_cohort, slices, message):
    for seq in ("T1", "T1V", "T1D"):
        _mask(small_cohort, "P003", seq).unlink()
    rows = [f"P003,{s},{z},10,10,20,20\n" for s in ("T1", "T1V") for z in (5, 6, 7)]
    rows += [f"P003,T1D,{z},10,10,20,20\n" for z in slices]
    (small_cohort / "rois.csv").write_text("patient_id,sequence,slice,x0,y0,x1,y1\n" + "".join(rows))
    (err,) = errors(validate_cohort(small_cohort))
    assert err == f"ERROR: patient P003, T1D: {message} [rois.csv]"
