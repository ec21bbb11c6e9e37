"""The one error the deployment model raises: the spec cannot be deployed as written."""

from __future__ import annotations


class DeployError(ValueError):
    """A spec value that no deployment can honour (a name AWS rejects, a VPC too small, an unknown AZ)."""
