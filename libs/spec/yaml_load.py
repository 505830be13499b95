"""Reading YAML text: safe loading, duplicate keys rejected, and the line of every field path."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import SpecSyntaxError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, which plain YAML loading silently drops."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key_node.value!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """Return (data, {field path: 1-based line}). Raises SpecSyntaxError with line and column."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        where = f" at line {line}, column {column}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        raise SpecSyntaxError(
            f"invalid YAML{where}: {problem}{context}", source=source, line=line, column=column
        ) from exc
    except yaml.YAMLError as exc:
        raise SpecSyntaxError(f"invalid YAML: {exc}", source=source, line=None, column=None) from exc
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    if node is not None:
        _index(node, "", lines, set())
    return data, lines


def _index(node: Node, path: str, out: dict[str, int], visited: set[int]) -> None:
    # Aliases share nodes: index each once, so recursive or exponential aliases stay cheap.
    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else "?"
            child = f"{path}.{key}" if path else str(key)
            out.setdefault(child, key_node.start_mark.line + 1)
            _index(value_node, child, out, visited)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            out.setdefault(child, item.start_mark.line + 1)
            _index(item, child, out, visited)
