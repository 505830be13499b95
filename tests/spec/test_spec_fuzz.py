"""Hypothesis on the spec parser: any input parses or raises SpecError, never anything else, fast.

Three generators: arbitrary text; YAML documents built from the real field names with values of
every shape (scalars, lists, mappings, nulls, odd strings); and mutations of a valid spec. The
example counts are bounded so the whole module runs in seconds.
"""

from __future__ import annotations

import time
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_helpers import BASE

from libs.spec import ServiceSpec, SpecError, load_spec, spec_from_dict, spec_to_dict
from libs.spec.parse import STORAGE_FIELDS, TASK_FIELDS
from libs.spec.resources import RESOURCES_FIELDS
from libs.spec.service import POLICY_FIELDS, PROBE_FIELDS, SERVICE_FIELDS, TLS_FIELDS

FIELD_NAMES = sorted(
    {
        *TASK_FIELDS,
        *STORAGE_FIELDS,
        *RESOURCES_FIELDS,
        *SERVICE_FIELDS,
        *PROBE_FIELDS,
        *POLICY_FIELDS,
        *TLS_FIELDS,
    }
)
SECONDS_PER_INPUT = 1.0
FUZZ = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        ["L4:1", "A100:8", "8080", "8080-8090", "/health", "x+", "{a}", "1e400", "~", "aws", "0x10"]
    ),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8))
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=15,
)
documents = st.dictionaries(keys, values, max_size=8)


def check(text: str) -> ServiceSpec | None:
    """Parse; SpecError is an answer, anything else fails the test. Within a second."""
    started = time.monotonic()
    try:
        spec = load_spec(text, source="fuzz.yaml")
    except SpecError as exc:
        assert str(exc).startswith("fuzz.yaml"), str(exc)
        spec = None
    assert time.monotonic() - started < SECONDS_PER_INPUT
    if spec is not None:  # what parses also round-trips through the JSON form events carry
        assert spec_from_dict(spec_to_dict(spec, include_secrets=True)) == spec
    return spec


@FUZZ
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    check(text)


@FUZZ
@given(documents)
def test_yaml_built_from_the_field_names(doc: dict[str, Any]) -> None:
    check(yaml.safe_dump(doc, sort_keys=False))


@FUZZ
@given(
    st.sampled_from(["service", "resources", "run", "envs", "secrets", "setup", "file_mounts", "workdir"]),
    st.one_of(values, documents),
    st.sampled_from(
        [None, "readiness_probe", "replicas", "replica_policy", "ports", "tls", "any_of", "cloud"]
    ),
)
def test_a_valid_spec_with_one_field_replaced(section: str, value: Any, sub: str | None) -> None:
    doc: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    if sub is not None and isinstance(doc.get(section), dict):
        doc[section][sub] = value
    else:
        doc[section] = value
    check(yaml.safe_dump(doc, sort_keys=False))


@FUZZ
@given(st.text(alphabet="&*ab[]{}:,- \n", max_size=120))
def test_alias_soup(text: str) -> None:
    check(text)


def test_the_base_spec_parses() -> None:
    assert check(yaml.safe_dump(BASE)) is not None


def test_a_control_character_is_a_spec_error() -> None:
    """Found by test_any_text: PyYAML's reader refused it before the parser's error handling."""
    assert check("\x1f") is None
