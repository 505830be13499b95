from libs.events.store import EventStore
from libs.events.types import ServiceRequested


async def test_append_and_read(store: EventStore) -> None:
    r = await store.append("service-a", [ServiceRequested(service="a")], expected_version=0)
    assert r.versions == [1]
    got = await store.read_stream("service-a")
    assert got[0].event == ServiceRequested(service="a")
