"""Reproducible benchmarks: open-loop load at fixed rates, latency percentiles from the intended send time,
CPU and memory of the server processes, and the files ``stackwright plan`` reads (``bench/``).

``stackwright bench SYSTEM`` runs the system's ``bench.py`` plug-in (:mod:`stackwright.plugins`), which builds
on :class:`~stackwright.bench.harness.SystemBench`; the pieces are usable alone: :mod:`.loadgen` (the
generator), :mod:`.sources` (request shapes, dev tokens), :mod:`.search` (max sustainable rate),
:mod:`.stats` (percentiles), :mod:`.procs` (/proc readings), :mod:`.results` (the result files).
"""

from .loadgen import FixedRequest, LoadGenerator, StepSpec, run_share
from .search import Criteria, find_max_rate
from .stats import StepResult, percentile

__all__ = ["Criteria", "FixedRequest", "LoadGenerator", "StepResult", "StepSpec", "find_max_rate", "percentile",
           "run_share"]
