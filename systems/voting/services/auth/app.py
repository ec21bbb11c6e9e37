"""Auth service: the caller's session view of their token (Auth0 issues tokens in production, the dev IdP
locally), cached in Redis for the token's lifetime."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import Depends

from stackwright.runtime import Principal, Service, problem_responses

svc = Service(title="auth")
cache = svc.redis("cache")
app = svc.app


@app.get("/auth/me", responses=problem_responses(401))
async def me(who: Principal = Depends(svc.principal())) -> dict[str, Any]:
    key = f"session:{who.claims.get('jti') or who.sub}"
    cached = await cache.get(key)
    if cached is not None:
        return {**json.loads(cached), "cached": True}
    session = {"sub": who.sub, "roles": sorted(who.roles), "expires_at": who.claims["exp"]}
    ttl = max(1, int(who.claims["exp"] - time.time()))
    await cache.set(key, json.dumps(session), ex=ttl)
    return {**session, "cached": False}
