"""Authorized fetch, continued, with a database of each test's own: the setting, the mode off, the signer
left on the request for policies, and two Jardins that both require signed fetches still federating,
each fetching from the other with its instance actor's signature.

Apart from test_authorized_fetch.py because that module's Jardin runs in the tests' event loop: it must be
gone before a test here empties the shared PostgreSQL database, or an open transaction of its workers,
frozen while the fixture truncates, would block the TRUNCATE for ever.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from activitypub.negotiation import require_signed_fetch
from activitypub.protocol.signatures import sign_request
from forum.app import create_app
from forum.config import Settings, load_settings
from forum.models import Follow, FollowState
from tests.conftest import BASE_URL
from tests.factories import make_category
from tests.federation.instances import Instance, eventually, running
from tests.federation.remote import Remote

pytestmark = pytest.mark.slow

PEER = {"Accept": "application/activity+json"}


def refused_with(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert reason in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Signature ")


# -- the setting, off and on ------------------------------------------------------------------------------


def test_the_setting_is_read_from_the_environment(tmp_path: Path) -> None:
    base = {"FORUM_DATA_DIR": str(tmp_path)}
    assert load_settings(base).federation_authorized_fetch is False
    assert load_settings({**base, "FORUM_FEDERATION_AUTHORIZED_FETCH": "1"}).federation_authorized_fetch is True
    assert load_settings({**base, "FORUM_FEDERATION_AUTHORIZED_FETCH": "0"}).federation_authorized_fetch is False


async def test_with_the_mode_off_unsigned_fetches_are_served(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    group = await client.get("/c/general", headers=PEER)
    assert group.status_code == 200 and group.json()["type"] == "Group"


async def test_the_signer_is_left_on_the_request_for_policies(settings: Settings) -> None:
    """Instance policies to come read who signed a fetch from `request.state.signer`."""

    async def probe(request: Request) -> Response:
        await require_signed_fetch(request)
        return JSONResponse({"domain": request.state.signer.domain, "actor": request.state.signer.ap_id})

    changed = settings.with_changes(federation_authorized_fetch=True, federation_allow_private=True)
    app = create_app(changed, run_worker=False, extra_routes=[Route("/probe", probe)])
    async with (
        Remote("127.0.0.2") as remote,
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url=BASE_URL) as http,
    ):
        dave = remote.actor("dave")
        url = f"{BASE_URL}/probe"
        unsigned = await http.get(url, headers=PEER)
        assert unsigned.status_code == 401
        answer = await http.get(url, headers={**PEER, **sign_request("GET", url, {}, None, dave.signing_key)})
        assert answer.json() == {"domain": remote.host + f":{remote.port}", "actor": dave.ap_id}


# -- two Jardins, both requiring signed fetches -----------------------------------------------------------


async def test_two_instances_that_both_require_signed_fetches_federate(
    database_url: str, tmp_path: Path, sqlite_template: Path
) -> None:
    shutil.copy(sqlite_template, tmp_path / "b.db")
    async with (
        running("127.0.0.1", database_url, tmp_path / "a", federation_authorized_fetch=True) as a,
        running("127.0.0.2", f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", tmp_path / "b",
                federation_authorized_fetch=True) as b,
    ):  # fmt: skip
        await a.category("general", "General")
        alice, bob = await a.member("alice"), await b.member("bob")
        remote_category = f"general@{a.host}"
        # Both gates are shut to the unsigned.
        for instance in (a, b):
            refused_with(await instance.http.get(f"{instance.base_url}/u/{'alice' if instance is a else 'bob'}/outbox",
                                                 headers=PEER), "not signed")  # fmt: skip

        # B fetches A's Group (signed by B's instance actor, whose key A fetches unsigned) to follow it.
        followed = await b.api(bob, "POST", "/follows", {"target": remote_category})
        assert followed.status_code == 201, followed.text
        assert await eventually(lambda: _follow_accepted(a))

        # A thread on A arrives on B, with its author (fetched by B, signed) named.
        created = await a.api(alice, "POST", "/threads", {"category": "general", "title": "Hello", "body": "First"})
        assert created.status_code == 201, created.text
        b_threads = await eventually(lambda: _threads(b, bob, remote_category))
        assert [thread["title"] for thread in b_threads] == ["Hello"]
        b_posts = await _posts(b, bob, b_threads[0]["id"])
        assert b_posts[0]["author"]["handle"] == f"alice@{a.host}"

        # B's member answers; A fetches bob (signed by A's instance actor) and shows the answer as his.
        answered = await b.api(bob, "POST", f"/threads/{b_threads[0]['id']}/posts", {"body": "Hello from B"})
        assert answered.status_code == 201, answered.text
        a_posts = await eventually(lambda: _longer(_posts(a, alice, created.json()["id"]), 1))
        assert a_posts[1]["author"]["handle"] == f"bob@{b.host}"
        assert "Hello from B" in a_posts[1]["html"]


async def _follow_accepted(instance: Instance) -> bool:
    async with instance.forum.read() as session:
        follow = await session.scalar(select(Follow))
        return follow is not None and follow.state == FollowState.ACCEPTED


async def _threads(instance: Instance, token: str, category: str) -> list[dict[str, Any]]:
    response = await instance.api(token, "GET", f"/categories/{category}/threads")
    threads: list[dict[str, Any]] = response.json()["threads"] if response.status_code == 200 else []
    return threads


async def _posts(instance: Instance, token: str, thread_id: int) -> list[dict[str, Any]]:
    response = await instance.api(token, "GET", f"/threads/{thread_id}")
    assert response.status_code == 200, response.text
    posts: list[dict[str, Any]] = response.json()["posts"]
    return posts


async def _longer(posts: Any, count: int) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = await posts
    return found if len(found) > count else None
