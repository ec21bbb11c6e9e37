"""A crash-looping process: the supervisor's error says why in one line, not only where the log is."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stackwright.local.supervisor import ProcessSpec, Supervisor, last_error_line

pytestmark = pytest.mark.integration


async def _never() -> bool:
    return False


async def test_a_process_that_keeps_exiting_is_reported_with_its_last_error(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "logs", echo=False)
    crash = "import nothere_module_for_this_test"
    try:
        with pytest.raises(RuntimeError) as err:
            await supervisor.start(ProcessSpec(name="api", argv=[sys.executable, "-c", crash], ready=_never),
                                   ready_timeout_s=120)
    finally:
        await supervisor.stop_all()
    message = str(err.value)
    assert message.startswith("api keeps exiting (code 1): ModuleNotFoundError: No module named "
                              "'nothere_module_for_this_test'; see "), message
    assert message.endswith("api.log")


def test_last_error_line_prefers_the_exception_and_survives_a_missing_log(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("starting\nTraceback (most recent call last):\n  File \"x\"\nValueError: bad port\nbye\n")
    assert last_error_line(log) == "ValueError: bad port"
    log.write_text("only this\n\n")
    assert last_error_line(log) == "only this"
    assert last_error_line(tmp_path / "missing.log") == ""
