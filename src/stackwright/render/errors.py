"""The one error type rendering raises for a spec it cannot turn into a deployment."""

from __future__ import annotations


class RenderError(Exception):
    """The spec is valid but asks for something the renderer cannot produce; the message says what and why."""
