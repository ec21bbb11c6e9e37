"""``stackwright plan``: spec (+ measured bench results) -> the architecture document.

Diagrams, Kubernetes resources, capacity at the SLO peak, monthly cost with every line item, failure
analysis and findings, all computed from ``system.yaml`` so the document cannot drift from it.
"""

from .builder import build_plan, default_environment
from .document import to_data, to_json, to_markdown
from .errors import PlanError, PriceError
from .findings import has_high
from .model import Finding, Plan
from .prices import load_prices
from .writer import write_plan

__all__ = ["Finding", "Plan", "PlanError", "PriceError", "build_plan", "default_environment", "has_high",
           "load_prices", "to_data", "to_json", "to_markdown", "write_plan"]
