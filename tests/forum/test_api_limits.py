"""API rate limits: per token, per client address (IPv6 counted per /64), and the posting limit the forms share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient
from starlette.applications import Starlette

from forum.app import create_app
from forum.config import RateLimits, Settings
from tests.conftest import BASE_URL
from tests.factories import make_category
from tests.forum.test_api import auth, member_token, problem


@pytest.fixture
async def limited_app(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[Starlette]:
    application = create_app(settings.with_changes(rate_limits=request.param), run_worker=False)
    async with application.router.lifespan_context(application):
        yield application


def client_from(app: Starlette, address: str) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app, client=(address, 40000)), base_url=BASE_URL)


@pytest.mark.parametrize(
    "limited_app", [RateLimits(api_per_token=3, api_per_address=100, api_window=60)], indirect=True
)
async def test_per_token_limit(limited_app: Starlette, settings: Settings) -> None:
    alice = await member_token(settings, "alice")
    bob = await member_token(settings, "bob")
    async with client_from(limited_app, "203.0.113.7") as client:
        for _ in range(3):
            assert (await client.get("/api/v1/me", headers=auth(alice))).status_code == 200
        refused = await client.get("/api/v1/categories", headers=auth(alice))
        detail = problem(refused, 429)["detail"]
        assert "Too many API requests with this token: at most 3 every 60 seconds" in detail
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Another token, and anonymous reads, from the same address are not held back.
        assert (await client.get("/api/v1/me", headers=auth(bob))).status_code == 200
        assert (await client.get("/api/v1/categories")).status_code == 200


@pytest.mark.parametrize(
    "limited_app", [RateLimits(api_per_token=100, api_per_address=3, api_window=300)], indirect=True
)
async def test_per_address_limit_counts_ipv6_per_64(limited_app: Starlette, settings: Settings) -> None:
    token = await member_token(settings, "alice")
    async with (
        client_from(limited_app, "2001:db8::1") as first,
        client_from(limited_app, "2001:db8::ffff:2") as same_network,
        client_from(limited_app, "2001:db8:0:1::1") as other_network,
    ):
        assert (await first.get("/api/v1/categories")).status_code == 200
        assert (await first.get("/api/v1/me", headers=auth(token))).status_code == 200
        assert (await same_network.get("/api/v1/categories")).status_code == 200
        refused = await same_network.get("/api/v1/me", headers=auth(token))
        detail = problem(refused, 429)["detail"]
        assert "Too many API requests from your network: at most 3 every 5 minutes" in detail
        assert 1 <= int(refused.headers["retry-after"]) <= 300
        problem(await first.get("/api/v1/categories"), 429)
        assert (await other_network.get("/api/v1/categories")).status_code == 200


@pytest.mark.parametrize("limited_app", [RateLimits(api_per_address=3)], indirect=True)
async def test_guessing_tokens_is_limited_by_address(limited_app: Starlette) -> None:
    async with client_from(limited_app, "198.51.100.4") as client:
        for guess in range(3):
            problem(await client.get("/api/v1/me", headers=auth(f"jdn_guess{guess}")), 401)
        refused = await client.get("/api/v1/me", headers=auth("jdn_guess3"))
        problem(refused, 429)
        assert "retry-after" in refused.headers


@pytest.mark.parametrize("limited_app", [RateLimits(post_per_account=1)], indirect=True)
async def test_api_shares_the_posting_limit(limited_app: Starlette, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    token = await member_token(settings, "alice")
    async with client_from(limited_app, "127.0.0.1") as client:
        payload = {"category": "general", "title": "one", "body": "text"}
        assert (await client.post("/api/v1/threads", json=payload, headers=auth(token))).status_code == 201
        refused = await client.post("/api/v1/threads", json={**payload, "title": "two"}, headers=auth(token))
        assert "posting too fast" in problem(refused, 429)["detail"]
        assert int(refused.headers["retry-after"]) >= 1
