"""The library every stackwright service imports (and the only stackwright package it imports)."""

from .auth import AuthError, JWTVerifier, Principal
from .db import Database, TenantDatabases, apply_migrations
from .fastpath import FastRequest, Reply
from .problems import Problem, problem_response, problem_responses
from .service import Service
from .settings import MissingSetting, Settings, resource_env, service_url_env
from .storage import ObjectInfo, ObjectStore, store_from_url
from .worker import consume

__all__ = [
    "AuthError", "Database", "FastRequest", "JWTVerifier", "MissingSetting", "ObjectInfo", "ObjectStore", "Principal",
    "Problem", "Reply", "Service", "Settings", "TenantDatabases", "apply_migrations", "consume", "problem_response",
    "problem_responses", "resource_env", "service_url_env", "store_from_url",
]
