"""Reading YAML text: safe loading, duplicate keys rejected, and the line of every field path.

Aliases are bounded: a document whose nodes, counted with every alias expanded, exceed
``MAX_EXPANDED_NODES`` is refused while it is composed (the "billion laughs": a few hundred
bytes of nested aliases expand to gigabytes once the spec is written out as JSON), and so is
an alias inside its own anchor (recursive data). Either error names the alias's line.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import SpecSyntaxError

# A real spec has tens to a few hundred nodes; sharing blocks through anchors stays far below.
MAX_EXPANDED_NODES = 10_000


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, which plain YAML loading silently drops, and
    bounds the document's size with aliases expanded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._expanded = 0
        self._sizes: dict[int, int] = {}  # id(node) -> its node count with aliases expanded

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        mark = event.start_mark if isinstance(event.start_mark, yaml.Mark) else None
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None and target.end_mark is None:  # still being composed: its ancestor
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"alias *{event.anchor} is inside its own anchor (recursive data)",
                    mark,
                )
            if target is not None:
                self._count(_expanded_size(target, self._sizes), mark)
        else:
            self._count(1, mark)
        return super().compose_node(parent, index)

    def _count(self, nodes: int, mark: yaml.Mark | None) -> None:
        self._expanded += nodes
        if self._expanded > MAX_EXPANDED_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"the document has more than {MAX_EXPANDED_NODES} nodes with its aliases expanded "
                "(nested aliases multiply); write the values out or share less",
                mark,
            )

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
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text)  # reads the text: may refuse a character already
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
        if loader is not None:
            loader.dispose()
    lines: dict[str, int] = {}
    if node is not None:
        _index(node, "", lines, set())
    return data, lines


def _expanded_size(node: Node, sizes: dict[int, int]) -> int:
    """Nodes under ``node`` (complete), counting every alias as a copy; memoized, so linear."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    total = 1
    if isinstance(node, SequenceNode):
        total += sum(_expanded_size(item, sizes) for item in node.value)
    elif isinstance(node, MappingNode):
        total += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[id(node)] = total
    return total


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
