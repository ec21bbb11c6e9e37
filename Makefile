# Developer shortcuts. `make bench` measures a system (SYSTEM, default voting: about 15 minutes) and rewrites
# bench/results/<system>/<date>.json, its block of bench/RESULTS.md and bench/per_replica.json.

VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
# Seconds to wait for a quiet machine (1-minute load average < QUIET_LOAD) before measuring.
WAIT_QUIET ?= 0
QUIET_LOAD ?= 0.5
# e.g. BENCH_ARGS='--redis-fsync everysec' (how the recorded run in bench/RESULTS.md was made)
BENCH_ARGS ?=
SYSTEM ?= voting

.PHONY: bench test

bench:
	$(PYTHON) -m stackwright.cli bench $(SYSTEM) --wait-quiet $(WAIT_QUIET) --quiet-load $(QUIET_LOAD) $(BENCH_ARGS)

test:
	$(PYTHON) -m pytest tests systems -q -m "not chaos"
