"""A dev identity provider and its JWKS endpoint, shared by the runtime's auth-related tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from tests.helpers import AUD, ISS, serve

from stackwright.local.idp import DevIdP


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> DevIdP:
    return DevIdP(tmp_path_factory.mktemp("idp") / "key.pem", issuer=ISS, audience=AUD)


@pytest.fixture(scope="module")
def jwks_url(idp: DevIdP) -> Iterator[str]:
    with serve(Starlette(routes=idp.routes("/auth"))) as base:
        yield f"{base}/auth/.well-known/jwks.json"
