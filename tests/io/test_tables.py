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


# ---- one reader for hospital tables (issue 15) ---------------------------------------------

PLAIN = "patient_id,cohort,mvi_grade,afp\n001,2015,M1,12.5\n002,2015,M0,3\n003,2018,M2,250\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_utf8_with_or_without_bom_and_utf16_with_bom_are_read(tmp_path, encoding):
    p = tmp_path / "clinical.csv"
    p.write_bytes(PLAIN.encode(encoding))  # Python's "utf-16" writes a byte-order mark
    df = read_clinical(p).frame
    assert df["patient_id"].tolist() == ["001", "002", "003"]
    assert df["afp"].tolist() == [12.5, 3.0, 250.0]
    assert df["mvi_grade"].tolist() == ["M1", "M0", "M2"]


def test_another_encoding_names_the_row_and_says_save_as_utf8(tmp_path):
    p = tmp_path / "clinical.csv"
    p.write_bytes("patient_id;cohort;mvi_grade;ville\n001;2015;M1;Paris\n002;2015;M0;Besançon\n".encode("latin-1"))
    with pytest.raises(ClinicalTableError, match=r"clinical.csv: row 3 is not UTF-8 text \(byte 0xe7.*save the table as UTF-8"):
        read_clinical(p)
    p.write_bytes(PLAIN.encode("utf-16-le"))  # no byte-order mark
    with pytest.raises(ClinicalTableError, match="row 1 holds NUL bytes.*save the table as UTF-8"):
        read_clinical(p)


def test_european_excel_export(tmp_path):
    """';' separator, decimal commas, censored values, grades 0/1/2, blank trailing rows."""
    p = tmp_path / "clinical.csv"
    text = ("ID;cohort;grade;AFP (IU/ml);alt\n"
            "001;2015;1;12,5;<5\n002;2015;0;>1000;40,0\n003;2018;2;0,8;\n"
            ";;;;\n;;;;\n\n")
    p.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    cmap = tmp_path / "map.toml"
    cmap.write_text('[columns]\nID = "patient_id"\ngrade = "mvi_grade"\n"AFP (IU/ml)" = "afp"\n[units]\nafp = "IU/mL"\n')
    with pytest.warns(CohortWarning, match=r"patient 001, alt: censored value '<5' replaced by its limit \(row 2\)"):
        t = read_clinical(p, ColumnMap.from_toml(cmap))
    assert t.errors == []
    df = t.frame
    assert df["patient_id"].tolist() == ["001", "002", "003"]  # the blank rows are ignored
    assert df["mvi_grade"].tolist() == ["M1", "M0", "M2"]
    np.testing.assert_allclose(df["afp"], [12.5 * 1.21, 1000 * 1.21, 0.8 * 1.21], rtol=1e-15)
    assert df["alt"].iloc[:2].tolist() == [5.0, 40.0] and np.isnan(df["alt"].iat[2])
    assert t.rows == [2, 3, 4]


def test_tab_separated_utf16_unicode_text(tmp_path):
    p = tmp_path / "clinical.csv"
    p.write_bytes(PLAIN.replace(",", "\t").encode("utf-16"))
    assert read_clinical(p).frame["afp"].tolist() == [12.5, 3.0, 250.0]


def test_row_numbers_are_the_spreadsheets_even_after_blank_rows(tmp_path):
    p = _write(tmp_path, "patient_id,cohort,mvi_grade,afp\n001,2015,M1,1\n,,,\n002,2015,M0,abc\n")
    t = read_clinical(p)
    assert [(pid, col, msg) for _, pid, col, msg in t.errors] == [
        ("002", "afp", "not a number: 'abc' (row 4); write a plain number (e.g. 12.3) or leave it empty")]
    with pytest.raises(ClinicalTableError, match=r"clinical.csv: patient 002, afp: not a number: 'abc' \(row 4\)"):
        t.check()
    t.check(columns=["mvi_grade"])  # only the columns asked for


