"""stackwright: describe an EKS system once, run it locally, render it for production, plan it."""

__version__ = "0.1.0"
