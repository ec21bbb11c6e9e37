"""Canary releases with Argo Rollouts: a Rollout that runs the Deployment's pod template
(``workloadRef``) through the spec's weight steps, judged by an AnalysisTemplate built from the spec's
rollback thresholds (``rollout.analysis``) on the metrics every service exports.

No data is never a success. Every check answers only when the canary served at least
``rollout.analysis.min_requests`` requests in the window (the query returns nothing otherwise) and the
value is a number; each metric has a successCondition and a failureCondition that are both false on
an empty or NaN result, which Argo Rollouts records as Inconclusive. After :data:`INCONCLUSIVE_LIMIT`
such measurements the analysis run is Inconclusive and the Rollout pauses until someone promotes or
aborts it, so a canary that served nothing is neither promoted nor rolled back.

:func:`template_metrics` is public so the local canary rehearsal (``stackwright rollout``) evaluates exactly
the same PromQL with the same limits.
"""

from __future__ import annotations

from typing import Any

from ...deploy import names as naming
from ...spec import System
from ...spec.model import CanaryAnalysis
from ...spec.quantities import seconds
from ..errors import RenderError
from .context import Target, obj

ROLLOUTS_API = "argoproj.io/v1alpha1"
#: Pod label Argo Rollouts sets; the ServiceMonitor copies it onto every scraped series.
HASH_LABEL = "rollouts-pod-template-hash"
HASH_METRIC_LABEL = "rollouts_pod_template_hash"
CANARY_ARG = "canary-hash"
STABLE_ARG = "stable-hash"
REQUESTS = "starlette_requests_total"
DURATION_BUCKET = "starlette_request_duration_seconds_bucket"
ERR = 'status_code=~"5.."'
OK = 'status_code!~"5.."'
#: Quiet measurements tolerated (the first window after a step, before Prometheus has scraped the new
#: pods, may have no data); one more makes the analysis Inconclusive and pauses the Rollout.
INCONCLUSIVE_LIMIT = 2
#: Query errors in a row (Prometheus unreachable) after which the analysis errs and the Rollout aborts.
CONSECUTIVE_ERROR_LIMIT = 4
#: True only when the query answered with a number: an empty vector (too little traffic) or NaN (0/0)
#: makes both conditions false, i.e. Inconclusive.
KNOWN = "len(result) > 0 && !isNaN(result[0])"


def template_name(service: str) -> str:
    """Name of a service's AnalysisTemplate."""
    return f"{service}-canary"


def _window(analysis: CanaryAnalysis) -> str:
    return f"{max(int(seconds(analysis.interval)), 60)}s"


def _sel(service: str, hash_arg: str, *extra: str) -> str:
    parts = [f'app_name="{service}"', f'{HASH_METRIC_LABEL}="{{{{args.{hash_arg}}}}}"', *extra]
    return "{" + ",".join(parts) + "}"


def _num(value: float) -> str:
    return format(round(value, 10), "g")


def analysis_metrics(service: str, analysis: CanaryAnalysis) -> list[dict[str, Any]]:
    """The canary checks as ``{name, query, successCondition, failureCondition, max}``.

    Queries use Argo's ``{{args.canary-hash}}`` / ``{{args.stable-hash}}`` and return an empty vector
    while the canary has served fewer than ``analysis.min_requests`` requests in the window; both
    conditions are false on an empty or NaN result (Inconclusive), so silence is never a success.
    """
    w = _window(analysis)
    canary_all = f"sum(rate({REQUESTS}{_sel(service, CANARY_ARG)}[{w}]))"
    # A status class nobody answered has no series at all, so its sum is an empty vector, not 0: the
    # numerators default to 0 (``or on() vector(0)``), else a canary without a single 5xx would never pass the
    # error-rate gate and one with nothing but 5xx would never fail the success-rate gate. The denominators
    # stay empty without traffic, which keeps no-data Inconclusive.
    canary_err = f"(sum(rate({REQUESTS}{_sel(service, CANARY_ARG, ERR)}[{w}])) or on() vector(0))"
    canary_ok = f"(sum(rate({REQUESTS}{_sel(service, CANARY_ARG, OK)}[{w}])) or on() vector(0))"
    stable_all = f"sum(rate({REQUESTS}{_sel(service, STABLE_ARG)}[{w}]))"
    stable_ok = f"(sum(rate({REQUESTS}{_sel(service, STABLE_ARG, OK)}[{w}])) or on() vector(0))"
    p99 = (f"histogram_quantile(0.99, sum by (le) (rate({DURATION_BUCKET}{_sel(service, CANARY_ARG)}[{w}])))")
    enough = f" and on() (sum(increase({REQUESTS}{_sel(service, CANARY_ARG)}[{w}])) >= {analysis.min_requests})"
    max_p99_s = analysis.max_p99_ms / 1000
    checks = [
        ("error-rate", f"({canary_err} / {canary_all})", analysis.max_error_rate),
        ("latency-p99", f"({p99})", max_p99_s),
        ("success-rate-drop", f"(({stable_ok} / {stable_all}) - ({canary_ok} / {canary_all}))",
         analysis.max_success_rate_drop),
    ]
    return [{"name": name, "query": query + enough,
             "successCondition": f"{KNOWN} && result[0] <= {_num(limit)}",
             "failureCondition": f"{KNOWN} && result[0] > {_num(limit)}",
             "max": limit} for name, query, limit in checks]


