"""Read the messages the local SMTP server kept (the ``mail`` resource kind; see
:mod:`stackwright.local.backing.smtp`): what a test or a demo checks after a service sent email."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path


def maildir_of(state_root: Path, system: str) -> Path:
    """The Maildir of ``system`` under a ``stackwright up`` state root (``.stackwright/<system>/mail``)."""
    return state_root / system / "mail"


def read_maildir(maildir: Path) -> list[EmailMessage]:
    """Every delivered message of a Maildir, oldest first (by delivery time, then file name); an empty
    list when nothing was delivered yet. Headers are decoded (``msg["Subject"]`` is text)."""
    files = [p for sub in ("new", "cur") if (maildir / sub).is_dir() for p in (maildir / sub).iterdir()
             if p.is_file()]
    files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    messages = []
    for path in files:
        with path.open("rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        messages.append(msg)
    return messages


def read_mailbox(state_root: Path, system: str) -> list[EmailMessage]:
    """Messages sent by ``system``'s services in a local run under ``state_root``, oldest first."""
    return read_maildir(maildir_of(state_root, system))
