"""Data flows one way (spec -> local | render | plan) and the spec layer stays light: importing the spec,
its env wiring, render and plan pulls in none of the runtime's web/database stack, and render and plan
never import ``stackwright.local``. Checked in a fresh interpreter, so the test suite's own imports don't
count."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("fastapi", "starlette", "uvicorn", "asyncpg", "jwt", "redis", "aiohttp", "aws_cdk", "jsii")


def _modules_after(*imports: str, then: str = "") -> set[str]:
    code = (f"import sys\nfor m in {imports!r}: __import__(m)\n{then}\n"
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


def test_the_cli_starts_without_the_runtime_or_the_planner() -> None:
    """Every command module is imported when the CLI starts: one that imports the runtime (fastapi, asyncpg, ...)
    or the planner at the top makes every command pay for it, e.g. ``up`` refusing a running system took
    seconds. The commands that need them import them when they run."""
    loaded = _modules_after("stackwright.cli", then="import stackwright.cli as cli\ncli._register()")
    assert "stackwright.cli.queue_cmds" in loaded and "stackwright.cli.drill_cmds" in loaded
    assert not {m for m in loaded if m.startswith(("stackwright.runtime", "stackwright.plan"))}
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
