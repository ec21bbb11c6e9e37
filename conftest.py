"""Markers every test gets from what it uses, so the suite can be cut by kind (README, "Test markers"):

* ``checkers`` — runs a third-party checker (kubernetes-validate, CRD schemas, checkov, cfn-lint, promtool);
* ``integration`` — talks to real servers the tests start (Postgres, Redis, service processes);
* ``chaos`` — fault drills (kill -9 while traffic flows); marked by hand, slow;
* ``unit`` — none of the above (it may still start a small in-process or loopback server).
"""

from __future__ import annotations

import pytest

CHECKER_FIXTURES = frozenset({"checkov_exe", "checks_extra"})
# Real servers: the shared Postgres/Redis fixtures, and each system's session bring-up (systems/*/tests/conftest.py:
# a whole system started with start_detached). A test using one, directly or through another fixture, is
# ``integration`` (``item.fixturenames`` is the whole closure).
SERVER_FIXTURES = frozenset({"postgres_server", "redis_server", "fresh_db",
                             "running", "voting", "payments", "files", "speech"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & CHECKER_FIXTURES:
            item.add_marker(pytest.mark.checkers)
        if used & SERVER_FIXTURES:
            item.add_marker(pytest.mark.integration)
        if not any(item.get_closest_marker(m) for m in ("checkers", "integration", "chaos")):
            item.add_marker(pytest.mark.unit)
