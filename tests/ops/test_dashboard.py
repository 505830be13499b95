"""The dashboard: its history route from the log, its page's security headers, and the page
rendered by a real headless Chromium (Debian's `chromium`) with a screenshot check."""

from __future__ import annotations

import asyncio
import shutil
import struct
import time
import zlib
from pathlib import Path

import pytest

from libs.events.types import Placement, QpsSampled, service_stream
from tests.api.conftest import SERVICE_YAML, Live
from tests.api.fleet_events import GCP_SPOT_L4, assign_endpoint, decide_scale, launch_replica

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PRICED = Placement(cloud="gcp", region="us-east4", zone="us-east4-a", use_spot=True, price_per_hour=0.2345)


async def seed(live: Live, name: str = "chat") -> None:
    api = live.api
    r = await api.http.post("/v1/services", json={"name": name, "yaml": SERVICE_YAML})
    assert r.status_code == 201, r.text
    await launch_replica(api.store, name, 1, placement=PRICED)
    await launch_replica(api.store, name, 2, placement=GCP_SPOT_L4, ip="10.0.0.2")
    await assign_endpoint(api.store, name)
    now = time.time()
    await api.store.append(service_stream(name), [
        QpsSampled(service=name, router_id="r1", window_start=now - 20, window_seconds=10, requests=30),
        QpsSampled(service=name, router_id="r2", window_start=now - 20, window_seconds=10, requests=10),
        QpsSampled(service=name, router_id="r1", window_start=now - 10, window_seconds=10, requests=50),
    ])  # fmt: skip
    last = await decide_scale(api.store, name, 3, "qps 9.0 over 2 replicas: scaling up to 3")
    await api.projection.wait_for(last, 5)


async def test_history_is_folded_from_the_log(live: Live) -> None:
    await seed(live)
    r = await live.api.http.get("/v1/dashboard/services/chat/history", params={"minutes": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [q for _, q in body["qps"]] == [4.0, 5.0]  # two routers' samples of one window add up
    assert [n for _, n in body["ready_replicas"]] == [0, 1, 2]
    reasons = [d["reason"] for d in body["decisions"]]
    assert any("scaling up to 3" in x for x in reasons)
    assert any(x.startswith("replica 1 placed on gcp/us-east4/us-east4-a") for x in reasons)
    assert (await live.api.anon.get("/v1/dashboard/services/chat/history")).status_code == 401
    missing = await live.api.http.get("/v1/dashboard/services/nope/history")
    assert missing.status_code == 404 and "nope" in missing.json()["message"]


async def test_the_page_is_static_and_locked_down(live: Live) -> None:
    page = await live.api.anon.get("/dashboard")
    assert page.status_code == 200 and "<title>Stratus dashboard</title>" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in page.text  # no inline script: the CSP would refuse it anyway
    js = await live.api.anon.get("/dashboard/app.js")
    assert js.status_code == 200 and "innerHTML" not in js.text
    assert (await live.api.anon.get("/dashboard/..%2Fapp.py")).status_code == 404


async def chromium(*args: str) -> bytes:
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--virtual-time-budget=10000", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


def png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """Width, height and the number of distinct row colours sampled (8-bit RGB/RGBA PNG)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 4
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, _depth, colour = struct.unpack(">IIBB", body[:10])
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels + 1
    # Unfiltered bytes differ per filter type; distinct raw rows still tell a blank page apart.
    rows = {raw[y * stride : (y + 1) * stride] for y in range(0, height, 7)}
    return width, height, len(rows)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
@pytest.mark.timeout(240)
async def test_the_dashboard_renders_in_headless_chromium(live: Live, tmp_path: Path) -> None:
    await seed(live)
    url = f"{live.url}/dashboard"
    # Without a token: the login form, and no data.
    dom = (await chromium("--dump-dom", url)).decode()
    assert 'data-state="login"' in dom and "chat" not in dom
    # With one, handed over in the fragment (never sent to the server).
    dom = (await chromium("--dump-dom", f"{url}#token={live.api.token}")).decode()
    assert 'data-state="ready"' in dom, dom[-3000:]
    assert 'data-service="chat"' in dom and "READY" in dom
    assert "us-east4-a" in dom and "$0.2345/h" in dom
    assert "scaling up to 3" in dom and "QPS (last hour)" in dom
    assert live.api.token not in dom  # not left in the page (nor, being a fragment, in any log)
    shot = tmp_path / "dashboard.png"
    await chromium(f"--screenshot={shot}", "--window-size=1200,900", f"{url}#token={live.api.token}")
    width, height, colours = png_size_and_colours(shot)
    assert (width, height) == (1200, 900)
    assert colours > 20, "the screenshot is (nearly) blank"
