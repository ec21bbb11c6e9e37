"""The region-level failover drill, short (marker chaos): a two-region copy of the smallest system (one service
per region), fast health checks, synchronous commit. Every process of the primary region is killed while
writes flow through the global entry; the standby's replica is promoted behind the writer endpoint. Then the
lost region fails back under the same load: rebuilt as a replica of the promoted one, restarted, and made the
primary again in a planned switchover."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import yaml

from stackwright.local.region_outage import run_region_outage
from stackwright.spec import load_system

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.chaos


def two_regions(dest: Path, role: str = "standby") -> Path:
    """A copy of systems/fastapi-app at ``dest`` with a second region (``us-west-2``, ``role``) and the test
    RegionLoad; returns its system.yaml."""
    shutil.copytree(ROOT / "systems" / "fastapi-app", dest, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    shutil.copy(ROOT / "tests" / "fixtures" / "regions" / "drills.py", dest / "drills.py")
    spec_path = dest / "system.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["regions"].append({"name": "us-west-2", "role": role, "vpc_cidr": "10.1.0.0/16"})
    spec["resources"]["db"].update(engine="aurora-postgresql", instance_class="db.r6g.large",
                                   cross_region_replicas=True)
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return spec_path


def test_losing_the_primary_region_loses_no_acknowledged_write(tmp_path: Path) -> None:
    system = load_system(two_regions(tmp_path / "app"))
    result = asyncio.run(run_region_outage(system, tmp_path / "state", commit="sync", interval_s=0.5,
                                           threshold=2, warmup_s=1.5, report=lambda _m: None))
    assert result.scope == "region"
    assert (result.killed, result.promoted) == ("ap-southeast-1", "us-west-2")
    assert {"postgres", "gateway", "api"} <= set(result.killed_processes)
    assert result.acked_before_kill > 0
    # Detection cannot beat the entry's health checks: (threshold - 1) x interval after the first failed check,
    # which may come right after the loss.
    assert result.detected_after_s >= 0.5
    assert result.failed_writes > 0 and result.rto_s is not None and result.rto_s > 0
    assert result.lost_acked == 0  # synchronous commit: the standby had every acknowledged write
    assert result.lost_after_kill == 0
    assert result.acked_total > result.acked_before_kill
    # Fail-back: the old primary was rewound (or re-cloned) onto the promoted server, the standby rebuilt to
    # follow it after the switchover, the entry sends the primary's clients home, and nothing acknowledged is lost.
    assert result.failback in ("pg_rewind", "basebackup")
    assert result.failback_rebuilt == {"us-west-2": result.failback_rebuilt["us-west-2"]}
    assert not result.failback_rebuilt["us-west-2"].startswith("failed")
    assert result.lost_after_failback == 0
    assert result.failback_served_by == "ap-southeast-1"
    assert result.failback_gap_s is not None and result.failback_gap_s > 0
    assert all(met for _what, met in result.verdicts()), result.verdicts()
