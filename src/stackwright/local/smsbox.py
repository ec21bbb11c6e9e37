"""Read the SMS the local SNS endpoint accepted (the ``sms`` resource kind; see
:mod:`stackwright.local.backing.sns`): what a test or a demo checks after a service sent SMS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def sms_dir_of(state_root: Path, system: str) -> Path:
    """The SMS folder of ``system`` under a ``stackwright up`` state root (``.stackwright/<system>/sms``)."""
    return state_root / system / "sms"


def read_sms_dir(folder: Path) -> list[dict[str, Any]]:
    """Every recorded SMS in ``folder``, oldest first: dicts with ``message_id``, ``phone_number`` (E.164),
    ``message`` (text), ``attributes`` (SNS message attributes, name -> string value) and ``sent_at`` (Unix
    seconds). An empty list when nothing was sent yet."""
    if not folder.is_dir():
        return []
    # File names start with the nanosecond of the recording, so name order is sending order.
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def read_sms(state_root: Path, system: str) -> list[dict[str, Any]]:
    """SMS sent by ``system``'s services in a local run under ``state_root``, oldest first."""
    return read_sms_dir(sms_dir_of(state_root, system))
