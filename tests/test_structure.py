"""The project's structure rules: services never import each other, libs import no service, and
no module under libs/ or services/ is over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())
MAX_LINES = 400


def imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service: str) -> None:
    def foreign(module: str) -> bool:
        return module.startswith("services.") and module.split(".")[1] != service

    pkg = ROOT / "services" / service
    found = {str(p.relative_to(ROOT)): sorted(filter(foreign, imported(p))) for p in pkg.rglob("*.py")}
    assert {k: v for k, v in found.items() if v} == {}


def test_libs_import_no_service() -> None:
    found = {
        str(p.relative_to(ROOT)): sorted(m for m in imported(p) if m.split(".")[0] == "services")
        for p in (ROOT / "libs").rglob("*.py")
    }
    assert {k: v for k, v in found.items() if v} == {}


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for top in ("libs", "services")
        for p in (ROOT / top).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
