"""Follow requests across two real instances: a member of B asks to follow categories of A that approve
their followers; A's concierge answers in the `/concierge` panel, and B sees the answer."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from forum.models import Actor, Delivery, Follow, OutgoingActivity
from tests.factories import make_member
from tests.federation.instances import Instance, eventually, running
from tests.roles.concierge.factories import approving_category, grant

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def test_concierge_approves_and_rejects_followers_from_another_instance(
    database_url: str, tmp_path: Path, sqlite_template: Path
) -> None:
    shutil.copy(sqlite_template, tmp_path / "b.db")
    async with (
        running("127.0.0.1", database_url, tmp_path / "a") as a,
        running("127.0.0.2", f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", tmp_path / "b") as b,
    ):
        await approving_category(a.settings, "orchard", "Orchard")
        await approving_category(a.settings, "quiet", "Quiet")
        alice = await a.member("alice")
        await make_member(a.settings, "cora", password=PASSWORD)
        await grant(a.settings, "cora", "concierge", "orchard")
        await grant(a.settings, "cora", "concierge", "quiet")
        bob, dave = await b.member("bob"), await b.member("dave")
        orchard, quiet = f"orchard@{a.host}", f"quiet@{a.host}"

        # B's member asks; A keeps the request for its concierge, and B's follow stays pending.
        asked = await b.api(bob, "POST", "/follows", {"target": orchard})
        assert asked.status_code == 201 and asked.json()["state"] == "pending", asked.text
        await eventually(lambda: _follow_state(a, "bob", "orchard"), timeout=20)
        assert await _follow_state(a, "bob", "orchard") == "pending"
        assert await _follow_state(b, "bob", "orchard") == "pending"
        assert not await _sent(a, "Accept")

        async with httpx.AsyncClient(base_url=a.base_url, timeout=10) as browser:
            await _log_in(browser, a, "cora")
            page = await browser.get("/concierge")
            assert page.status_code == 200
            accepted = await _press(browser, a, page, f"bob@{b.host}", "Accept")
            assert accepted.status_code == 303, accepted.text
            assert "Follow request accepted" in (await browser.get(accepted.headers["location"])).text

            # B hears the Accept; a new thread on A then reaches B's copy of the category.
            assert await eventually(lambda: _is(_follow_state(b, "bob", "orchard"), "accepted"), timeout=20)
            assert await _follow_state(a, "bob", "orchard") == "accepted"
            created = await a.api(alice, "POST", "/threads", {"category": "orchard", "title": "Bees", "body": "Buzz"})
            assert created.status_code == 201, created.text
            threads = await eventually(lambda: _titles(b, bob, orchard), timeout=20)
            assert threads == ["Bees"]

            # Another request, to the other category, is rejected: B forgets its follow, and nothing of
            # that category is sent there any more.
            asked = await b.api(dave, "POST", "/follows", {"target": quiet})
            assert asked.status_code == 201, asked.text
            await eventually(lambda: _follow_state(a, "dave", "quiet"), timeout=20)
            page = await browser.get("/concierge")
            rejected = await _press(browser, a, page, f"dave@{b.host}", "Reject")
            assert rejected.status_code == 303, rejected.text
            assert "No follow requests are waiting." in (await browser.get(rejected.headers["location"])).text
        assert await _follow_state(a, "dave", "quiet") is None
        assert await eventually(lambda: _is(_follow_state(b, "dave", "quiet"), None), timeout=20)
        assert await eventually(lambda: _delivered(a, "Reject"), timeout=20)

        created = await a.api(alice, "POST", "/threads", {"category": "quiet", "title": "Hush", "body": "Shh"})
        assert created.status_code == 201, created.text
        assert await _inboxes_for(a, created.json()["ap_id"]) == set()
        created = await a.api(alice, "POST", "/threads", {"category": "orchard", "title": "Honey", "body": "Sweet"})
        threads = await eventually(lambda: _longer(_titles(b, bob, orchard), 1), timeout=20)
        assert sorted(threads) == ["Bees", "Honey"]
        assert await _titles(b, dave, quiet) == []


async def _log_in(browser: httpx.AsyncClient, instance: Instance, name: str) -> None:
    page = await browser.get("/login")
    response = await browser.post(
        "/login",
        data={"username": name, "password": PASSWORD, "csrf_token": _csrf(page)},
        headers={"Origin": instance.base_url},
    )
    assert response.status_code == 303, response.text


async def _press(
    browser: httpx.AsyncClient, instance: Instance, page: httpx.Response, handle: str, button: str
) -> httpx.Response:
    """Press a button on the line of the request from `handle`, as a browser posts its form."""
    rows = re.findall(r'<tr id="follow-request-\d+">.*?</tr>', page.text, re.S)
    [row] = [row for row in rows if f"@{handle}<" in row]
    forms = re.findall(r'<form method="post" action="([^"]+)"[^>]*>.*?<button[^>]*>([^<]+)</button>', row, re.S)
    action = next(url for url, label in forms if label == button)
    return await browser.post(action, data={"csrf_token": _csrf(page)}, headers={"Origin": instance.base_url})


def _csrf(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match is not None
    return match.group(1)


async def _follow_state(instance: Instance, follower: str, category: str) -> str | None:
    """The state of `follower`'s follow of `category`, wherever each lives, on `instance`'s side."""
    async with instance.forum.read() as session:
        follower_ids = select(Actor.id).where(Actor.username_key == follower)
        target_ids = select(Actor.id).where(Actor.username_key == category)
        follow = await session.scalar(
            select(Follow).where(Follow.follower_id.in_(follower_ids), Follow.target_id.in_(target_ids))
        )
        return follow.state.value if follow is not None else None


async def _sent(instance: Instance, kind: str) -> list[dict[str, Any]]:
    async with instance.forum.read() as session:
        return list(await session.scalars(select(OutgoingActivity.document).where(OutgoingActivity.type == kind)))


async def _delivered(instance: Instance, kind: str) -> bool:
    async with instance.forum.read() as session:
        states = await session.scalars(
            select(Delivery.state)
            .join(OutgoingActivity, OutgoingActivity.id == Delivery.activity_id)
            .where(OutgoingActivity.type == kind)
        )
        return [state.value for state in states] == ["delivered"]


async def _inboxes_for(instance: Instance, object_id: str) -> set[str]:
    """Every inbox queued an activity about `object_id` (its Create or an Announce of it)."""
    async with instance.forum.read() as session:
        rows = await session.execute(select(OutgoingActivity.document, Delivery.inbox_url).join(Delivery))
        return {inbox for document, inbox in rows if object_id in str(document)}


async def _titles(instance: Instance, token: str, category: str) -> list[str]:
    response = await instance.api(token, "GET", f"/categories/{category}/threads")
    if response.status_code != 200:
        return []
    return [thread["title"] for thread in response.json()["threads"]]


async def _is(value: Any, expected: str | None) -> bool:
    return bool(await value == expected)


async def _longer(titles: Any, count: int) -> list[str] | None:
    found: list[str] = await titles
    return found if len(found) > count else None
