"""Metric names, label conventions and PromQL building blocks shared by rules, dashboards and queries.

Label convention (the one place it is written down):

* ``app_name`` is set by the service itself (starlette-exporter, via ``stackwright.runtime``) to the
  service name from the spec. Every query on the ``starlette_*`` metrics selects on it, so rules and
  dashboards work no matter how the series were scraped (local static config or a Kubernetes
  ServiceMonitor).
* ``job`` is the service name. The local scrape config uses one job per service; on Kubernetes the
  Service object carries the service name, which is what a ServiceMonitor puts into ``job``.
  ``up{job="<service>"}`` therefore answers "is any replica of this service being scraped".
* ``service`` and ``system`` are attached as target labels by the scrape config and as static labels
  by every recording rule and alert stackwright generates. Recorded series are named
  ``service:<metric>:<aggregation>`` (or ``queue:...`` for queue series) after the Prometheus naming
  practice ``level:metric:operations``, and always carry ``service``/``queue`` and ``system``.
* ``queue`` on the ``stackwright_queue_*``/``stackwright_worker_*`` gauges is the resource name of the
  queue in the spec. Several worker replicas report the same queue, so queries take ``max by (queue)``.
"""

from __future__ import annotations

from ..spec import Service, System

# --- metrics exported by every service through the runtime (starlette-exporter names)
REQUESTS_TOTAL = "starlette_requests_total"
REQUEST_DURATION_BUCKET = "starlette_request_duration_seconds_bucket"
REQUESTS_IN_PROGRESS = "starlette_requests_in_progress"

# --- metrics exported by queue workers
QUEUE_DEPTH = "stackwright_queue_depth"
QUEUE_DLQ_DEPTH = "stackwright_queue_dlq_depth"
WORKER_LAG_SECONDS = "stackwright_worker_lag_seconds"
MESSAGES_PROCESSED_TOTAL = "stackwright_messages_processed_total"

# --- replication of a primary-region database to the other regions (labels: system, resource, region)
REPLICATION_LAG_SECONDS = "stackwright_replication_lag_seconds"
REPLICATION_LAG_BYTES = "stackwright_replication_lag_bytes"

# Paths that are not user traffic (probes, scrapes) and so stay out of the SLIs.
NON_SLI_PATHS = "/metrics|/health|/healthz|/readyz|/livez"

# Default file name of the generated rule file, next to prometheus.yml.
RULES_FILE = "alert_rules.yml"

# Grafana datasource uid the dashboards refer to and the provisioning file declares.
DATASOURCE_UID = "stackwright-prometheus"


def http_services(system: System) -> dict[str, Service]:
    """Services that answer HTTP traffic (APIs and web front-ends), in spec order; workers are left out."""
    return {name: svc for name, svc in system.services.items() if svc.kind != "worker"}


def queue_names(system: System) -> list[str]:
    """Queue resources of the system, in spec order."""
    return list(system.resources_of("queue"))


def selector(service: str, *extra: str) -> str:
    """Label selector for one service's starlette metrics, e.g. ``{app_name="api"}``."""
    return "{" + ", ".join([f'app_name="{service}"', *extra]) + "}"


def sli_selector(service: str, *extra: str) -> str:
    """Selector for one service's user traffic (probe and scrape paths excluded)."""
    return selector(service, f'path!~"{NON_SLI_PATHS}"', *extra)


def request_rate(service: str, window: str = "5m", *, sli: bool = False) -> str:
    """Requests per second of one service over ``window``."""
    sel = sli_selector(service) if sli else selector(service)
    return f"sum(rate({REQUESTS_TOTAL}{sel}[{window}]))"


def error_rate(service: str, window: str = "5m", *, sli: bool = False) -> str:
    """5xx responses per second of one service over ``window``."""
    sel = sli_selector(service, 'status_code=~"5.."') if sli else selector(service, 'status_code=~"5.."')
    return f"sum(rate({REQUESTS_TOTAL}{sel}[{window}]))"


def error_ratio(service: str, window: str) -> str:
    """Fraction of user requests answered with a 5xx over ``window`` (the availability SLI)."""
    return f"{error_rate(service, window, sli=True)} / {request_rate(service, window, sli=True)}"


def latency_quantile(service: str, quantile: float, window: str = "5m") -> str:
    """Latency quantile (seconds) of one service's user requests, from the duration histogram."""
    sel = sli_selector(service)
    return f"histogram_quantile({quantile}, sum by (le) (rate({REQUEST_DURATION_BUCKET}{sel}[{window}])))"


def in_progress(service: str) -> str:
    """Requests being served right now by all replicas of one service."""
    return f"sum({REQUESTS_IN_PROGRESS}{selector(service)})"


def queue_gauge(metric: str, queue: str) -> str:
    """The worst (max over replicas) value of a per-queue gauge."""
    return f'max({metric}{{queue="{queue}"}})'
