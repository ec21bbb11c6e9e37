# Developer shortcuts. `make bench` measures the voting system under open-loop load (about 15 minutes)
# and rewrites bench/results/<date>.json, bench/RESULTS.md and bench/per_replica.json.

VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
# Seconds to wait for a quiet machine (1-minute load average < QUIET_LOAD) before measuring.
WAIT_QUIET ?= 0
QUIET_LOAD ?= 0.5
# e.g. BENCH_ARGS='--redis-fsync everysec' (how the recorded run in bench/RESULTS.md was made)
BENCH_ARGS ?=

.PHONY: bench test

bench:
	$(PYTHON) -m stackwright.cli bench voting --wait-quiet $(WAIT_QUIET) --quiet-load $(QUIET_LOAD) $(BENCH_ARGS)

test:
	$(PYTHON) -m pytest tests systems -q -m "not chaos"
