"""prometheus.yml for local runs, and the Prometheus + Grafana bundle (docker-compose, provisioning)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from ..spec import System
from .conventions import DATASOURCE_UID, RULES_FILE
from .dashboard import grafana_dashboard
from .rules import alert_rules

_JOB_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]*$")
PROMETHEUS_IMAGE = "prom/prometheus:v2.53.4"
GRAFANA_IMAGE = "grafana/grafana:11.6.0"
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3001  # as in seed 003


class _Dumper(yaml.SafeDumper):
    """Safe YAML with block style for multi-line strings (PromQL reads better that way), no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    """Deterministic YAML text (key order kept, multi-line strings as blocks)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=10_000,
                     allow_unicode=True)


def scrape_config(system: System, targets: dict[str, list[str]], scrape_interval: str = "5s",
                  rules_file: str = RULES_FILE, metrics_paths: dict[str, str] | None = None,
                  target_labels: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """prometheus.yml content: one scrape job per target group (``job`` = service name) over ``targets``.

    ``targets`` maps a service to its ``host:port`` addresses; those targets get ``service`` and ``system``
    labels. Other names (e.g. ``edge`` for the local gateway) become jobs too, labelled ``component``
    instead of ``service``, after the spec's services. ``rule_files`` points at ``rules_file``, which
    Prometheus resolves relative to the directory of prometheus.yml. Raises ValueError for a name that
    cannot be a job name. ``metrics_paths`` overrides ``/metrics`` per job (the local gateway serves its
    ``/metrics`` on a local-only port of its own, so its target is that port). ``target_labels`` adds labels
    to single ``host:port`` targets (a canary rehearsal's pod-template hashes); a job's targets with different
    extra labels go into separate static configs, in the order first met.
    """
    bad = sorted(n for n in targets if not _JOB_NAME.fullmatch(n))
    if bad:
        raise ValueError(f"scrape target names must look like service names: {', '.join(bad)}")
    names = [n for n in system.services if n in targets] + sorted(set(targets) - set(system.services))
    jobs = []
    for name in names:
        kind = "service" if name in system.services else "component"
        groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
        for target in targets[name]:
            groups.setdefault(tuple(sorted((target_labels or {}).get(target, {}).items())), []).append(target)
        jobs.append({
            "job_name": name,
            "metrics_path": (metrics_paths or {}).get(name, "/metrics"),
            "scrape_interval": scrape_interval,
            "static_configs": [{"targets": group, "labels": {kind: name, "system": system.name, **dict(extra)}}
                               for extra, group in groups.items()],
        })
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval,
                   "external_labels": {"system": system.name}},
        "rule_files": [rules_file],
        "scrape_configs": jobs,
    }


def grafana_datasource() -> dict[str, Any]:
    """Grafana datasource provisioning file pointing at the compose Prometheus."""
    return {"apiVersion": 1, "datasources": [{
        "name": "Prometheus", "uid": DATASOURCE_UID, "type": "prometheus", "access": "proxy",
        "url": f"http://prometheus:{PROMETHEUS_PORT}", "isDefault": True, "editable": False,
        "jsonData": {"timeInterval": "15s"},
    }]}


def grafana_dashboard_provider(system: System) -> dict[str, Any]:
    """Grafana dashboard-provider provisioning file loading dashboards from /var/lib/grafana/dashboards."""
    return {"apiVersion": 1, "providers": [{
        "name": "stackwright", "folder": system.name, "type": "file", "disableDeletion": True,
        "allowUiUpdates": False, "updateIntervalSeconds": 30,
        "options": {"path": "/var/lib/grafana/dashboards", "foldersFromFilesStructure": False},
    }]}


def docker_compose() -> dict[str, Any]:
    """docker-compose.yml for Prometheus and Grafana, as in seed 003 (Grafana on port 3001)."""
    return {
        "services": {
            "prometheus": {
                "image": PROMETHEUS_IMAGE,
                "ports": [f"{PROMETHEUS_PORT}:9090"],
                "command": ["--config.file=/etc/prometheus/prometheus.yml",
                            "--storage.tsdb.path=/prometheus", "--web.enable-lifecycle"],
                "volumes": ["./prometheus:/etc/prometheus:ro", "prometheus_data:/prometheus"],
                "extra_hosts": ["host.docker.internal:host-gateway"],
                "restart": "unless-stopped",
            },
            "grafana": {
                "image": GRAFANA_IMAGE,
                "ports": [f"{GRAFANA_PORT}:3000"],
                "environment": {"GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD:-admin}",
                                "GF_USERS_ALLOW_SIGN_UP": "false"},
                "volumes": ["grafana_data:/var/lib/grafana",
                            "./grafana/provisioning:/etc/grafana/provisioning:ro",
                            "./grafana/dashboards:/var/lib/grafana/dashboards:ro"],
                "depends_on": ["prometheus"],
                "restart": "unless-stopped",
            },
        },
        "volumes": {"prometheus_data": {}, "grafana_data": {}},
    }


def default_targets(system: System) -> dict[str, list[str]]:
    """Scrape targets for the compose bundle: each service on the Docker host at its spec port."""
    return {name: [f"host.docker.internal:{svc.port}"] for name, svc in system.services.items()}


def write_monitoring_bundle(system: System, out_dir: str | Path, targets: dict[str, list[str]] | None = None,
                            scrape_interval: str = "15s") -> list[Path]:
    """Write the monitoring bundle for ``system`` into ``out_dir`` and return the files written.

    Layout::

        docker-compose.yml
        prometheus/prometheus.yml
        prometheus/alert_rules.yml
        grafana/provisioning/datasources/datasource.yml
        grafana/provisioning/dashboards/dashboards.yml
        grafana/dashboards/<system>.json

    ``targets`` defaults to every service on ``host.docker.internal`` at its spec port (point it at
    the load balancer for an EKS deployment, as the seed does). The output is byte-for-byte
    deterministic for the same inputs.
    """
    out = Path(out_dir)
    files: dict[str, str] = {
        "docker-compose.yml": dump_yaml(docker_compose()),
        "prometheus/prometheus.yml": dump_yaml(
            scrape_config(system, targets or default_targets(system), scrape_interval)),
        f"prometheus/{RULES_FILE}": dump_yaml(alert_rules(system)),
        "grafana/provisioning/datasources/datasource.yml": dump_yaml(grafana_datasource()),
        "grafana/provisioning/dashboards/dashboards.yml": dump_yaml(grafana_dashboard_provider(system)),
        f"grafana/dashboards/{system.name}.json": json.dumps(grafana_dashboard(system), indent=2) + "\n",
    }
    written = []
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
