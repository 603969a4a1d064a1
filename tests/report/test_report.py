"""The report: self-contained, labelled synthetic, every section present; opens in Chromium."""

import re
import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(tiny_study):
    return tiny_study["run"] / "report.html"


def test_report_is_self_contained_and_complete(report):
    html = report.read_text()
    assert 'id="synthetic-banner"' in html and "SYNTHETIC DATA" in html
    # No external resource: every image is a data URI, no http(s) link to load.
    assert not re.search(r'src="(?!data:)', html)
    assert not re.search(r'<link[^>]+href="http', html)
    for section in ("Cohort flow", "Training of DL-MVI", "Sequence ablation", "external validation",
                    "Cohort shift", "Table 1", "Multivariate", "Nomogram", "Survival",
                    "This run vs the published study", "TRIPOD+AI"):
        assert section in html, section
    n_img = html.count("data:image/png;base64,")
    # training curves, 3 ROC (2015, 2018, all), t-SNE, nomogram, ROC, calibration, DCA, 4 KM
    assert n_img >= 13
    assert "logit(p) =" in html
    assert "dlmvi 0.1.0" in html


def test_report_prints_the_reviewer_statistics(report):
    """Issue 16: added value by LR test (DeLong only for non-nested curves), calibration with
    CIs, classification with exact CIs, decision-curve table, survival rates, follow-up,
    Cox tests, concordance, PH test and the multivariable Cox models."""
    html = report.read_text()
    for text in ("Added value of DL-MVI (nested models: likelihood-ratio test)", "Nagelkerke R2",
                 "DeLong's test between non-nested ROC curves", "Demler, Pencina",
                 "calibration-in-the-large (95% CI)", "calibration slope (95% CI)", "scaled Brier", "Emax",
                 "Classification (exact binomial 95% CI)", "sensitivity % (95% CI)", "Youden threshold",
                 "net interventions avoided per 100", "1-year % (95% CI)", "5-year % (95% CI)",
                 "median follow-up, months (95% CI)", "Cox score test p", "C-index (SE)",
                 "PH test p (global)", "Multivariable Cox model of overall survival",
                 "Multivariable Cox model of recurrence-free survival", "complete cases"):
        assert text in html, text


def test_report_opens_in_headless_chromium(report, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    base = FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *base, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                          "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r'data-figures="(\d+)/(\d+)"', dom.stdout)
    assert m, "the page's figure check did not run"
    ok, total = int(m.group(1)), int(m.group(2))
    assert total >= 13 and ok == total
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    shot = report.parent / "report_screenshot.png"
    subprocess.run([CHROMIUM, *base, "--window-size=1200,3000", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_patients_left_out_of_a_survival_analysis_are_named(tiny_study, tmp_path):
    """Complete cases per analysis: the report lists who was left out of which analysis."""
    import json

    from dlmvi.report.build import build_report

    run = tmp_path / "run"
    shutil.copytree(tiny_study["run"], run, ignore=shutil.ignore_patterns("report*"))
    path = run / "survival" / "survival.json"
    doc = json.loads(path.read_text())
    doc["os_by_mvi"]["left_out"] = [{"patient_id": "P0042", "reason": "no os_months or os_event"}]
    path.write_text(json.dumps(doc))
    html = build_report(run).read_text()
    block = html[html.index("Patients left out of an analysis (complete cases per analysis)"):]
    assert re.search(r"os_by_mvi</td>\s*<td[^>]*>P0042</td>\s*<td[^>]*>no os_months or os_event", block[:2000])
