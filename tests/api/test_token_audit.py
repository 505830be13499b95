"""Creating and revoking API tokens is recorded in the event log, with who did it, never the token."""

from __future__ import annotations

from libs.events.types import AUTH_STREAM, ApiTokenCreated, ApiTokenRevoked

from .conftest import Api


async def test_token_changes_are_events_with_the_principal_and_no_token(api: Api) -> None:
    made = await api.http.post("/v1/auth/tokens", json={"name": "ci", "role": "viewer"})
    assert made.status_code == 201, made.text
    new = made.json()
    gone = await api.http.delete(f"/v1/auth/tokens/{new['id']}")
    assert gone.status_code == 200, gone.text

    recorded = [rec.event for rec in await api.store.read_stream(AUTH_STREAM)]
    assert recorded == [
        ApiTokenCreated(service="", token_id=new["id"], name="ci", role="viewer", principal="local-admin#1"),
        ApiTokenRevoked(service="", token_id=new["id"], name="ci", role="viewer", principal="local-admin#1"),
    ]
    rows = await api.store.pool.fetch("SELECT to_jsonb(e)::text AS row FROM stratus_events e")
    assert not any(new["token"] in r["row"] or api.token in r["row"] for r in rows)


async def test_a_refused_revoke_records_nothing(api: Api) -> None:
    # The bootstrapped admin token is the last admin: revoking it is refused (409), and no event
    # says otherwise.
    r = await api.http.delete("/v1/auth/tokens/1")
    assert r.status_code == 409, r.text
    unknown = await api.http.delete("/v1/auth/tokens/999")
    assert unknown.status_code == 404, unknown.text
    assert await api.store.read_stream(AUTH_STREAM) == []