def effective_analysis(system: System, service: str) -> CanaryAnalysis:
    """The rollback thresholds of a canary: ``rollout.analysis`` as written, or, when the spec leaves it
    at its defaults, the defaults with the p99 limit taken from ``slo.latency_p99_ms``."""
    analysis = system.services[service].rollout.analysis or CanaryAnalysis()
    if analysis == CanaryAnalysis():
        analysis = analysis.model_copy(update={"max_p99_ms": system.slo.latency_p99_ms})
    return analysis


def template_metrics(system: System, service: str) -> list[dict[str, Any]]:
    """The AnalysisTemplate's ``metrics`` list for a canary service: each check's name, interval,
    failureLimit, consecutiveErrorLimit, inconclusiveLimit, conditions and Prometheus query (with Argo's
    ``{{args.*}}`` placeholders). The rendered template and ``stackwright rollout``'s rehearsal both take
    their queries and limits from here, so the rehearsal runs exactly what production's analysis runs."""
    analysis = effective_analysis(system, service)
    return [{
        "name": m["name"],
        "interval": analysis.interval,
        "failureLimit": analysis.failure_limit,
        "consecutiveErrorLimit": CONSECUTIVE_ERROR_LIMIT,
        "inconclusiveLimit": INCONCLUSIVE_LIMIT,
        "successCondition": m["successCondition"],
        "failureCondition": m["failureCondition"],
        "provider": {"prometheus": {"address": naming.PROMETHEUS_URL, "query": m["query"], "timeout": 30}},
    } for m in analysis_metrics(service, analysis)]


def resolve_args(query: str, *, canary_hash: str, stable_hash: str) -> str:
    """The query as Argo Rollouts runs it: ``{{args.canary-hash}}``/``{{args.stable-hash}}`` replaced by the
    pod-template hashes of the canary and stable ReplicaSets."""
    return (query.replace(f"{{{{args.{CANARY_ARG}}}}}", canary_hash)
            .replace(f"{{{{args.{STABLE_ARG}}}}}", stable_hash))


def analysis_template(t: Target, service: str) -> dict[str, Any]:
    """AnalysisTemplate that fails the canary on error rate, p99 latency or a success-rate drop, and
    pauses it (Inconclusive) when there is too little traffic to judge."""
    if not t.system.monitoring.prometheus:
        raise RenderError(f"service '{service}' is released as a canary, whose analysis needs Prometheus; "
                          "set monitoring.prometheus: true or rollout.strategy: rolling")
    spec = {"args": [{"name": CANARY_ARG}, {"name": STABLE_ARG}], "metrics": template_metrics(t.system, service)}
    return obj(ROLLOUTS_API, "AnalysisTemplate", t.meta(template_name(service), service), spec=spec)


def rollout(t: Target, service: str, replicas: int | None) -> dict[str, Any]:
    """Rollout running the Deployment's template through the canary steps with background analysis."""
    svc = t.service(service)
    steps: list[dict[str, Any]] = []
    for step in svc.rollout.steps:
        steps.append({"setWeight": step.weight})
        steps.append({"pause": {"duration": f"{int(seconds(step.pause))}s"}})
    canary = {
        "maxSurge": "25%",
        "maxUnavailable": 0,
        "steps": steps,
        "analysis": {
            "templates": [{"templateName": template_name(service)}],
            "args": [
                {"name": CANARY_ARG, "valueFrom": {"podTemplateHashValue": "Latest"}},
                {"name": STABLE_ARG, "valueFrom": {"podTemplateHashValue": "Stable"}},
            ],
        },
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": t.selector(service)},
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": 600,
        "progressDeadlineAbort": True,
        "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service, "scaleDown": "onsuccess"},
        "strategy": {"canary": canary},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return obj(ROLLOUTS_API, "Rollout", t.meta(service, service), spec=spec)
