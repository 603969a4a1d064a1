"""Several volumes in one series, in a cohort: volumes.toml says which volume is which sequence.

A dynamic series holding three phases (temporal positions 1-3) and a DWI series holding
b = 0, 50, 800 (s/mm^2) are written with pydicom next to NIfTI masks; the tests state which
volume each sequence reads and what validate reports.
"""

from __future__ import annotations

import numpy as np
import pytest

from dlmvi.cohort.cohort import Cohort
from dlmvi.cohort.validate import validate_cohort
from dlmvi.errors import CohortError, ImageError
from dlmvi.io.dicom_write import write_multivolume_series
from factories import SPACING, tumour_volume, write_cohort, write_nifti

PHASES = {"T1A": 1, "T1V": 2, "T1D": 3}


#: LPS position of the first voxel of factories' NIfTI grid (RAS affine diag(2, 2, 5), offset
#: (-48, -40, 0)): its far corner (47, 39, 0) is RAS (46, 38, 0) = LPS (-46, -38, 0).
ORIGIN_LPS = (-46.0, -38.0, 0.0)


def _volumes():
    """(phase arrays, b-value arrays) in LPS order: distinct seeded volumes on the grid of the
    NIfTI masks (factories' volumes flipped in x and y, as the reader returns them)."""
    phases = [tumour_volume(seed=10 + k)[0][:, ::-1, ::-1] for k in range(3)]
    dwi = [tumour_volume(seed=20 + k)[0][:, ::-1, ::-1] for k in range(3)]
    return phases, dwi


def _cohort(tmp_path, volumes_toml: str | None = None):
    root = write_cohort(tmp_path / "c", n=2, sequences=("T1",))
    phases, dwi = _volumes()
    _, mask = tumour_volume()
    origin = ORIGIN_LPS
    for pid in ("P000", "P001"):
        folder = root / "images" / pid
        write_multivolume_series(phases, SPACING, origin, folder / "DYN", "DYN 3 phases",
                                 [{"TemporalPositionIdentifier": t, "NumberOfTemporalPositions": 3,
                                   "AcquisitionTime": f"1015{10 * t:02d}"} for t in (1, 2, 3)],
                                 patient_id=pid, series_number=5)
        write_multivolume_series(dwi, SPACING, origin, folder / "DWI", "DWI b0 b50 b800",
                                 [{"DiffusionBValue": b} for b in (0.0, 50.0, 800.0)],
                                 patient_id=pid, series_number=6)
        for seq in ("DWI", *PHASES):
            write_nifti(folder / f"{seq}_roi.nii.gz", mask)
    if volumes_toml is not None:
        (root / "volumes.toml").write_text(volumes_toml)
    return root


MAPPING = """
[T1A]
source = "DYN"
volume = "temporal position 1"
[T1V]
source = "DYN"
volume = "temporal position 2"
[T1D]
source = "DYN"
volume = "temporal position 3"
"""


def test_dynamic_series_is_split_into_the_three_phases(tmp_path):
    root = _cohort(tmp_path, MAPPING)
    phases, _ = _volumes()
    patient = Cohort.from_folder(root).patients["P000"]
    assert {s: (patient.sources[s].image.name, patient.sources[s].volume) for s in PHASES} == {
        "T1A": ("DYN", "temporal position 1"), "T1V": ("DYN", "temporal position 2"),
        "T1D": ("DYN", "temporal position 3")}
    notes: list[str] = []
    for seq, t in PHASES.items():
        ls = patient.load(seq, notes=notes)
        np.testing.assert_array_equal(ls.image, phases[t - 1].astype(np.float32))
    assert len(notes) == 3
    assert notes[1].startswith("patient P000, T1V: ") and notes[1].endswith(
        "holds 3 volumes (temporal position 1 (12 slices, acquired 10:15:10); temporal position 2 (12 slices, "
        "acquired 10:15:20); temporal position 3 (12 slices, acquired 10:15:30)); reading temporal position 2 "
        f"(as {root / 'volumes.toml'} says)")


