"""The router package's shape (issue 13): imports between its modules run one way, none is long."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "services" / "router"


def _imports(path: Path) -> set[str]:
    """Router modules imported by ``path`` (also under ``if TYPE_CHECKING:``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            mod = node.module
            if node.level == 1:
                mod = f"services.router.{mod}"
            if mod.startswith("services.router."):
                out.add(mod.rsplit(".", 1)[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.rsplit(".", 1)[1] for a in node.names if a.name.startswith("services.router.")}
    return out


def test_router_imports_have_no_cycle() -> None:
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py")}
    assert {"exchange", "client", "endpoint"} <= set(graph)
    done: set[str] = set()

    def visit(mod: str, path: list[str]) -> None:
        if mod in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(mod) :], mod]))
        if mod in done:
            return
        for dep in sorted(graph.get(mod, ())):
            visit(dep, [*path, mod])
        done.add(mod)

    for mod in sorted(graph):
        visit(mod, [])


def test_router_modules_are_short() -> None:
    long = {p.name: n for p in PACKAGE.glob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