def test_prospective_patients_have_no_grade(tmp_path):
    """mvi_grade absent, or empty cells: unlabelled patients, not errors."""
    absent = read_clinical(_write(tmp_path, "patient_id,cohort,afp\n001,2024,35\n002,2024,4\n"))
    assert absent.errors == [] and absent.frame["mvi_grade"].tolist() == ["", ""]
    assert absent.unlabelled_ids == ["001", "002"]
    mixed = read_clinical(_write(tmp_path, "patient_id,cohort,mvi_grade\n001,2015,M1\n002,2024,\n003,2024,NA\n004,2015,M4\n"))
    assert mixed.frame["mvi_grade"].tolist() == ["M1", "", "", ""]
    assert mixed.unlabelled_ids == ["002", "003"]  # 004 has an invalid grade: an error, not unlabelled
    assert [(pid, msg[:35]) for _, pid, _, msg in mixed.errors] == [("004", "invalid mvi_grade 'M4' (row 5); use")]


def test_read_predictions_refuses_percentages_naming_dl_prob_and_its_range(tmp_path):
    from dlmvi.errors import PredictionsTableError, StatisticsError
    from dlmvi.io.tables import read_predictions

    p = _write(tmp_path, "patient_id,cohort,dl_prob\n001,2015,87\n002,2015,12.5\n003,2015,0.5\n", "p.csv")
    with pytest.raises(PredictionsTableError,
                       match=r"p.csv: column dl_prob must be a probability between 0 and 1 but ranges 0.5 to 87 "
                             r"\(these look like percentages: divide by 100\); first values outside: "
                             r"row 2 \(patient 001\), row 3 \(patient 002\)"):
        read_predictions(p)
    assert issubclass(PredictionsTableError, StatisticsError) and issubclass(PredictionsTableError, ClinicalTableError)


def test_read_predictions_european_and_derived_dl_mvi(tmp_path):
    from dlmvi.io.tables import read_predictions

    p = tmp_path / "p.csv"
    p.write_bytes("\ufeffpatient_id;cohort;dl_prob\n001;2015;0,75\n002;2015;0,5\n003;2015;0,49\n;;\n".encode())
    df = read_predictions(p)
    assert df["patient_id"].tolist() == ["001", "002", "003"]
    assert df["dl_prob"].tolist() == [0.75, 0.5, 0.49]
    assert df["dl_mvi"].tolist() == [1.0, 1.0, 0.0]  # dl_prob >= 0.5


@pytest.mark.parametrize("text, message", [
    ("patient_id,dl_mvi\n001,2\n", r"dl_mvi must be 0 .* row 2 \(patient 001\)"),
    ("patient_id,dl_prob\n001,0.2\n001,0.3\n", r"more than once: row 2 \(patient 001\), row 3 \(patient 001\)"),
    ("patient_id,dl_prob\n001,\n", r"dl_prob is empty in row 2 \(patient 001\)"),
    ("patient_id,score\n001,0.2\n", "needs a dl_prob .* or dl_mvi"),
    ("id,dl_prob\n001,0.2\n", "no patient_id column"),
])
def test_read_predictions_errors_name_column_and_row(tmp_path, text, message):
    from dlmvi.errors import PredictionsTableError
    from dlmvi.io.tables import read_predictions

    with pytest.raises(PredictionsTableError, match=message):
        read_predictions(_write(tmp_path, text, "p.csv"))


def test_in_sample_predictions_are_left_out_by_the_one_reader(tmp_path):
    import pandas as pd

    from dlmvi.errors import PredictionsTableError
    from dlmvi.io.tables import prediction_threshold, read_predictions

    f = pd.DataFrame({"patient_id": ["A", "B", "C"], "dl_prob": [0.2, 0.7, 0.9],
                      "source": ["final model", "final model (in-sample: a training patient)", "final model"]})
    with pytest.warns(CohortWarning, match=r"1 in-sample prediction\(s\).*row 3 \(patient B\)"):
        out = read_predictions(f)
    assert out["patient_id"].tolist() == ["A", "C"]
    f["source"] = "fold_0 model (in-sample: a training patient)"
    with pytest.raises(PredictionsTableError, match="every prediction is in-sample"):
        read_predictions(f)
    path = tmp_path / "p.csv"
    f.to_csv(path, index=False)
    with pytest.warns(CohortWarning, match="no threshold recorded beside it"):
        assert prediction_threshold(path) == 0.5
    (tmp_path / "p.json").write_text('{"threshold": 0.37}')
    assert prediction_threshold(path) == 0.37