def test_dwi_defaults_to_the_highest_b_value_and_says_so(tmp_path):
    root = _cohort(tmp_path, MAPPING)
    _, dwi = _volumes()
    problems = validate_cohort(root, sequences=("T1", "T1V", "DWI"))
    assert [p.level for p in problems] == ["warning"] * 4
    msg = next(str(p) for p in problems if p.sequence == "DWI" and p.patient_id == "P000")
    assert msg == (f"WARNING: patient P000, DWI: {root / 'images' / 'P000' / 'DWI'} holds 3 volumes (b 0 (12 slices); "
                   "b 50 (12 slices); b 800 (12 slices)); reading b 800 (the highest b-value, the default for DWI) "
                   f"[{root / 'images' / 'P000' / 'DWI'}]")
    ls = Cohort.from_folder(root).patients["P000"].load("DWI", notes=[])
    np.testing.assert_array_equal(ls.image, dwi[2].astype(np.float32))


def test_per_patient_volumes_toml_overrides_the_cohort_one(tmp_path):
    root = _cohort(tmp_path, 'DWI = "b 50"\n' + MAPPING)
    (root / "images" / "P001" / "volumes.toml").write_text('DWI = "b 0"\n')
    _, dwi = _volumes()
    cohort = Cohort.from_folder(root)
    np.testing.assert_array_equal(cohort.patients["P000"].load("DWI", notes=[]).image, dwi[1].astype(np.float32))
    np.testing.assert_array_equal(cohort.patients["P001"].load("DWI", notes=[]).image, dwi[0].astype(np.float32))
    # the choice file is part of the source's fingerprint: editing it invalidates a cache
    assert root / "images" / "P001" / "volumes.toml" in cohort.patients["P001"].sources["DWI"].files()


def test_multivolume_series_without_a_mapping_lists_the_volumes_and_the_line_to_add(tmp_path):
    root = _cohort(tmp_path)
    for pid in ("P000", "P001"):
        (root / "images" / pid / "DYN").rename(root / "images" / pid / "T1V")
    errs = [str(p) for p in validate_cohort(root, sequences=("T1", "T1V")) if p.level == "error"]
    series = root / "images" / "P000" / "T1V"
    assert errs == [
        f"ERROR: patient P000, T1V: {series} holds 3 volumes (told apart by TemporalPositionIdentifier): "
        "temporal position 1 (12 slices, acquired 10:15:10); temporal position 2 (12 slices, acquired 10:15:20); "
        "temporal position 3 (12 slices, acquired 10:15:30). Say which volume is T1V: add the line "
        f"T1V = \"temporal position 1\" (or another label above) to {root / 'volumes.toml'}, or to "
        f"{root / 'images' / 'P000' / 'volumes.toml'} for this patient only [{series}]",
        errs[1]]
    assert errs[1].startswith("ERROR: patient P001, T1V: ")
    (root / "volumes.toml").write_text('T1V = "temporal position 2"\n')
    assert [p.level for p in validate_cohort(root, sequences=("T1", "T1V"))] == ["warning", "warning"]


def test_a_choice_that_matches_nothing_is_an_error_listing_the_volumes(tmp_path):
    root = _cohort(tmp_path, 'DWI = "b 1000"\n')
    patient = Cohort.from_folder(root).patients["P000"]
    with pytest.raises(ImageError, match=r"patient P000, DWI: .*the volume choice 'b 1000' matches none of its 3 "
                       r"volume\(s\): b 0 \(12 slices\); b 50 \(12 slices\); b 800 \(12 slices\)\. Say which volume is DWI"):
        patient.load("DWI")


@pytest.mark.parametrize("text, match", [
    ('T1X = "b 800"', r"unknown sequence 'T1X'"),
    ('[T1A]\nvolume = "phase two"', r"\[T1A\] volume choice 'phase two': cannot read 'phase two'"),
    ('[T1A]\nsource = "../P001/DYN"', r"\[T1A\] source must be the name of a series folder"),
    ('[T1A]\nvolumes = "b 800"', r"\[T1A\] has unknown key\(s\) volumes"),
    ("T1A = ", r"invalid TOML"),
])
def test_bad_volumes_toml_is_named(tmp_path, text, match):
    root = _cohort(tmp_path, text)
    with pytest.raises(CohortError, match=rf"volumes.toml: .*{match}"):
        Cohort.from_folder(root)
