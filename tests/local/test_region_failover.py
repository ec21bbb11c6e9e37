"""The region failover drill, short: two regions, fast health checks, synchronous commit (marker chaos)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stackwright.local.region_drill import run_failover

pytestmark = pytest.mark.chaos


def test_region_failover_loses_no_acknowledged_write_and_fails_back(tmp_path: Path) -> None:
    result = asyncio.run(run_failover(tmp_path, ["us-east-1", "eu-west-1"], commit="sync", interval_s=0.3,
                                      threshold=3, rate=40, warmup_s=1.0, report=lambda _m: None))
    assert result.killed == "us-east-1" and result.promoted == "eu-west-1"
    assert result.acked_before_kill > 0
    # Detection cannot beat the health checks: threshold x interval at the least.
    assert result.detected_after_s >= 0.9
    assert result.failed_writes > 0 and result.rto_s is not None and result.rto_s > 0
    assert result.lost_acked == 0  # synchronous commit: the standby had every acknowledged write
    assert result.failback == "pg_rewind"
    assert result.lost_after_failback == 0
    assert result.acked_total > result.acked_before_kill
