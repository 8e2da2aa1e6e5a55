"""The package's shape: imports between helpers modules at the top of each file, no circles."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import paths

PACKAGE = paths.PROJECT_ROOT / "helpers"


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
        if (n := len(Path(p).read_text(encoding="utf-8").splitlines())) > 650
    }
    assert not long, f"modules over 650 lines: {long}"
