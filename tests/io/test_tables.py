import numpy as np
import pytest

from dlmvi.errors import ClinicalTableError, CohortWarning, ConfigError
from dlmvi.io.tables import ColumnMap, parse_number, read_clinical, read_rois


@pytest.mark.parametrize(
    "raw, value, noted",
    [("12.3", 12.3, False), ("12,3", 12.3, False), ("<0.5", 0.5, True), (">1000", 1000.0, True),
     ("", np.nan, False), ("NA", np.nan, False), ("1e3", 1000.0, False), (" 7 ", 7.0, False)],
)
def test_parse_number_policy(raw, value, noted):
    v, note = parse_number(raw)
    assert (np.isnan(v) and np.isnan(value)) or v == pytest.approx(value)
    assert (note is not None) == noted


@pytest.mark.parametrize("raw", ["abc", "1.234,5", "1,2,3", "12 U/L"])
def test_parse_number_refuses(raw):
    with pytest.raises(ValueError):
        parse_number(raw)


def _write(tmp_path, text, name="clinical.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_read_clinical_values_and_ids(tmp_path):
    p = _write(tmp_path, "patient_id,cohort,mvi_grade,afp,alt,extra\n007,2015,M1,\"12,3\",<5,x\n008,2015,m0,4,40,y\n")
    with pytest.warns(CohortWarning, match="patient 007, alt: censored value '<5'"):
        t = read_clinical(p)
    df = t.frame
    assert df["patient_id"].tolist() == ["007", "008"]  # leading zeros kept
    assert df["afp"].tolist() == [12.3, 4.0]
    assert df["alt"].tolist() == [5.0, 40.0]
    assert df["mvi_grade"].tolist() == ["M1", "M0"]
    assert df["extra"].tolist() == ["x", "y"]  # extra columns are kept
    assert t.errors == []


def test_read_clinical_collects_errors_naming_patient_and_column(tmp_path):
    p = _write(tmp_path, "patient_id,cohort,mvi_grade,afp,rfs_months,os_event\n"
               "A,2015,M3,abc,-2,2\nA,2015,M0,1,1,1\n")
    t = read_clinical(p)
    msgs = [f"{pid}|{col}|{m}" for _, pid, col, m in t.errors]
    assert any("A|patient_id|duplicate patient_id (rows 2, 3)" in m for m in msgs)
    assert any("A|mvi_grade|invalid mvi_grade 'M3'" in m for m in msgs)
    assert any("A|afp|not a number: 'abc'" in m for m in msgs)
    assert any("A|rfs_months|negative follow-up -2" in m for m in msgs)
    assert any("A|os_event|value 2 is not 0 or 1" in m for m in msgs)
    with pytest.raises(ClinicalTableError, match="patient A, column patient_id: duplicate"):
        read_clinical(p, strict=True)


def test_missing_required_column(tmp_path):
    p = _write(tmp_path, "patient_id,mvi_grade\nA,M0\n")
    with pytest.raises(ClinicalTableError, match="missing required column.*cohort"):
        read_clinical(p)


def test_column_map_renames_and_converts_units(tmp_path):
    cfg = _write(tmp_path, '[columns]\nID = "patient_id"\n"AFP (IU/ml)" = "afp"\n[units]\nafp = "IU/mL"\nalt = "ukat/L"\n', "map.toml")
    p = _write(tmp_path, "ID,cohort,mvi_grade,AFP (IU/ml),alt\n1,2015,M0,10,0.5\n")
    t = read_clinical(p, ColumnMap.from_toml(cfg))
    assert t.frame["afp"].iat[0] == pytest.approx(12.1)
    assert t.frame["alt"].iat[0] == pytest.approx(30.0)


def test_unknown_unit_is_refused(tmp_path):
    cfg = _write(tmp_path, '[units]\nafp = "furlongs"\n', "map.toml")
    with pytest.raises(ConfigError, match="unit 'furlongs' for column 'afp'"):
        ColumnMap.from_toml(cfg)


def test_id_width_restores_leading_zeros(tmp_path):
    cfg = _write(tmp_path, "id_width = 3\n", "map.toml")
    p = _write(tmp_path, "patient_id,cohort,mvi_grade\n7,2015,M0\n")
    assert read_clinical(p, ColumnMap.from_toml(cfg)).frame["patient_id"].tolist() == ["007"]


def test_read_rois(tmp_path):
    p = _write(tmp_path, "patient_id,sequence,slice,x0,y0,x1,y1\n007,T1,5,1,2,3,4\n", "rois.csv")
    df = read_rois(p)
    assert df["patient_id"].iat[0] == "007" and df["x1"].iat[0] == 3
    bad = _write(tmp_path, "patient_id,sequence,slice,x0,y0,x1,y1\n007,T1,five,1,2,3,4\n", "bad.csv")
    with pytest.raises(ClinicalTableError, match="row 2 .*patient 007.*slice is not an integer"):
        read_rois(bad)
