"""Schemathesis against the live API's OpenAPI: every route, with and without a token.

No 5xx, every answer conforms to the schema (status, content type, body), and without a token
nothing is ever appended to the log. Bounded: a few examples per operation.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import checks
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks as oa

from .conftest import SERVICE_YAML, Live
from .fleet_events import launch_replica

MAX_EXAMPLES = 8
# What the issue asks: no 5xx, answers as declared (status, content type, headers, body).
# Not positive_data_acceptance: a schema-valid string is rarely a valid service YAML (422).
CHECKS = [
    checks.not_a_server_error, oa.status_code_conformance, oa.content_type_conformance,
    oa.response_headers_conformance, oa.response_schema_conformance,
]  # fmt: skip
# Endless by design (a live NDJSON stream with heartbeats): fuzzed without ``follow`` elsewhere.
SKIP = {"/v1/events/stream"}


def fuzz(doc: dict[str, Any], base_url: str, headers: dict[str, str]) -> tuple[int, list[str]]:
    """Run every operation's generated cases; the number of calls and the failures."""
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in SKIP:
            continue

        @hypothesis.settings(
            max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
            phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        @hypothesis.given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            nonlocal calls
            if isinstance(case.query, dict) and "follow" in case.query:
                case.query["follow"] = False  # a followed log never ends
            response = case.call(base_url=base_url, headers=headers, timeout=10)
            calls += 1
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except (Exception, FailureGroup) as exc:  # collected: one report naming every failing operation
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    return calls, failures


async def test_fuzzing_every_route_with_and_without_a_token(live: Live) -> None:
    api = live.api
    r = await api.http.post("/v1/services", json={"name": "svc", "yaml": SERVICE_YAML})
    assert r.status_code == 201, r.text
    await launch_replica(api.store, "svc", 1)
    doc = (await api.http.get("/openapi.json")).json()

    before = await api.store.last_position()
    calls, failures = await asyncio.to_thread(fuzz, doc, live.url, {})
    assert failures == []
    assert calls > 50
    assert await api.store.last_position() == before, "an unauthenticated request appended events"

    calls, failures = await asyncio.to_thread(fuzz, doc, live.url, api.headers())
    assert failures == []
    assert calls > 50
