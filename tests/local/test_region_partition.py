"""Network partition of a secondary region (marker chaos), on real servers: a two-region copy of fastapi-app
whose second region is a secondary. The region's link to the primary is cut (its replica's WAL stream and its
services' writes both go through it): its reads stay served from the replica, stale, with the lag reported and
growing; its writes are refused with problem+json, none acknowledged and lost; after the heal the replica
catches up and the region reads and writes again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.local.test_region_outage import two_regions

from stackwright.local.region_partition import run_partition
from stackwright.spec import load_system

pytestmark = pytest.mark.chaos


def test_a_partitioned_secondary_serves_stale_reads_and_refuses_writes_cleanly(tmp_path: Path) -> None:
    system = load_system(two_regions(tmp_path / "app", role="secondary"))
    result = asyncio.run(run_partition(system, tmp_path / "state", seconds=4.0, interval_s=0.5, threshold=2,
                                       report=lambda _m: None))
    assert result.region == "us-west-2"
    assert result.primary_writes_acked > 0
    # Reads of a key written before the cut keep being served there; a key written during the cut is not there.
    assert result.reads_tried > 0 and result.reads_served == result.reads_tried
    assert result.stale_reads == 1
    # The lag, measured as status measures it, grows in bytes; the stream is down; the entry's metric shows it.
    sized = [s["bytes"] for s in result.lag if s["bytes"] is not None]
    assert len(sized) >= 2 and sized[-1] > sized[0] > 0
    assert not result.lag[-1]["streaming"]
    assert result.lag[-1]["seconds"] is not None and result.lag[-1]["seconds"] > 0
    assert result.metric_lag_bytes_max is not None and result.metric_lag_bytes_max > 0
    # Writes through the cut region: refused with problem+json (503), none acknowledged.
    assert result.region_answers.get("503", 0) > 0
    assert result.region_refusals_not_problem_json == 0
    assert result.region_writes_acked == 0 and result.region_acked_missing == 0
    # Healed: caught up, the write made during the cut is read there, and the region writes again.
    assert result.caught_up_after_s is not None
    assert result.fresh_read_after_heal is True
    assert result.region_write_after_heal
    assert all(met for _what, met in result.verdicts()), result.verdicts()
