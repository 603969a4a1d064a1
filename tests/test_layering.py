"""The package's layout follows the data's path: no module imports a later stage.

Order: io -> cohort -> datasets (the phantom writes cohorts) -> preprocess -> model -> train ->
evaluate -> stats -> deploy -> report -> workflow -> cli. Shared base modules (constants,
errors, settings, layout) import no stage. Imports inside functions count too.
"""

import ast
from pathlib import Path

import dlmvi

ORDER = ["io", "cohort", "datasets", "preprocess", "model", "train", "evaluate", "stats", "deploy",
         "report", "workflow", "cli"]
BASE = {"constants", "errors", "settings", "layout"}
ROOT = Path(dlmvi.__file__).parent


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "dlmvi" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno


def test_no_module_imports_a_later_stage():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if own == "__init__":
            continue  # the package's lazy `dlmvi.predict_patient` shortcut
        for module, line in _imports(path):
            target = _stage(module)
            if target is None or target == own:
                continue
            if own in BASE:
                if target not in BASE:
                    bad.append(f"{rel}:{line} (a base module) imports {module}")
            elif target in ORDER and ORDER.index(target) > ORDER.index(own):
                bad.append(f"{rel}:{line} ({own}) imports {module} (a later stage)")
    assert not bad, "\n".join(bad)


def test_every_module_lives_in_a_stage_or_is_a_base_module():
    loose = {p.stem for p in ROOT.glob("*.py")} - BASE - {"__init__"}
    assert not loose, f"modules outside the stage folders: {sorted(loose)}"
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders <= set(ORDER), f"unknown stage folders: {sorted(folders - set(ORDER))}"
