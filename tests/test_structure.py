"""The package's shape: imports between helpers modules at the top of each file, no circles."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers.core import paths

PACKAGE = paths.PROJECT_ROOT / "helpers"
# The sub-packages from the ground up: a module may import only from its own floor or below.
FLOORS = ("core", "model", "config", "data", "train", "evaluate", "study", "narrative", "runner")
COMMANDS = ("run", "report", "generate", "colab")  # `python -m helpers.NAME`, forwarding to main


def _modules() -> dict[str, ast.Module]:
    """Every helpers module (dotted name -> parsed source)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(paths.PROJECT_ROOT).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def _helpers_imports(node: ast.AST) -> list[str]:
    """Modules of the helpers package that an import statement names."""
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers"):
        if node.module == "helpers":
            return [f"helpers.{alias.name}" for alias in node.names]
        base = node.module
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("helpers")]
    return []


def test_imports_between_helpers_modules_are_at_the_top():
    inside = []
    for name, tree in _modules().items():
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(func):
                    if _helpers_imports(node):
                        inside.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    assert not inside, "imports inside functions:\n" + "\n".join(inside)


def test_no_import_circles():
    modules = _modules()
    graph = {
        name: {
            m for node in tree.body for m in _helpers_imports(node) if m in modules and m != name
        }
        for name, tree in modules.items()
    }
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        """Depth-first search that fails on a back edge."""
        state[name] = 1
        for dep in sorted(graph[name]):
            assert state.get(dep) != 1, "import circle: " + " -> ".join([*trail, name, dep])
            if dep not in state:
                visit(dep, [*trail, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_no_module_is_a_closet():
    long = {
        str(p.relative_to(paths.PROJECT_ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(Path(p).read_text(encoding="utf-8").splitlines())) > 600
    }
    assert not long, f"modules over 600 lines: {long}"


def test_the_runner_command_line_stays_short():
    lines = len((PACKAGE / "runner" / "run.py").read_text(encoding="utf-8").splitlines())
    assert lines <= 500, f"helpers/runner/run.py has {lines} lines (at most 500)"


def _floor(name: str) -> int | None:
    """Position of a module's sub-package in FLOORS (None for the package and the commands)."""
    parts = name.split(".")
    return FLOORS.index(parts[1]) if len(parts) > 2 or parts[-1] in FLOORS else None


def test_every_module_lives_in_a_sub_package_on_its_floor():
    loose = [
        name
        for name in _modules()
        if name != "helpers"
        and _floor(name) is None
        and name.removeprefix("helpers.") not in COMMANDS
    ]
    assert not loose, f"modules outside the sub-packages {FLOORS}: {loose}"
    missing = [f for f in FLOORS if not (PACKAGE / f / "__init__.py").is_file()]
    assert not missing, f"sub-packages without __init__.py: {missing}"
    undocumented = [
        f
        for f in FLOORS
        if not ast.get_docstring(ast.parse((PACKAGE / f / "__init__.py").read_text()))
    ]
    assert not undocumented, f"sub-packages whose __init__ says nothing: {undocumented}"


def test_no_sub_package_imports_a_later_one():
    modules = _modules()
    upward = []
    for name, tree in modules.items():
        here = _floor(name)
        for node in ast.walk(tree):
            for dep in _helpers_imports(node):
                if dep in modules and name.removeprefix("helpers.") not in COMMANDS:
                    there = _floor(dep)
                    if dep.removeprefix("helpers.") in COMMANDS:
                        upward.append(f"{name} imports the command module {dep}")
                    elif here is not None and there is not None and there > here:
                        upward.append(f"{name} ({FLOORS[here]}) imports {dep} ({FLOORS[there]})")
    assert not upward, "imports up a floor:\n" + "\n".join(upward)


def test_commands_are_thin_entry_points():
    for command in COMMANDS:
        tree = ast.parse((PACKAGE / f"{command}.py").read_text(encoding="utf-8"))
        targets = {m for node in tree.body for m in _helpers_imports(node)}
        assert len(tree.body) <= 3 and targets, f"helpers/{command}.py should only forward to main"


def _layout_modules() -> set[str]:
    """Module paths (relative to helpers/) listed in DEVELOPING.md's layout tree."""
    text = (paths.PROJECT_ROOT / "DEVELOPING.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    listed, folder = set(), ""
    for line in block.splitlines():
        indent, name = len(line) - len(line.lstrip()), (line.split() or [""])[0]
        if indent == 2 and name.endswith("/"):
            folder = name
        elif indent == 2 and name.endswith(".py"):
            folder, _ = "", listed.add(name)
        elif indent == 4 and name.endswith(".py"):
            listed.add(folder + name)
    return listed


def test_the_layout_in_developing_is_the_tree():
    actual = {
        p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
    }
    listed = _layout_modules()
    assert not actual - listed, f"modules missing from DEVELOPING.md's layout: {actual - listed}"
    assert not listed - actual, f"DEVELOPING.md lists modules that do not exist: {listed - actual}"
