"""The house rules the import-linter contracts in pyproject.toml cannot say (those, run by
scripts/lint.sh, keep the engine's floors, keep Qt and the app out of the engine and Qt out of the
app's state): no import loop anywhere in the engine, type-only imports counted; no part of the
app imports the window; no module reaches into another's private names; no god modules; and the
window is on screen before the heavy libraries load."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def _imports(path: Path) -> list[str]:
    """Absolute dotted names of everything `path` imports (relative imports resolved), the
    imports under `if TYPE_CHECKING:` included."""
    tree = ast.parse(path.read_text())
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return names


def test_no_god_modules():
    long = {
        str(p.relative_to(ROOT)): n
        for d in ("zipmap_core", "app")
        for p in (ROOT / d).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_module_reaches_into_another_modules_private_names():
    """Underscore names are a module's own: no import of them, no attribute access to them on
    anything but `self`/`cls` (the standard library's argparse, os and sys excepted)."""
    found = []
    for d in ("zipmap_core", "app"):
        for path in (ROOT / d).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    found += [
                        f"{path.relative_to(ROOT)}:{node.lineno} imports {a.name}"
                        for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")
                    ]
                elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                    base = node.value
                    if isinstance(base, ast.Name) and base.id in ("self", "cls", "argparse", "os", "sys"):
                        continue
                    if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                        continue
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert not found, found


def _app_imports() -> dict[str, set[str]]:
    """app module -> the app modules it imports (type-only imports included)."""
    graph = {}
    for path in (ROOT / "app").glob("*.py"):
        names = {n.split(".")[1] for n in _imports(path) if n.startswith("app.") and len(n.split(".")) > 1}
        graph[path.stem] = names - {path.stem}
    return graph


def test_the_app_has_no_import_loops_and_no_part_imports_the_window():
    """Controllers and panels get the Qt-free state and the widgets they need, never the window."""
    graph = _app_imports()
    importers = sorted(m for m, deps in graph.items() if "main_window" in deps)
    assert importers == ["__main__", "soak"], importers  # the two entry points: the studio, and the soak that drives it

    def reach(start: str, seen: set[str]) -> set[str]:
        for dep in graph.get(start, ()):
            if dep not in seen:
                seen.add(dep)
                reach(dep, seen)
        return seen

    loops = sorted(m for m in graph if m in reach(m, set()))
    assert not loops, f"import loops through {loops}"


def test_the_engine_has_no_import_loops_counting_type_only_imports():
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in (ROOT / "zipmap_core").rglob("*.py")
    }
    graph = {m: {n for n in _imports(p) if n in modules and n != m} for m, p in modules.items()}  # type-only imports too

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for dep in graph[todo.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    loops = sorted(m for m in graph if m in reach(m))
    assert not loops, f"import loops through {loops}"


def test_the_studio_window_is_built_before_torch_trimesh_or_pycolmap_load():
    """The window is on screen while the engine loads in the background: building it imports none
    of the heavy libraries (each app module imports the engine where it runs)."""
    import subprocess
    import sys

    heavy = ("torch", "trimesh", "pycolmap", "scipy")
    code = (
        f"import sys, vispy; vispy.use('pyside6'); import app.__main__, app.main_window; print([m for m in {heavy!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", f"imported before the window: {done.stdout.strip()}"
