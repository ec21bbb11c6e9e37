"""Specs built in code for plan tests, and the repo root."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from stackwright.spec import System

ROOT = Path(__file__).resolve().parents[2]

#: Seed 003 (FastAPI on EKS) as a spec, from the seed's own numbers: one region priced at the seed's
#: us-east-1 list prices, 2 AZs of public subnets, 2 x t3.medium, a LoadBalancer Service (Classic LB),
#: an external PostgreSQL, and the seed's usage (data processing ~$5, egress ~$5, logs ~$2, metrics ~$3,
#: 500 MB of images).
SEED_003: dict[str, Any] = {
    "name": "fastapi-app",
    "seed": "003",
    "regions": [{"name": "us-east-1", "role": "primary", "vpc_cidr": "10.0.0.0/16"}],
    "network": {"azs": 2, "layout": "public-only", "nat": "none", "vpc_endpoints": False},
    "cluster": {"node_pools": [{"name": "general", "instance_types": ["t3.medium"], "min": 1, "max": 3,
                                "desired": 2}]},
    "edge": {"waf": None, "cdn": False},
    "resources": {"db": {"kind": "postgres", "engine": "external", "instances": 1, "multi_az": False}},
    "services": {"api": {"replicas": {"min": 2, "max": 10}, "resources": {"cpu": "250m", "memory": "256Mi"},
                         "autoscale": {"cpu_percent": 70}, "expose": "load-balancer",
                         "routes": [{"path": "/items"}], "uses": ["db"]}},
    "slo": {"peak_rps": 200, "monthly_budget_usd": 200},
    "usage": {"egress_gb": 55.56, "load_balancer_gb": 625, "log_ingest_gb": 4, "custom_metrics": 10,
              "image_storage_gb": 0.5, "inter_az_gb": 0, "requests_millions": 10},
}


def make_system(base: dict[str, Any], **changes: Any) -> System:
    """A System from a dict, with top-level keys replaced."""
    data = copy.deepcopy(base)
    data.update(changes)
    return System.model_validate(data)
