"""YAML aliases cannot blow a spec up: the billion laughs and recursive aliases are refused."""

from __future__ import annotations

import json
import time

import pytest

from libs.spec import SpecSyntaxError, load_spec, spec_to_dict
from libs.spec.yaml_load import MAX_EXPANDED_NODES

# The classic: nine levels of nine aliases (540 bytes here), 9**9 "lol"s once expanded.
BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
service:
  readiness_probe:
    path: /health
    post_data: {x: *i}
resources:
  ports: 8080
run: python -m http.server 8080
"""

# Five levels of ten under post_data (free-form JSON, which events carry as written): 410
# bytes that came out as 800 KB of JSON in the event before the bound.
SMALL_LAUGHS = """\
service:
  readiness_probe:
    path: /health
    post_data:
      a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
resources:
  ports: 8080
run: python -m http.server 8080
"""


@pytest.mark.parametrize(("text", "line"), [(BILLION_LAUGHS, 5), (SMALL_LAUGHS, 8)], ids=["billion", "small"])
def test_nested_aliases_are_refused_fast_naming_the_line(text: str, line: int) -> None:
    started = time.monotonic()
    with pytest.raises(SpecSyntaxError) as info:
        load_spec(text, source="laughs.yaml")
    assert time.monotonic() - started < 1.0
    message = str(info.value)
    assert f"laughs.yaml: invalid YAML at line {line}" in message
    assert f"more than {MAX_EXPANDED_NODES} nodes with its aliases expanded" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [("a: &a [1, *a]\n", 1), ("x: 1\nb: &b\n  c: *b\n", 3), ("s: &s {k: [*s]}\n", 1)],
)
def test_recursive_aliases_are_refused(text: str, line: int) -> None:
    with pytest.raises(SpecSyntaxError, match=f"line {line}, column .*inside its own anchor"):
        load_spec(text)


def test_ordinary_sharing_through_anchors_still_works() -> None:
    text = """\
service:
  readiness_probe:
    path: /health
    post_data: &payload {model: m, messages: [{role: user, content: hi}]}
    headers: &h {X-Probe: "1"}
  replicas: 1
resources:
  ports: 8080
  any_of:
    - &gpu {accelerators: "L4:1", use_spot: true}
    - <<: *gpu
      accelerators: "A10G:1"
envs: {PAYLOAD_COPY: plain}
run: python -m http.server 8080
"""
    spec = load_spec(text)
    assert spec.service.post_data == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert len(json.dumps(spec_to_dict(spec))) < 5_000


def test_a_large_plain_document_just_under_the_bound_parses() -> None:
    items = ", ".join(str(i) for i in range(MAX_EXPANDED_NODES // 2))
    text = f"service:\n  readiness_probe:\n    path: /\n    post_data: {{xs: [{items}]}}\n"
    text += "resources:\n  ports: 80\nrun: x\n"
    assert len(load_spec(text).service.post_data["xs"]) == MAX_EXPANDED_NODES // 2  # type: ignore[index]
