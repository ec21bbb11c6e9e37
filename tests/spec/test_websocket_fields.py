"""WebSocket route limits in the spec (``max_connections``, ``idle_timeout_s``): accepted on
``websocket: true`` routes (the streaming fixture), refused with file:line elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fixtures.load import edited, fixture, line_of

from stackwright.spec import SpecError, load_system


def test_streaming_fixture_carries_the_limits() -> None:
    route = fixture("streaming").services["gateway"].routes[0]
    assert (route.websocket, route.max_connections, route.idle_timeout_s) == (True, 50, 30)


def test_limits_on_a_plain_route_are_refused_with_its_line(tmp_path: Path) -> None:
    path = edited("streaming", tmp_path,
                  lambda s: s["services"]["gateway"]["routes"][1].update(idle_timeout_s=10))
    with pytest.raises(SpecError, match="idle_timeout_s applies to websocket: true routes only") as info:
        load_system(path)
    assert f"system.yaml:{line_of(path, 'path: /health')}" in str(info.value)


def test_schema_documents_the_fields() -> None:
    from stackwright.spec.schema import json_schema

    route = json_schema()["$defs"]["Route"]["properties"]
    assert "not the ALB's" in route["idle_timeout_s"]["description"]
    assert "per replica" in route["max_connections"]["description"]
