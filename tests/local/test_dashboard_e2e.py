"""Issue 17 end to end: ``stackwright up`` (fastapi-app, the smaller system) serves its dashboard; the
snapshot, the log stream and ``stackwright logs`` read the real run; and headless Chromium loads the page
and watches the topology, live numbers, and a ``kill -9`` of a service showing as down and then back.

One run for the module, with a private state dir and free ports (gateway and dashboard)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers import system_up
from tests.optional import require_chromium

from stackwright.local.dashboard.layout import layout
from stackwright.local.ports import free_port
from stackwright.spec import load_system

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "systems" / "fastapi-app" / "system.yaml"


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"within {timeout_s:.0f}s: {what}")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """fastapi-app up in the background with its dashboard; its state (gateway, dashboard URLs)."""
    root = tmp_path_factory.mktemp("dash-state")
    dash_port = free_port()
    with system_up(SPEC, root, extra_args=["--dashboard-port", str(dash_port)]) as state:
        state["state_root"] = root
        yield state


def snapshot(run: dict[str, Any]) -> dict[str, Any]:
    return httpx.get(run["dashboard"] + "/api/snapshot", timeout=5).json()


def traffic(run: dict[str, Any], n: int) -> None:
    with httpx.Client(base_url=run["gateway"], timeout=10) as client:
        for _ in range(n):
            assert client.get("/items").status_code == 200


def api_pid(run: dict[str, Any]) -> int:
    state = json.loads((run["state_root"] / "fastapi-app" / "state.json").read_text())
    return int(state["processes"]["api"]["pid"])


def test_dashboard_is_local_only_and_printed_in_the_state(run: dict[str, Any]) -> None:
    assert run["dashboard"].startswith("http://127.0.0.1:")
    page = httpx.get(run["dashboard"] + "/", timeout=5)
    assert page.status_code == 200
    assert 'data-node="svc-api"' in page.text and 'data-node="res-db"' in page.text
    # No CDN: every script, style sheet and image comes from the dashboard itself.
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page.text)
    js = httpx.get(run["dashboard"] + "/static/dashboard.js", timeout=5)
    assert js.status_code == 200 and "EventSource" in js.text


def test_snapshot_shows_health_and_live_route_figures(run: dict[str, Any]) -> None:
    snap = snapshot(run)
    assert snap["status"] == "ready"
    assert snap["nodes"]["svc-api"]["health"] == "up" and snap["nodes"]["edge"]["health"] == "up"
    assert {p["name"] for p in snap["processes"]} >= {"gateway", "api", "postgres", "dashboard"}

    def items_route() -> dict[str, Any] | None:
        routes = snapshot(run)["services"]["api"]["routes"]
        return next((r for r in routes if (r["method"], r["path"]) == ("GET", "/items") and r["rps"] > 0
                     and r["total"] >= 35), None)

    traffic(run, 10)
    wait_for(lambda: snapshot(run)["services"]["api"]["routes"], 10, "the first metrics reading")
    traffic(run, 25)
    route = wait_for(items_route, 15, "GET /items shows a request rate and all 35 requests")
    assert route["p95_ms"] is not None and route["error_share"] == 0.0


def test_log_stream_and_logs_command(run: dict[str, Any]) -> None:
    with httpx.stream("GET", run["dashboard"] + "/api/logs", timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events: list[tuple[str, Any]] = []
        event = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((event, json.loads(line.removeprefix("data: "))))
                if event == "lines":
                    break
    assert events[0][0] == "reset" and "api" in events[0][1]["processes"]
    assert any(ln["process"] == "api" and "Uvicorn running" in ln["text"] for ln in events[1][1])

    cli = [sys.executable, "-m", "stackwright.cli", "logs", str(SPEC), "--state-dir", str(run["state_root"])]
    out = subprocess.run([*cli, "api", "--tail", "3"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert len(out.splitlines()) == 3 and all(ln.startswith("api | ") for ln in out.splitlines())
    bad = subprocess.run([*cli, "nope"], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode != 0
    assert "no process 'nope'; its processes: api, dashboard, gateway, postgres" in bad.stdout + bad.stderr


def test_real_browser_sees_topology_live_numbers_and_a_killed_service(run: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    chromium, chromedriver = require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1300,1100"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        driver.get(run["dashboard"] + "/")
        assert "chrome" in driver.capabilities["browserName"].lower()

        def node(node_id: str) -> Any:
            return driver.find_element(By.CSS_SELECTOR, f'[data-node="{node_id}"]')

        def text_of(selector: str) -> list[str]:
            # Read in one script call: the page replaces table rows every second, so element handles held
            # across calls would go stale.
            return driver.execute_script(
                "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)", selector)

        spec = load_system(SPEC)
        for n in layout(spec).nodes:  # every service, every resource and the gateway are drawn
            assert node(n.id).find_element(By.CSS_SELECTOR, ".label").text == n.label
        wait_for(lambda: node("svc-api").get_attribute("data-health") == "up", 15, "api shown as up")

        def items_total() -> float:
            cells = text_of('tr[data-service="api"][data-route="GET /items"] td')
            return float(cells[6]) if cells else 0.0

        before = items_total()
        traffic(run, 20)
        wait_for(lambda: items_total() >= before + 20, 15, "the routes table counts the new requests")
        wait_for(lambda: (line := text_of('[data-node="svc-api"] .line2')[0]).endswith("%")
                 and not line.startswith("0.0/s"), 15, "the api node shows a request rate and error share")
        mid = items_total()
        traffic(run, 15)
        wait_for(lambda: items_total() >= mid + 15, 15, "the numbers keep updating")
        driver.save_screenshot(str(tmp_path / "before-kill.png"))

        def restarts() -> int:
            cells = text_of('tr[data-process="api"] td')
            return int(cells[4]) if cells else -1

        restarts_before = restarts()
        pid = api_pid(run)
        os.kill(pid, signal.SIGKILL)
        seen = wait_for(lambda: (h := node("svc-api").get_attribute("data-health")) != "up" and h, 10,
                        "api shown as not up after kill -9")
        assert seen in ("down", "starting", "not ready")
        wait_for(lambda: node("svc-api").get_attribute("data-health") == "up", 90, "api shown as up again")
        wait_for(lambda: restarts() == restarts_before + 1, 10, "the restarts count went up by one")
        assert api_pid(run) != pid
        wait_for(lambda: f"pid {api_pid(run)}" in text_of('[data-node="svc-api"] .line1')[0], 10, "the new pid shown")
        # The page did not break: the log panel still streams, and names the restart.
        wait_for(lambda: "[supervisor] api exited with code -9" in text_of("#logs")[0], 10,
                 "the supervisor's restart note in the log panel")
    finally:
        driver.quit()
