"""The local dashboard of ``stackwright up``: topology, health, request figures, queues and live logs.

One concept per module: :mod:`.layout` (the spec as a layered graph), :mod:`.svg` (drawing it),
:mod:`.metrics` (Prometheus text -> per-route figures), :mod:`.collector` (what the page shows, gathered
from the run), :mod:`.app` (the Starlette app) and ``static/`` (the page, its script and style sheet).
Run as its own process (``python -m stackwright.local.dashboard``), bound to 127.0.0.1.
"""
