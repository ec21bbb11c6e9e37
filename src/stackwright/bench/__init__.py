"""Reproducible benchmarks: open-loop load at fixed rates, latency percentiles from the intended send time,
CPU and memory of the server processes, and the files ``stackwright plan`` reads (``bench/``).

``stackwright bench voting`` runs :class:`~stackwright.bench.voting.VotingBench`; the pieces are usable alone:
:mod:`.loadgen` (the generator), :mod:`.search` (max sustainable rate), :mod:`.stats` (percentiles),
:mod:`.procs` (/proc readings), :mod:`.results` (the result files).
"""

from .loadgen import FixedRequest, LoadGenerator, StepSpec, run_share
from .search import Criteria, find_max_rate
from .stats import StepResult, percentile

__all__ = ["Criteria", "FixedRequest", "LoadGenerator", "StepResult", "StepSpec", "find_max_rate", "percentile",
           "run_share"]
