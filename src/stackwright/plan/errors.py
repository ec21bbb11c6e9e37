"""Errors raised while planning. Each names what is missing and where to add it."""

from __future__ import annotations


class PlanError(Exception):
    """A plan cannot be computed from this spec (and nothing is written)."""


class PriceError(PlanError):
    """A price the plan needs is not in the price table."""
