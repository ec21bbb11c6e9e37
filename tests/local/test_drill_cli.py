"""``stackwright drill region-failover`` refuses what it cannot drill, in one line, before starting anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = f"import sys\nfrom stackwright.cli import main\nsys.argv = ['stackwright', *{list(args)!r}]\nmain()\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_one_region_system_is_refused_without_a_traceback(tmp_path: Path) -> None:
    done = _cli("drill", "region-failover", str(ROOT / "systems" / "fastapi-app" / "system.yaml"),
                "--state-dir", str(tmp_path))
    assert done.returncode != 0
    assert "needs a second one" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_a_bad_interval_is_a_usage_error(tmp_path: Path) -> None:
    done = _cli("drill", "region-failover", "voting", "--interval", "0", "--state-dir", str(tmp_path))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_a_system_without_region_writes_is_refused_before_starting(tmp_path: Path) -> None:
    # files has standby and secondary regions but no RegionLoad in a drills.py: the region scope cannot drill it.
    done = _cli("drill", "region-failover", "files", "--state-dir", str(tmp_path))
    assert done.returncode != 0
    assert "has no RegionLoad" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_a_partition_of_a_one_region_system_or_an_unknown_region_is_refused(tmp_path: Path) -> None:
    done = _cli("drill", "region-partition", str(ROOT / "systems" / "fastapi-app" / "system.yaml"),
                "--state-dir", str(tmp_path))
    assert done.returncode != 0 and "needs a second one" in done.stderr + done.stdout
    done = _cli("drill", "region-partition", "voting", "--region", "mars-north-1", "--state-dir", str(tmp_path))
    assert done.returncode != 0 and "mars-north-1 is not a non-primary region" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    # Refused before anything was made: the message must not point at a data folder that does not exist.
    assert "data kept" not in done.stderr + done.stdout
