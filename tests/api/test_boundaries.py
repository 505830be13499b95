"""The API service imports no other service (shared code lives in libs/), and reads no replica log file."""

from __future__ import annotations

import ast
from pathlib import Path

API = Path(__file__).resolve().parents[2] / "services" / "api"


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_the_api_imports_no_other_service() -> None:
    def foreign(module: str) -> bool:
        return module.startswith("services.") and not module.startswith("services.api")

    found = {str(p.relative_to(API)): sorted(filter(foreign, imported_modules(p))) for p in API.rglob("*.py")}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_api_does_not_read_replica_log_files() -> None:
    users = [p.relative_to(API) for p in API.rglob("*.py") if "replica_log(" in p.read_text()]
    assert users == []
