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


# --- inside a stage: no import circle, no private name used outside its module ------------------

def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules(root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(root.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports included)."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(modules: dict[str, Path]):
    """Edges module -> dlmvi module it imports, anywhere in the file (functions included), with the
    names it takes from each and the line. `from pkg import sub` is an edge to the submodule."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    names: list[tuple[str, str, str, int]] = []  # importer, source module, name, line
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        edges[module].add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module, is_package, node)
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in modules:
                        edges[module].add(sub)
                    elif source in modules:
                        edges[module].add(source)
                        names.append((module, source, alias.name, node.lineno))
        edges[module].discard(module)
    return edges, names


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def private_imports(names) -> list[str]:
    return [f"{importer}:{line} imports {name} from {source}" for importer, source, name, line in names
            if name.startswith("_") and not name.startswith("__")]


def test_no_import_circle_between_modules():
    edges, _ = import_graph(_modules())
    edges.pop("dlmvi", None)  # the package's lazy shortcut
    found = circles(edges)
    assert not found, "import circles (function-level imports included):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_private_name_is_imported_from_another_module():
    _, names = import_graph(_modules())
    bad = private_imports(names)
    assert not bad, "private names used outside their module (make them public):\n" + "\n".join(bad)


def test_the_checks_find_a_circle_and_a_private_import(tmp_path):
    """The two checks above bite: a package with a circle hidden in a function and a relative private
    import is caught."""
    pkg = tmp_path / "dlmvi" / "stage"
    pkg.mkdir(parents=True)
    (tmp_path / "dlmvi" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from dlmvi.stage.b import helper\n\ndef f():\n    return helper()\n")
    (pkg / "b.py").write_text("def helper():\n    from .a import f\n    return f\n\n_secret = 1\n")
    (pkg / "c.py").write_text("from .b import _secret\n")
    modules = {_module_name_under(p, tmp_path): p for p in sorted((tmp_path / "dlmvi").rglob("*.py"))}
    edges, names = import_graph(modules)
    assert circles(edges) == [["dlmvi.stage.a", "dlmvi.stage.b"]]
    assert private_imports(names) == ["dlmvi.stage.c:1 imports _secret from dlmvi.stage.b"]


def _module_name_under(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# --- no hidden halls: functions stay short ----------------------------------------------------

MAX_LINES = 80


def long_functions(root: Path = ROOT, limit: int = MAX_LINES) -> list[str]:
    """Functions (methods included) longer than `limit` lines (signature, docstring and body)
    whose docstring does not say why ("long because ...")."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if n > limit and "long because" not in doc.lower():
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_function_is_over_80_lines_without_a_reason():
    found = long_functions()
    assert not found, f"functions over {MAX_LINES} lines (split them, or say 'Long because ...' in the docstring):\n" + "\n".join(found)


def test_the_length_check_bites(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def big():\n{body}\n\ndef justified():\n    \"\"\"Long because it is a table.\"\"\"\n{body}\n")
    assert long_functions(tmp_path) == [f"m.py:1 big ({MAX_LINES + 1} lines)"]


def test_library_code_draws_without_pyplot():
    """Figures are bare matplotlib Figures (dlmvi.evaluate.display): no pyplot import, no
    ``matplotlib.use`` at run time anywhere in the package."""
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "matplotlib.pyplot" for a in node.names):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports matplotlib.pyplot")
            elif isinstance(node, ast.ImportFrom) and node.module in ("matplotlib.pyplot", "pylab"):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports from {node.module}")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "use"
                  and isinstance(node.func.value, ast.Name) and node.func.value.id == "matplotlib"):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} calls matplotlib.use")
    assert not bad, "\n".join(bad)
