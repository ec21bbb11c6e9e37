"""The local global entry (Route 53's role) in front of real region servers: health checks with a failure
threshold, the client's chosen region, failover to a healthy one, 503 problem+json when none is left."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stackwright.local.global_entry import GlobalEntry, RegionHealth
from stackwright.local.ports import free_port, port_in_use


def _serve_dir(folder: Path, text: str) -> tuple[subprocess.Popen[bytes], int]:
    """A real HTTP server standing for one region's gateway: answers GET / with ``text``."""
    folder.mkdir()
    (folder / "index.html").write_text(text)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not port_in_use(port):
        assert time.monotonic() < deadline and proc.poll() is None, "region server did not start"
        time.sleep(0.05)
    return proc, port


@pytest.fixture
def regions(tmp_path: Path) -> Iterator[dict[str, tuple[subprocess.Popen[bytes], int]]]:
    out = {name: _serve_dir(tmp_path / name, f"served by {name}")
           for name in ("us-east-1", "eu-west-1", "sa-east-1")}
    yield out
    for proc, _port in out.values():
        proc.terminate()
        proc.wait(10)


def test_health_state_flips_only_after_the_threshold() -> None:
    region = RegionHealth("eu-west-1", "secondary", "http://x", "http://x/")
    for _ in range(2):
        region.record(False, 3)
    assert region.healthy
    region.record(False, 3)
    assert not region.healthy
    region.record(True, 3)
    region.record(True, 3)
    assert not region.healthy
    region.record(True, 3)
    assert region.healthy


def test_choice_prefers_the_clients_region_then_primary_then_secondary_then_standby() -> None:
    entry = GlobalEntry({"regions": [{"name": "us-east-1", "role": "primary", "url": "http://a"},
                                     {"name": "eu-west-1", "role": "secondary", "url": "http://b"},
                                     {"name": "sa-east-1", "role": "standby", "url": "http://c"}]})
    choose = entry.choose
    assert choose("eu-west-1").name == "eu-west-1"  # type: ignore[union-attr]
    assert choose(None).name == "us-east-1"  # type: ignore[union-attr]
    assert choose("sa-east-1").name == "us-east-1"  # type: ignore[union-attr]  # standby: failover only
    entry.by_name["us-east-1"].healthy = False
    assert choose(None).name == "eu-west-1"  # type: ignore[union-attr]
    entry.by_name["eu-west-1"].healthy = False
    assert choose("eu-west-1").name == "sa-east-1"  # type: ignore[union-attr]
    entry.by_name["sa-east-1"].healthy = False
    assert choose(None) is None


def test_entry_routes_by_region_and_fails_over_when_a_region_dies(
        regions: dict[str, tuple[subprocess.Popen[bytes], int]], tmp_path: Path) -> None:
    port = free_port()
    roles = {"us-east-1": "primary", "eu-west-1": "secondary", "sa-east-1": "standby"}
    config = {"port": port, "interval_s": 0.2, "failure_threshold": 3,
              "regions": [{"name": n, "role": roles[n], "url": f"http://127.0.0.1:{p}"}
                          for n, (_proc, p) in regions.items()]}
    (tmp_path / "entry.json").write_text(json.dumps(config))
    entry = subprocess.Popen([sys.executable, "-m", "stackwright.local.global_entry", str(tmp_path / "entry.json")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not port_in_use(port):
            assert time.monotonic() < deadline and entry.poll() is None, "global entry did not start"
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            resp = client.get("/", headers={"x-region": "eu-west-1"})
            assert resp.text == "served by eu-west-1" and resp.headers["x-served-by-region"] == "eu-west-1"
            assert client.get("/").text == "served by us-east-1"
            assert client.get("/", headers={"x-region": "sa-east-1"}).text == "served by us-east-1"

            regions["eu-west-1"][0].kill()
            regions["eu-west-1"][0].wait()
            # Until the checker has seen `threshold` failures the dead region's clients get a 502 problem.
            deadline = time.monotonic() + 20
            while True:
                resp = client.get("/", headers={"x-region": "eu-west-1"})
                if resp.status_code == 200:
                    break
                assert resp.status_code == 502 and resp.headers["content-type"] == "application/problem+json"
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert resp.text == "served by us-east-1"
            view = client.get("/_global/regions").json()["regions"]
            assert view["eu-west-1"]["healthy"] is False and view["eu-west-1"]["consecutive_failures"] >= 3
            assert view["us-east-1"]["healthy"] is True
            metrics = client.get("/_global/metrics").text
            assert 'stackwright_region_healthy{system="",region="eu-west-1",role="secondary"} 0' in metrics
            assert 'stackwright_region_healthy{system="",region="us-east-1",role="primary"} 1' in metrics

            regions["us-east-1"][0].kill()
            regions["us-east-1"][0].wait()
            deadline = time.monotonic() + 20
            while client.get("/").text != "served by sa-east-1":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            regions["sa-east-1"][0].kill()
            regions["sa-east-1"][0].wait()
            deadline = time.monotonic() + 20
            while (resp := client.get("/")).status_code != 503:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert resp.headers["content-type"] == "application/problem+json"
    finally:
        entry.terminate()
        entry.wait(10)
