"""Entry point of one load generator process: ``python -m stackwright.bench.genworker OFFSET STRIDE``."""

import sys

from stackwright.bench.loadgen import worker_main

if __name__ == "__main__":
    worker_main(int(sys.argv[1]), int(sys.argv[2]))
