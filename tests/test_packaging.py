"""Packaging: version ranges vs the lock, licence, citation, ``--version``, and the built wheel
installed in a fresh virtual environment, run from an unrelated folder (issue 21).

The wheel test needs no network: it builds with the running environment's setuptools and
installs the wheel with ``--no-deps --no-index`` into a new venv that sees the dependencies
already installed here through a ``.pth`` line (not dlmvi itself: the checkout's editable
``.pth`` hook lives in a site directory that the new venv does not process).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

import dlmvi

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _lock() -> dict[str, Requirement]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = req
    return pins


def _declared() -> list[Requirement]:
    project = _pyproject()["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return [Requirement(r) for r in reqs]


# ------------------------------------------------------------ ranges and the lock
def test_every_dependency_is_a_range_whose_pin_is_in_the_lock():
    lock = _lock()
    declared = _declared()
    assert {"torch", "monai", "numpy", "pytest", "hypothesis"} <= {canonicalize_name(r.name) for r in declared}
    for req in declared:
        spec = str(req.specifier)
        assert "==" not in spec and ">=" in spec and "<" in spec, (
            f"pyproject.toml: {req}: write a compatible range (NAME>=X.Y,<X+1) and put the exact "
            f"pin NAME==X.Y.Z into constraints.txt")
        pin = lock.get(canonicalize_name(req.name))
        assert pin is not None, f"constraints.txt has no pin for {req.name}; add {req.name}==VERSION"
        (op_pin,) = pin.specifier
        assert op_pin.operator == "==", f"constraints.txt: {pin}: pin exactly (==)"
        assert req.specifier.contains(op_pin.version), f"constraints.txt pin {pin} is outside pyproject's {req}"


def test_lock_pins_torch_2_13_0():
    (spec,) = _lock()["torch"].specifier
    assert (spec.operator, spec.version) == ("==", "2.13.0")


def test_requires_python_admits_3_11_to_3_13():
    spec = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert [v for v in ("3.10.14", "3.11.0", "3.11.7", "3.12.1", "3.13.0", "3.13.9", "3.14.0") if spec.contains(v)] == [
        "3.11.0", "3.11.7", "3.12.1", "3.13.0", "3.13.9"]


def test_makefile_installs_the_locked_versions():
    """Every package install of the Makefile is constrained by constraints.txt."""
    installs = [line for line in (ROOT / "Makefile").read_text().splitlines()
                if "pip install" in line and "--upgrade pip" not in line]
    assert len(installs) == 2  # torch first, then dlmvi[test]
    for line in installs:
        assert "-c constraints.txt" in line, line


# ------------------------------------------------------------ licence, citation, version
def test_licence_is_the_full_apache_2_text():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(re.findall(r"^\s+\d\. [A-Z]", text, flags=re.M)) == 9  # sections 1-9
    assert _pyproject()["project"]["license"] == "Apache-2.0"


def _cff_field(name: str) -> str:
    m = re.search(rf"^{name}:\s*\"?([^\"\n]+)\"?\s*$", (ROOT / "CITATION.cff").read_text(encoding="utf-8"), re.M)
    assert m, f"CITATION.cff has no top-level {name}"
    return m.group(1).strip()


def test_one_version_everywhere():
    version = dlmvi.__version__
    Version(version)  # a valid PEP 440 version
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "dlmvi.__version__"}
    assert _cff_field("version") == version
    assert _cff_field("license") == "Apache-2.0"
    assert _cff_field("cff-version") == "1.2.0"
    releases = re.findall(r"^## \[(\d[^\]]*)\]", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
    assert releases and releases[0] == version


def test_citation_names_the_study_without_invented_identifiers():
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert "preferred-citation:" not in text  # the software is what CITATION.cff cites
    assert "references:" in text and "321" in text  # the study, as docs/study.md describes it
    assert "doi:" not in text.lower()  # no DOI is recorded for either


def test_version_option(capsys):
    from dlmvi.cli import run_cli
    from dlmvi.cli.app import installed_version

    assert run_cli(["--version"]) == 0
    assert capsys.readouterr().out == f"dlmvi {installed_version()}\n"
    assert installed_version() == dlmvi.__version__


def test_git_commit_is_the_checkout_head():
    from dlmvi.report.build import _git_commit

    if not (shutil.which("git") and (Path(dlmvi.__file__).resolve().parents[2] / "pyproject.toml").is_file()):
        pytest.skip("dlmvi is not imported from a source checkout with git available")
    src_root = Path(dlmvi.__file__).resolve().parents[2]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src_root, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip(f"{src_root} is not a git checkout")
    assert _git_commit() == head.stdout.strip()


# ------------------------------------------------------------ the wheel, outside the checkout
_SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis"}


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime) of every file under ``root`` (caches and .git left out)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for f in filenames:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def _run(cmd: list, cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} -> {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.mark.slow
def test_wheel_runs_from_a_fresh_venv_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.setdefault("OMP_NUM_THREADS", "2")
    before = _snapshot(ROOT)

    # 1. Build the wheel from a copy of the sources (a build leaves build/ and *.egg-info behind).
    src = tmp_path / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, src],
         cwd=tmp_path, env=env)
    (wheel,) = dist.glob("dlmvi-*.whl")
    assert wheel.name == f"dlmvi-{dlmvi.__version__}-py3-none-any.whl"

    # 2. A fresh venv inside a git repository of its own: an installed dlmvi must not report
    #    that repository's commit as its own.
    box = tmp_path / "box"
    box.mkdir()
    git = shutil.which("git")
    if git:
        _run([git, "init", "-q"], cwd=box, env=env)
        _run([git, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "--allow-empty",
              "-m", "unrelated"], cwd=box, env=env)
    venv = box / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env=env)
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", wheel],
         cwd=tmp_path, env=env)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path, env=env).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_dlmvi_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([py, "-c", "import dlmvi, dlmvi.report; print(dlmvi.__file__)"], cwd=elsewhere, env=env).stdout
    assert Path(where.strip()).is_relative_to(venv), where  # the wheel's copy, not the checkout's
    assert list(elsewhere.iterdir()) == []
    (site / "dlmvi" / "report" / "templates" / "report.html").stat()  # package data shipped

    dlmvi_cmd = venv / "bin" / "dlmvi"
    assert _run([dlmvi_cmd, "--version"], cwd=elsewhere, env=env).stdout == f"dlmvi {dlmvi.__version__}\n"

    # 3. The demo, the report, an export and one patient, all with relative paths from `elsewhere`.
    _run([dlmvi_cmd, "demo", "--out", "run", "--patients", "40", "--folds", "2", "--epochs", "10",
          "--bootstrap", "10"], cwd=elsewhere, env=env)
    run = elsewhere / "run"
    for rel in ("cohort/clinical.csv", "cohort/README_SYNTHETIC.txt", "cache/cache.json", "train/run.json",
                "train/final/model.safetensors", "predictions.csv", "evaluate/metrics.json",
                "shift/shift.json", "clinical/nomogram.json", "survival/survival.json", "report.html"):
        assert (run / rel).is_file(), rel
    assert (run / "cohort" / "clinical.csv").read_text().count("\n") == 41  # header + 40 patients
    (run / "report.html").unlink()
    out = _run([dlmvi_cmd, "report", "run"], cwd=elsewhere, env=env).stdout
    assert out.strip() == "run/report.html"
    html = (run / "report.html").read_text(encoding="utf-8")
    assert f"dlmvi {dlmvi.__version__}" in html
    assert "(git " not in html  # an installed wheel has no commit (and not the box's)

    _run([dlmvi_cmd, "export", "run", "model"], cwd=elsewhere, env=env)
    assert {p.name for p in (elsewhere / "model").iterdir()} >= {"model.json", "model.safetensors"}
    patient = sorted((run / "cohort" / "images").iterdir())[0]
    _run([dlmvi_cmd, "predict-patient", "model", patient.relative_to(elsewhere), "--afp", "35", "--out", "card"],
         cwd=elsewhere, env=env)
    result = json.loads((elsewhere / "card" / "result.json").read_text())
    assert result["patient_id"] == patient.name
    assert 0.0 <= result["probability"] <= 1.0 and result["afp_ng_ml"] == 35.0
    assert (elsewhere / "card" / "card.html").is_file()

    # 4. Nothing but the asked-for outputs, in the asked-for places.
    assert sorted(p.name for p in elsewhere.iterdir()) == ["card", "model", "run"]
    after = _snapshot(ROOT)
    assert after == before, f"written into the checkout: {sorted(set(after.items()) ^ set(before.items()))[:10]}"
