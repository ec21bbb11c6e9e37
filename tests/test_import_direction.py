"""Data flows one way (spec -> local | render | plan) and the spec layer stays light: importing the spec,
its env wiring, render and plan pulls in none of the runtime's web/database stack, and render and plan
never import ``stackwright.local``. Checked in a fresh interpreter, so the test suite's own imports don't
count."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("fastapi", "starlette", "uvicorn", "asyncpg", "jwt", "redis", "aiohttp", "aws_cdk", "jsii")


def _modules_after(*imports: str) -> set[str]:
    code = (f"import sys\nfor m in {imports!r}: __import__(m)\n"
            "import json\nprint(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_spec_and_wiring_import_nothing_heavy() -> None:
    loaded = _modules_after("stackwright.spec", "stackwright.spec.wiring", "stackwright.contract")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
    assert not {m for m in loaded if m.startswith(("stackwright.runtime", "stackwright.local"))}


def test_render_and_plan_do_not_import_local_or_the_runtime() -> None:
    loaded = _modules_after("stackwright.render", "stackwright.render.k8s", "stackwright.plan")
    assert not {m for m in loaded if m.startswith(("stackwright.local", "stackwright.runtime"))}
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
