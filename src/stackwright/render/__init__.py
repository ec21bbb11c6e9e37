"""spec -> deployment: Kubernetes (kustomize), Dockerfiles, CI workflow and (from ``render.aws``) the
AWS CDK app, written as one deterministic bundle."""

from .bundle import TARGETS, render_bundle, render_files
from .errors import RenderError
from .k8s import build_manifests, migration_manifests

__all__ = ["TARGETS", "RenderError", "build_manifests", "migration_manifests", "render_bundle", "render_files"]
