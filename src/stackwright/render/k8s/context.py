"""What one rendering is for: a system in one region and one environment, plus shared object helpers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ...deploy import names as naming
from ...deploy import scale
from ...deploy.environments import is_production
from ...spec import Region, Service, System
from ..errors import RenderError

PART_OF = "app.kubernetes.io/part-of"
NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "app.kubernetes.io/managed-by"

#: uid/gid the images run as (checkov CKV_K8S_40 wants >= 10000; the Dockerfiles create this user).
RUN_AS = 10001


@dataclass(frozen=True)
class Target:
    """A system rendered for one region and environment."""

    system: System
    region: Region
    environment: str

    @classmethod
    def of(cls, system: System, region: str, environment: str) -> Target:
        """Resolve region/environment names against the spec, failing clearly on unknown ones."""
        regions = {r.name: r for r in system.regions}
        if region not in regions:
            raise RenderError(f"region {region!r} is not in the spec (regions: {', '.join(regions)})")
        if environment not in system.environments:
            raise RenderError(f"environment {environment!r} is not in the spec "
                              f"(environments: {', '.join(system.environments)})")
        return cls(system, regions[region], environment)

    @cached_property
    def namespace(self) -> str:
        """Namespace of every namespaced object."""
        return naming.namespace(self.system)

    @property
    def production(self) -> bool:
        """Whether this environment gets the spec's full replica counts."""
        return is_production(self.environment)

    @property
    def overlay(self) -> str:
        """Overlay folder name: ``<region>-<environment>``."""
        return f"{self.region.name}-{self.environment}"

    def replicas(self, service: str) -> tuple[int, int]:
        """(min, max) replicas in this region and environment (:func:`stackwright.deploy.scale.replicas`:
        trimmed outside production, at the standby scale in a region that is not ``dr: active``)."""
        return scale.replicas(self.system, self.region.name, self.environment, service)

    def labels(self, service: str | None = None, component: str | None = None) -> dict[str, str]:
        """Recommended labels; selectors use :meth:`selector` (a stable subset)."""
        out = {PART_OF: self.system.name, MANAGED_BY: "stackwright"}
        if service is not None:
            out[NAME] = service
            out[COMPONENT] = component or self.system.services[service].kind
        elif component is not None:
            out[COMPONENT] = component
        return out

    def selector(self, service: str) -> dict[str, str]:
        """Pod selector of one service (never changes, so Deployments stay updatable)."""
        return {NAME: service, PART_OF: self.system.name}

    def meta(self, name: str, service: str | None = None, *, component: str | None = None,
             annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """``metadata`` of a namespaced object."""
        meta: dict[str, Any] = {"name": name, "namespace": self.namespace,
                                "labels": {**self.labels(service, component), **(labels or {})}}
        if annotations:
            meta["annotations"] = annotations
        return meta

    def service(self, name: str) -> Service:
        """The spec of one service."""
        return self.system.services[name]


def obj(api_version: str, kind: str, metadata: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A Kubernetes object as a plain dict."""
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **fields}


def key(o: dict[str, Any]) -> tuple[str, str, str]:
    """Identity of an object within a namespace: (apiVersion, kind, name)."""
    return o["apiVersion"], o["kind"], o["metadata"]["name"]
