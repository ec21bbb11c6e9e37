"""Make docs/images/dashboard-voting*.png: steady traffic through a running voting system's gateway, then
headless Chromium screenshots of its dashboard (and of it after a kill -9 of the results service).

    stackwright up voting -d && python docs/images/screenshot_voting.py [--state-dir .stackwright]

Needs selenium and Debian's chromium + chromium-driver (the browser test's set-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import time
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from stackwright.local.demokit import idp_for
from stackwright.spec import load_system

OUT = Path(__file__).with_name("dashboard-voting.png")
# The second picture: a service just killed with -9 (restarting), and the log panel filtered to it.
RESTART = Path(__file__).with_name("dashboard-voting-restart.png")


async def traffic(gateway: str, idp, seconds: float, started: asyncio.Event) -> None:
    """Votes from many viewers, result reads and a few refused requests, for ``seconds``."""
    admin = {"authorization": f"Bearer {idp.mint('shot-admin', ['admin'])}"}
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as client:
        poll = (await client.post("/polls", json={"title": "Screenshot", "options": ["A", "B"]}, headers=admin)).json()
        await client.post(f"/polls/{poll['id']}/open", headers=admin)
        viewers = [{"authorization": f"Bearer {idp.mint(f'viewer-{i}')}"} for i in range(300)]
        end = time.monotonic() + seconds
        started.set()
        rng = random.Random(3)

        async def one(i: int) -> None:
            while time.monotonic() < end:
                v = viewers[rng.randrange(len(viewers))]
                await client.post(f"/polls/{poll['id']}/votes", json={"option": rng.choice("AB")}, headers=v)
                await client.get(f"/polls/{poll['id']}/results")
                if rng.random() < 0.05:
                    await client.post(f"/polls/{poll['id']}/votes", json={"option": "Z"}, headers=v)
                await asyncio.sleep(0.02)

        await asyncio.gather(*(one(i) for i in range(12)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--state-dir", type=Path, default=Path(".stackwright"))
    args = ap.parse_args()
    system = load_system("voting")
    sdir = args.state_dir / "voting"
    state = json.loads((sdir / "state.json").read_text())
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1320"):
        opts.add_argument(a)
    driver = webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(state["dashboard"])

        async def run() -> None:
            started = asyncio.Event()
            load = asyncio.create_task(traffic(state["gateway"], idp_for(system, sdir / "idp-key.pem"), 16, started))
            await started.wait()
            await asyncio.sleep(12)
            driver.save_screenshot(str(OUT))
            await load
            state_now = json.loads((sdir / "state.json").read_text())
            os.kill(state_now["processes"]["results"]["pid"], signal.SIGKILL)
            await asyncio.sleep(1.6)
            driver.execute_script(
                "const s = document.querySelector('#log-process'); s.value = 'results';"
                "s.dispatchEvent(new Event('change'));"
                "document.querySelector('#logs-panel').scrollIntoView({block: 'end'});")
            await asyncio.sleep(0.3)
            driver.save_screenshot(str(RESTART))

        asyncio.run(run())
    finally:
        driver.quit()
    for path in (OUT, RESTART):
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
