"""Tests of src/dlmvi/deploy/card.py: the model card written by `dlmvi export`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def card(tiny_study, tmp_path_factory):
    from dlmvi.deploy.model import export_model

    out = tmp_path_factory.mktemp("card") / "model"
    export_model(tiny_study["run"], out)
    return tiny_study["run"], out


def test_card_holds_the_runs_numbers(card):
    run, model_dir = card
    c = json.loads((model_dir / "model_card.json").read_text())
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())["cohorts"]
    assert c["performance"]["2018"]["auc"] == metrics["2018"]["binary"]["auc"]
    groups = json.loads((run / "evaluate" / "groups.json").read_text())["groups"]
    assert c["groups"] == groups and {g["group_type"] for g in groups} == {"cohort", "scanner"}
    assert c["training_data"]["scanners"] == {"dlmvi phantom scanner A 1.5 T": c["training_data"]["n"]}
    assert set(c["shift"]["sequences"]) == {"T1", "T1V", "T1D"}
    removed = json.loads((run / "train" / "cv_metrics.json").read_text())["sequence_removed"]
    assert c["robustness"] == {"sequence_dropout": 0.0, "sequence_removed": removed}
    assert json.loads((model_dir / "model.json").read_text())["robustness"]["sequence_removed"] == removed
    assert c["synthetic"] is True and c["sites"] == []
    assert any("SYNTHETIC" in x for x in c["limitations"]) and any("No site" in x for x in c["limitations"])
    html = (model_dir / "model_card.html").read_text()
    for section in ("Intended use", "Training data", "Preprocessing", "Performance per cohort",
                    "per cohort and scanner", "Cohort shift", "Missing sequences", "Known limitations",
                    "Sites calibrated"):
        assert section in html, section
    assert 'id="synthetic-banner"' in html and not re.search(r'(src|href)="(?!#)', html)


def test_card_renders_in_headless_chromium_without_console_errors(card, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    _, model_dir = card
    page = (model_dir / "model_card.html").as_uri()
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
                          "--v=0", "--virtual-time-budget=3000", "--dump-dom", page],
                         capture_output=True, text=True, timeout=120)
    assert "Known limitations" in dom.stdout and "Sites calibrated" in dom.stdout
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
