"""``python -m stackwright.cli``."""

from . import main

main()
