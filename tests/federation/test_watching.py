"""Watching across two real instances, in B's pages as a browser uses them: a member of B follows a category
of A by its handle from /watching ("Requested", then accepted, its threads arriving), and watches a thread of
A that B knows only because someone looked it up: B sends a `Follow` of the thread's context, A records it,
and A's next reply reaches B and shows as new on the member's /watching."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from activitypub.audiences import Target
from activitypub.objects import CONTEXT
from activitypub.outbox import new_activity_id, record_activity
from forum.models import Actor, Follow, OutgoingActivity, ReceivedActivity, Thread
from tests.factories import make_member
from tests.federation.instances import Instance, eventually, running

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
BUTTON = re.compile(r'<button[^>]*class="watch-button"[^>]*aria-pressed="(true|false)"[^>]*>([^<]*)</button>')


async def test_member_follows_a_remote_category_and_watches_a_remote_thread_from_the_browser(
    database_url: str, tmp_path: Path, sqlite_template: Path
) -> None:
    shutil.copy(sqlite_template, tmp_path / "b.db")
    async with (
        running("127.0.0.1", database_url, tmp_path / "a") as a,
        running("127.0.0.2", f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", tmp_path / "b") as b,
        httpx.AsyncClient(base_url=b.base_url, timeout=10) as browser,
    ):
        await a.category("general", "General")
        await a.category("orchard", "Orchard")
        alice = await a.member("alice")
        carol = await b.member("carol")
        await make_member(b.settings, "bob", password=PASSWORD)
        await _log_in(browser, b, "bob")
        general = f"general@{a.host}"

        # A person is not a community; the form says so and keeps what was typed.
        refused = await _submit(browser, b, "/watching", {"target": f"alice@{a.host}"})
        assert refused.status_code == 422
        assert "is a person, not a community" in refused.text
        assert f'value="alice@{a.host}"' in refused.text

        # The category by its handle: requested at once, accepted when A answers.
        followed = await _submit(browser, b, "/watching", {"target": general})
        assert followed.status_code == 303, followed.text
        page = await browser.get(followed.headers["location"])
        assert "You asked to follow General" in page.text
        assert 'class="badge badge-pending">Requested<' in page.text
        assert await eventually(lambda: _button(browser, f"/c/{general}"), timeout=20) == ("true", "Watching")
        assert "Requested" not in (await browser.get("/watching")).text

        # Its threads arrive, and show among the latest of the member's categories.
        created = await a.api(alice, "POST", "/threads", {"category": "general", "title": "Hello", "body": "Hi"})
        assert created.status_code == 201, created.text
        await eventually(lambda: _shows(browser, "/watching", "Hello"), timeout=20)

        # A thread of a category B does not follow, known on B only because carol looked it up.
        created = await a.api(alice, "POST", "/threads", {"category": "orchard", "title": "Pruning", "body": "When?"})
        assert created.status_code == 201, created.text
        a_thread = created.json()
        found = await b.api(carol, "GET", f"/resolve?q={quote(a_thread['ap_id'], safe='')}")
        assert found.status_code == 200, found.text
        thread_url = f"/t/{found.json()['id']}"
        assert await _button(browser, thread_url) == ("false", "Watch")
        watched = await _submit(browser, b, thread_url, {"watch": "1"}, action=f"{thread_url}/watch")
        assert watched.status_code == 303, watched.text
        assert await _button(browser, thread_url) == ("true", "Watching")

        # B sent a `Follow` of the thread's context to the Group that owns it; A records the follower.
        context_id = f"{a.base_url}/t/{a_thread['id']}/context"
        [sent] = await _sent(b, "Follow", context_id)
        assert sent["to"] == [f"{a.base_url}/c/orchard"]
        assert await eventually(lambda: _context_followers(a, a_thread["id"]), timeout=20) == [f"bob@{b.host}"]

        # A new reply on A reaches B through that follow alone, and is new to the member.
        replied = await a.api(alice, "POST", f"/threads/{a_thread['id']}/posts", {"body": "In winter."})
        assert replied.status_code == 201, replied.text
        page = await eventually(lambda: _shows(browser, "/watching", "1 new"), timeout=20)
        assert "Pruning" in page.text
        thread_page = await browser.get(thread_url)
        assert "In winter." in thread_page.text and "New since your last visit" in thread_page.text
        assert "1 new" not in (await browser.get("/watching")).text

        # A refusal from A changes nothing here: the member still watches.
        await _reject(a, sent)
        assert await eventually(lambda: _handled(b, "Reject"), timeout=20)
        assert await _button(browser, thread_url) == ("true", "Watching")

        # Stopping sends the `Undo`: A forgets the follower.
        await _submit(browser, b, thread_url, {"watch": "0"}, action=f"{thread_url}/watch")
        assert await _button(browser, thread_url) == ("false", "Watch")
        assert await eventually(lambda: _is_empty(_context_followers(a, a_thread["id"])), timeout=20)


async def _log_in(browser: httpx.AsyncClient, instance: Instance, name: str) -> None:
    response = await _submit(browser, instance, "/login", {"username": name, "password": PASSWORD})
    assert response.status_code == 303, response.text


async def _submit(
    browser: httpx.AsyncClient, instance: Instance, url: str, data: dict[str, str], action: str | None = None
) -> httpx.Response:
    """Fill in the form at `url` as a browser does: fetch the page, post with its CSRF token."""
    page = await browser.get(url)
    match = CSRF.search(page.text)
    assert match is not None, page.text
    return await browser.post(
        action or url, data={**data, "csrf_token": match.group(1)}, headers={"Origin": instance.base_url}
    )


async def _button(browser: httpx.AsyncClient, url: str) -> tuple[str, str] | None:
    page = await browser.get(url)
    match = BUTTON.search(page.text)
    if match is None or match.group(2).strip() in ("Requested",):
        return None
    return match.group(1), match.group(2).strip()


async def _shows(browser: httpx.AsyncClient, url: str, text: str) -> httpx.Response | None:
    page = await browser.get(url)
    return page if text in page.text else None


async def _sent(instance: Instance, kind: str, object_id: str) -> list[dict[str, Any]]:
    async with instance.forum.read() as session:
        documents = await session.scalars(select(OutgoingActivity.document).where(OutgoingActivity.type == kind))
        return [d for d in documents if d.get("object") == object_id]


async def _context_followers(instance: Instance, thread_id: int) -> list[str]:
    async with instance.forum.read() as session:
        rows = await session.execute(
            select(Actor.username, Actor.domain)
            .join(Follow, Follow.follower_id == Actor.id)
            .join(Thread, Thread.id == Follow.thread_id)
            .where(Thread.id == thread_id)
        )
        return [f"{name}@{domain}" for name, domain in rows]


async def _is_empty(found: Any) -> bool:
    return not await found


async def _reject(instance: Instance, follow: dict[str, Any]) -> None:
    """A's Group refuses the context follow, as a server that does not take them might (sent by A's worker)."""
    async with instance.forum.write() as session:
        group = await session.scalar(select(Actor).where(Actor.ap_id == follow["to"][0]))
        follower = await instance.forum.extra["federation"].resolver.actor(session, follow["actor"])
        assert group is not None and follower.inbox_url
        document = {
            "@context": CONTEXT,
            "id": new_activity_id(instance.base_url),
            "type": "Reject",
            "actor": group.ap_id,
            "to": [follower.ap_id],
            "object": {key: value for key, value in follow.items() if key != "@context"},
        }
        await record_activity(session, group, document, [Target(follower.inbox_url, follower.domain)])


async def _handled(instance: Instance, kind: str) -> bool:
    async with instance.forum.read() as session:
        states = await session.scalars(select(ReceivedActivity.state).where(ReceivedActivity.type == kind))
        return any(state.value in ("done", "refused") for state in states)
