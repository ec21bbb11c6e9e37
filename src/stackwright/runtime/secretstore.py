"""A service's writable secret store (the ``secret`` resource kind), for values made at run time such as a
new tenant's database credentials.

* ``file:///.../<name>.json`` (local): one JSON object in a mode-0600 file; writes take an exclusive
  ``flock`` and replace the file atomically (write to a temporary file, fsync, rename), so concurrent
  writers never lose each other's keys and a crash never leaves half a file.
* ``secretsmanager://<name>?region=<r>`` (AWS): each key is its own Secrets Manager secret named
  ``<name>/<key>`` (e.g. ``payments/prod/tenant-secrets/tenant_<id>_db_password``), created or given a new
  version by :meth:`put`; the ``secret`` kind grants its users that ``<name>/*`` namespace. Optional query
  parameters: ``kms=<key id or alias>`` encrypts new secrets with that key (an alias names the same-alias key
  in each region); ``replicas=<r1,r2>`` creates each new secret with replicas in those regions
  (``AddReplicaRegions``; Secrets Manager then copies every new version there), so a standby region's
  services can read values made at run time after the primary region is lost; ``read_region=<r>`` reads
  from that region's replica instead of the primary (a service running in a replica region).

Values are strings. ``get`` of a missing key returns None.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


class SecretStore:
    """Read and write named string values in the store a ``<SECRET>_URL`` names."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.scheme = parts.scheme
        if parts.scheme == "file":
            self.path: Path | None = Path(unquote(parts.path))
            self.region: str | None = None
        elif parts.scheme == "secretsmanager":
            self.path = None
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            self.region = query.get("region")
            self.base = unquote(parts.netloc + parts.path).strip("/")
            self.kms_key: str | None = query.get("kms")
            self.replicas = [r for r in query.get("replicas", "").split(",") if r and r != self.region]
            self.read_region = query.get("read_region") or self.region
        else:
            raise ValueError(f"unsupported secret store URL scheme {parts.scheme!r}")
        self._clients: dict[str | None, Any] = {}

    # -- local file ---------------------------------------------------------------------------

    def _read_file(self) -> dict[str, str]:
        assert self.path is not None
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {}

    def _update_file(self, values: dict[str, str]) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self._read_file()
            current.update(values)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(current, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(lock, fcntl.LOCK_UN)
            os.close(lock)

    # -- Secrets Manager ----------------------------------------------------------------------

    def _sm(self, region: str | None = None) -> Any:
        """The Secrets Manager client of ``region`` (default: the primary's, where secrets are written)."""
        region = region or self.region
        if region not in self._clients:
            import boto3  # only on AWS

            self._clients[region] = boto3.client("secretsmanager", region_name=region)
        return self._clients[region]

    def _sm_get(self, key: str) -> str | None:
        client = self._sm(self.read_region)
        try:
            return str(client.get_secret_value(SecretId=f"{self.base}/{key}")["SecretString"])
        except client.exceptions.ResourceNotFoundException:
            return None

    def _sm_put(self, values: dict[str, str]) -> None:
        client = self._sm()
        for key, value in values.items():
            name = f"{self.base}/{key}"
            try:
                client.put_secret_value(SecretId=name, SecretString=value)
            except client.exceptions.ResourceNotFoundException:
                extra: dict[str, Any] = {"KmsKeyId": self.kms_key} if self.kms_key else {}
                if self.replicas:
                    # Replicated from birth: every later version reaches the replicas without another call.
                    extra["AddReplicaRegions"] = [{"Region": r, **({"KmsKeyId": self.kms_key} if self.kms_key else {})}
                                                  for r in self.replicas]
                client.create_secret(Name=name, SecretString=value, **extra)

    # -- API ----------------------------------------------------------------------------------

    async def get(self, key: str) -> str | None:
        """The value of ``key``, or None when the store does not hold it."""
        if self.path is not None:
            return (await asyncio.to_thread(self._read_file)).get(key)
        return await asyncio.to_thread(self._sm_get, key)

    async def put(self, values: dict[str, str]) -> None:
        """Store (create or overwrite) every ``key: value`` pair (on AWS in the primary region; a new secret
        is created with the URL's replica regions)."""
        if self.path is not None:
            await asyncio.to_thread(self._update_file, values)
        else:
            await asyncio.to_thread(self._sm_put, values)
