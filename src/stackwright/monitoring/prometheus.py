"""A real Prometheus for local runs, and per-service numbers read back from it."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from ..spec import System
from . import conventions as c
from .bundle import dump_yaml, scrape_config
from .rules import alert_rules


class PrometheusError(RuntimeError):
    """Prometheus is missing, did not start, or rejected a query; the message says which."""


def query(base_url: str, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Run an instant query against ``base_url`` and return ``data.result`` (the vector)."""
    try:
        resp = httpx.get(f"{base_url.rstrip('/')}/api/v1/query", params={"query": promql}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise PrometheusError(f"cannot reach Prometheus at {base_url}: {exc}") from exc
    try:
        body = resp.json()
    except ValueError:
        raise PrometheusError(f"Prometheus at {base_url} answered {resp.status_code} without JSON") from None
    if body.get("status") != "success":
        raise PrometheusError(f"query {promql!r} failed: {body.get('errorType')}: {body.get('error')}")
    return list(body["data"]["result"])


class LocalPrometheus:
    """Runs the ``prometheus`` binary with the config and rules generated from a system.

    ``targets`` maps service name -> ``["127.0.0.1:port", ...]``. Everything (config, rules, TSDB,
    log) lives in ``data_dir``. Usable as a context manager.
    """

    def __init__(self, system: System, targets: dict[str, list[str]], data_dir: str | Path, port: int = 9090,
                 scrape_interval: str = "5s", binary: str | None = None,
                 metrics_paths: dict[str, str] | None = None,
                 target_labels: dict[str, dict[str, str]] | None = None) -> None:
        self.system = system
        self.target_labels = target_labels
        self.metrics_paths = metrics_paths
        self.targets = targets
        self.data_dir = Path(data_dir)
        self.port = port
        self.scrape_interval = scrape_interval
        self.binary = binary or shutil.which("prometheus")
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        """Where the generated prometheus.yml is written."""
        return self.data_dir / "prometheus.yml"

    def write_config(self) -> Path:
        """Write prometheus.yml and the rule file into ``data_dir``; return the config path."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(dump_yaml(scrape_config(self.system, self.targets, self.scrape_interval,
                                                            rules_file=c.RULES_FILE,
                                                            metrics_paths=self.metrics_paths,
                                                            target_labels=self.target_labels)),
                                encoding="utf-8")
        (self.data_dir / c.RULES_FILE).write_text(dump_yaml(alert_rules(self.system)), encoding="utf-8")
        return self.config_path

    def start(self, timeout: float = 30.0) -> None:
        """Start Prometheus and wait until it reports ready; raises PrometheusError on failure."""
        if self.process is not None:
            return
        if not self.binary:
            raise PrometheusError("the prometheus binary is not on PATH (Debian/Ubuntu: apt-get install prometheus)")
        self.write_config()
        self._log = (self.data_dir / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
             "--storage.tsdb.retention.time=1d"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=self.data_dir,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.process.poll()
            if rc is not None:
                self._close_log()
                self.process = None
                raise PrometheusError(f"prometheus exited with code {rc}: {self._log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(f"prometheus did not become ready on {self.url} within {timeout:.0f}s")

    def reload(self) -> None:
        """Rewrite config and rules (e.g. after targets changed) and ask Prometheus to reload them."""
        self.write_config()
        if self.process is not None:
            httpx.post(f"{self.url}/-/reload", timeout=5.0).raise_for_status()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Prometheus (SIGTERM, then SIGKILL after ``timeout``)."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_log()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; returns the result vector."""
        return query(self.url, promql)

    def __enter__(self) -> LocalPrometheus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self, lines: int = 5) -> str:
        path = self.data_dir / "prometheus.log"
        if not path.exists():
            return ""
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def _by_app(base_url: str, promql: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for sample in query(base_url, promql):
        value = float(sample["value"][1])
        out[sample["metric"].get("app_name", "")] = None if math.isnan(value) or math.isinf(value) else value
    return out


def service_metrics(base_url: str, system: System, window: str = "1m") -> list[dict[str, Any]]:
    """Per HTTP service: request rate (req/s), p95 latency (ms), 5xx share and in-flight requests.

    Reads Prometheus at ``base_url``. Values are None when there is no data yet (no traffic or fewer
    than two scrapes in ``window``). ``targets_up``/``targets`` count the scrape targets of the service's job.
    Rows follow spec order.
    """
    apps = "|".join(c.http_services(system))
    sel = f'{{app_name=~"{apps}"}}'
    sli = f'{{app_name=~"{apps}", path!~"{c.NON_SLI_PATHS}"}}'
    rate = _by_app(base_url, f"sum by (app_name) (rate({c.REQUESTS_TOTAL}{sli}[{window}]))")
    errors = _by_app(base_url, f'sum by (app_name) (rate({c.REQUESTS_TOTAL}{{app_name=~"{apps}", '
                               f'path!~"{c.NON_SLI_PATHS}", status_code=~"5.."}}[{window}]))')
    p95 = _by_app(base_url, f"histogram_quantile(0.95, sum by (app_name, le) "
                            f"(rate({c.REQUEST_DURATION_BUCKET}{sli}[{window}])))")
    flight = _by_app(base_url, f"sum by (app_name) ({c.REQUESTS_IN_PROGRESS}{sel})")
    up: dict[str, tuple[int, int]] = {}
    for sample in query(base_url, f'up{{job=~"{apps}"}}'):
        job = sample["metric"].get("job", "")
        ok, total = up.get(job, (0, 0))
        up[job] = (ok + (float(sample["value"][1]) == 1.0), total + 1)
    rows = []
    for name, svc in c.http_services(system).items():
        r = rate.get(name)
        e = errors.get(name)
        p = p95.get(name)
        rows.append({
            "service": name,
            "kind": svc.kind,
            "request_rate": r,
            "p95_ms": None if p is None else p * 1000,
            "error_rate": (e or 0.0) / r if r else None,
            "in_flight": flight.get(name),
            "targets_up": up.get(name, (0, 0))[0],
            "targets": up.get(name, (0, 0))[1],
        })
    return rows
