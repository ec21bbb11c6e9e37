"""``stackwright monitoring`` writes the bundle; ``stackwright metrics`` fails in one line without Prometheus."""

from __future__ import annotations

import socket
from pathlib import Path

import typer
from typer.testing import CliRunner

from stackwright.cli.monitoring_cmds import register

REPO = Path(__file__).resolve().parents[2]


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_monitoring_writes_bundle(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["monitoring", str(REPO / "systems/voting"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "docker-compose.yml").is_file()
    assert (tmp_path / "prometheus" / "alert_rules.yml").is_file()
    assert (tmp_path / "grafana" / "dashboards" / "voting.json").is_file()


def test_metrics_without_prometheus_fails_in_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(_app(), ["metrics", str(REPO / "systems/fastapi-app"),
                                         "--prometheus-url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 2
    assert "cannot reach Prometheus" in result.output


def test_unknown_system_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["monitoring", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert not (tmp_path / "o").exists()
