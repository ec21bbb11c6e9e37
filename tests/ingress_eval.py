"""A small evaluator of a rendered ALB Ingress: which service, or which fixed status, a request gets.

Written from the AWS documentation, independently of ``stackwright.deploy.routes`` (which the gateway and
the renderer share), so that a test comparing the two edges does not compare the route table with itself:

* the AWS Load Balancer Controller turns an Ingress's paths into listener rules in the order they are
  listed; the listener evaluates rules in priority order and the first whose conditions all hold wins; an
  Ingress without a default backend leaves the listener's default action, a 404 fixed response;
* ``pathType: Exact`` matches the path exactly, ``Prefix`` matches ``/a/b`` on ``/a/b`` and ``/a/b/...``
  (path elements, Kubernetes semantics), ``ImplementationSpecific`` is an ALB path pattern: compared with
  the path as sent, case-sensitively, ``*`` any run of characters and ``?`` one character
  (AWS::ElasticLoadBalancingV2::ListenerRule PathPatternConfig);
* a backend whose port is ``use-annotation`` takes its action from ``alb.ingress.kubernetes.io/actions.<name>``
  (``forward`` to a target group's service or ``fixed-response``) and extra conditions from
  ``alb.ingress.kubernetes.io/conditions.<name>`` (``http-request-method`` values match the method exactly);
  a rule with a ``host`` matches the Host header case-insensitively.

Conditions of other kinds (headers, query strings, source IPs) are refused with an error rather than
ignored: the evaluator must not claim an outcome it cannot work out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

ALB = "alb.ingress.kubernetes.io/"


@dataclass(frozen=True)
class AlbRule:
    """One listener rule taken from the Ingress: conditions and the outcome label (``-> svc`` or ``404``)."""

    host: str | None
    path: str
    path_type: str
    methods: tuple[str, ...] | None
    outcome: str


def _glob(pattern: str) -> re.Pattern[str]:
    out = ""
    for c in pattern:
        out += ".*" if c == "*" else "." if c == "?" else re.escape(c)
    return re.compile(out, re.DOTALL)


def _path_matches(rule: AlbRule, path: str) -> bool:
    if rule.path_type == "Exact":
        return path == rule.path
    if rule.path_type == "Prefix":
        base = rule.path.rstrip("/")
        return base == "" or path == base or path.startswith(base + "/")
    if rule.path_type == "ImplementationSpecific":
        return _glob(rule.path).fullmatch(path) is not None
    raise ValueError(f"unknown pathType {rule.path_type}")


def alb_rules(ingress: dict[str, Any]) -> list[AlbRule]:
    """The listener rules an Ingress object becomes, in order."""
    annotations = ingress["metadata"].get("annotations", {})
    if ingress["spec"].get("defaultBackend"):
        raise ValueError("a defaultBackend is not evaluated here")
    rules = []
    for rule in ingress["spec"]["rules"]:
        host = rule.get("host")
        for p in rule["http"]["paths"]:
            service = p["backend"]["service"]
            methods: tuple[str, ...] | None = None
            if service["port"].get("name") == "use-annotation":
                action = json.loads(annotations[f"{ALB}actions.{service['name']}"])
                if action["type"] == "fixed-response":
                    outcome = str(int(action["fixedResponseConfig"]["statusCode"]))
                elif action["type"] == "forward":
                    groups = action["forwardConfig"]["targetGroups"]
                    if len(groups) != 1:
                        raise ValueError("weighted forwards are not evaluated here")
                    outcome = f"-> {groups[0]['serviceName']}"
                else:
                    raise ValueError(f"action type {action['type']} is not evaluated here")
                for cond in json.loads(annotations.get(f"{ALB}conditions.{service['name']}", "[]")):
                    if cond["field"] != "http-request-method":
                        raise ValueError(f"condition {cond['field']} is not evaluated here")
                    methods = tuple(cond["httpRequestMethodConfig"]["Values"])
            else:
                outcome = f"-> {service['name']}"
            rules.append(AlbRule(host, p["path"], p.get("pathType", "ImplementationSpecific"), methods, outcome))
    return rules


def evaluate(rules: list[AlbRule], method: str, path: str, host: str = "api.example.com") -> str:
    """The outcome the ALB gives ``method`` on the raw ``path`` (no query string): ``-> service`` or a status."""
    for rule in rules:
        if rule.host is not None and rule.host.lower() != host.lower():
            continue
        if rule.methods is not None and method not in rule.methods:
            continue
        if _path_matches(rule, path):
            return rule.outcome
    return "404"  # the listener's default action
