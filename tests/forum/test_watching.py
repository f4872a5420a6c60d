"""Watching in a browser: the Watch buttons on threads and categories, /watching with what is new, the
"follow a community elsewhere" form and its errors, and what reading a thread costs the database."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import event

from forum.app import create_app, federation_of
from forum.config import Settings
from forum.errors import NotFound
from forum.models import Follow, FollowState, Member
from forum.services import watching
from forum.web.base import viewer_for_member
from tests.conftest import BASE_URL, csrf_from, forum_of, register, submit
from tests.factories import make_category, make_member

PRESSED = re.compile(r'<button[^>]*class="watch-button"[^>]*aria-pressed="(true|false)"[^>]*>([^<]*)</button>')


@pytest.fixture
async def other(client: AsyncClient) -> AsyncIterator[AsyncClient]:
    """A second browser on the same forum, with its own cookies."""
    async with AsyncClient(transport=client._transport, base_url=BASE_URL) as http:
        yield http


def watch_button(page: Response) -> tuple[str, str]:
    """(aria-pressed, label) of the page's Watch button."""
    match = PRESSED.search(page.text)
    assert match is not None, "the page has no Watch button"
    return match.group(1), match.group(2).strip()


async def press_watch(client: AsyncClient, page_url: str, action: str) -> Response:
    """Press the page's Watch button as a browser would (its form posts `watch` and the CSRF token)."""
    page = await client.get(page_url)
    pressed, _label = watch_button(page)
    response = await submit(client, page_url, {"watch": "0" if pressed == "true" else "1"}, action=action)
    assert response.status_code == 303, response.text
    return response


async def start_thread(client: AsyncClient, title: str, body: str = "text") -> str:
    created = await submit(client, "/c/general/new", {"title": title, "body": body})
    assert created.status_code == 303, created.text
    return str(created.headers["location"])


async def reply(client: AsyncClient, thread_url: str, body: str) -> None:
    replied = await submit(client, thread_url, {"body": body}, action=f"{thread_url}/reply")
    assert replied.status_code == 303, replied.text


async def test_member_watches_a_thread_and_sees_what_is_new(
    client: AsyncClient, other: AsyncClient, settings: Settings
) -> None:
    await make_category(settings, "general", "General")
    await register(client, "alice")
    thread_url = await start_thread(client, "Bees in winter")
    await register(other, "bob")

    assert watch_button(await other.get(thread_url)) == ("false", "Watch")
    back = await press_watch(other, thread_url, f"{thread_url}/watch")
    assert back.headers["location"] == thread_url
    assert watch_button(await other.get(thread_url)) == ("true", "Watching")

    page = await other.get("/watching")
    assert "Bees in winter" in page.text
    assert " new</span>" not in page.text  # what the thread held when watched counts as read

    await reply(client, thread_url, "They cluster.")
    await reply(client, thread_url, "And shiver.")
    page = await other.get("/watching")
    assert "2 new" in page.text
    assert f'href="{thread_url}#new"' in page.text

    thread = await other.get(thread_url)
    assert "New since your last visit" in thread.text
    assert thread.text.index("New since your last visit") < thread.text.index("They cluster.")
    assert " new</span>" not in (await other.get("/watching")).text
    assert "New since your last visit" not in (await other.get(thread_url)).text

    # The author, who does not watch, sees the button unpressed and nothing counted.
    assert watch_button(await client.get(thread_url)) == ("false", "Watch")

    await press_watch(other, thread_url, f"{thread_url}/watch")
    assert watch_button(await other.get(thread_url)) == ("false", "Watch")
    page = await other.get("/watching")
    assert "Bees in winter" not in page.text
    assert "You are not watching anything yet." in page.text


async def test_member_watches_a_category_and_stops_from_the_watching_page(
    client: AsyncClient, settings: Settings
) -> None:
    await make_category(settings, "general", "General")
    await register(client, "carol")
    await start_thread(client, "Seeds to swap")

    assert watch_button(await client.get("/c/general")) == ("false", "Watch")
    back = await press_watch(client, "/c/general", "/c/general/watch")
    assert back.headers["location"] == "/c/general"
    assert watch_button(await client.get("/c/general")) == ("true", "Watching")

    page = await client.get("/watching")
    assert 'href="/c/general"' in page.text
    assert "Latest in your categories" in page.text
    assert "Seeds to swap" in page.text
    assert "Requested" not in page.text  # a category here is followed at once

    stopped = await submit(client, "/watching", {"watch": "0", "next": "/watching"}, action="/c/general/watch")
    assert stopped.headers["location"] == "/watching"
    assert "You are not watching anything yet." in (await client.get("/watching")).text


async def test_guests_see_no_watch_buttons_and_are_sent_to_log_in(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await register(client, "dora")
    thread_url = await start_thread(client, "Open to all")
    async with AsyncClient(transport=client._transport, base_url=BASE_URL) as guest:
        assert 'class="watch-form"' not in (await guest.get(thread_url)).text
        assert 'class="watch-form"' not in (await guest.get("/c/general")).text
        assert 'href="/watching"' not in (await guest.get("/")).text
        sent = await guest.post(f"{thread_url}/watch", data={"watch": "1"}, headers={"Origin": BASE_URL})
        assert sent.status_code == 303
        assert sent.headers["location"].startswith("/login")
        assert (await guest.get("/watching")).headers["location"] == "/login?next=/watching"
    home = await client.get("/")
    assert 'href="/watching"' in home.text


async def test_follow_elsewhere_form_explains_what_went_wrong(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await register(client, "erin")
    cases = [
        # A loopback host is refused before any connection (tests do not allow private addresses).
        ("gardening@127.0.0.1:9", 404, "127.0.0.1:9 does not know it, or did not answer"),
        ("!not a handle", 422, "is neither a handle"),
        ("erin", 422, "is a person, not a community"),
        ("nothing-here", 404, "No community is named"),
        ("   ", 422, "Type a community"),
        ("https://[oops/c/x", 422, "is not an address"),
        ("https://example.org:99999/c/x", 422, "is not an address"),
        (f"{BASE_URL}/t/99999999999", 404, "names no category or thread here"),
        (f"{BASE_URL}/t/123", 404, "No such thread."),
    ]
    for typed, status, reason in cases:
        refused = await submit(client, "/watching", {"target": typed})
        assert refused.status_code == status, (typed, refused.text)
        assert reason in refused.text, typed
        assert 'aria-invalid="true"' in refused.text
        if typed.strip():
            assert f'value="{typed}"' in refused.text, typed  # what was typed is kept

    followed = await submit(client, "/watching", {"target": f"general@{settings.host}"})
    assert followed.status_code == 303
    page = await client.get(followed.headers["location"])
    assert 'role="status"' in page.text
    assert "You are watching General." in page.text


async def test_a_thread_address_in_the_form_watches_that_thread(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await register(client, "fred")
    thread_url = await start_thread(client, "By its address")
    followed = await submit(client, "/watching", {"target": f"{BASE_URL}{thread_url}"})
    assert followed.status_code == 303
    page = await client.get(followed.headers["location"])
    assert "You are watching “By its address”." in page.text
    assert watch_button(await client.get(thread_url)) == ("true", "Watching")


@pytest.fixture
async def quiet(settings: Settings) -> AsyncIterator[AsyncClient]:
    """The app without its background tasks: the cache invalidation poll would drop, half a second after a
    write, what that write already dropped here, and the statements counted would depend on its timing."""
    app = create_app(settings, run_worker=False)
    try:
        async with AsyncClient(transport=ASGITransport(app=app), base_url=BASE_URL) as http:
            yield http
    finally:
        await federation_of(app.state.forum).aclose()
        await app.state.forum.engine.dispose()


@contextmanager
def statements(client: AsyncClient) -> Iterator[list[str]]:
    """The SQL statements the app runs while in the block."""
    engine = forum_of(client).engine.sync_engine
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_reading_a_thread_costs_a_member_one_update_only_when_it_shows_new_posts(
    quiet: AsyncClient, settings: Settings
) -> None:
    client = quiet
    await make_category(settings, "general", "General")
    await register(client, "gina")
    thread_url = await start_thread(client, "Counted")
    async with AsyncClient(transport=client._transport, base_url=BASE_URL) as other:
        await register(other, "hugo")
        await other.get(thread_url)  # the member's session and the thread page are now cached
        with statements(client) as seen:
            await other.get(thread_url)
        assert seen == [], "a member who does not watch the thread"

        await press_watch(other, thread_url, f"{thread_url}/watch")
        await other.get(thread_url)  # the member's watches are looked up once, then cached
        with statements(client) as seen:
            await other.get(thread_url)
        assert seen == [], "a watched thread with nothing new"

        await reply(client, thread_url, "Something new")
        await other.get(thread_url)  # the thread's cache is refilled after the reply
        await reply(client, thread_url, "Something newer")
        await client.get(thread_url)
        with statements(client) as seen:
            page = await other.get(thread_url)
        assert "Something newer" in page.text
        assert len(seen) == 1 and seen[0].upper().startswith("UPDATE FOLLOWS SET LAST_READ_POSITION"), seen

    async with AsyncClient(transport=client._transport, base_url=BASE_URL) as guest:
        forum_of(client).pages.clear()
        with statements(client) as seen:
            await guest.get(thread_url)
        assert not [s for s in seen if "follows" in s], "a guest's page asks nothing of watches"
        with statements(client) as seen:
            await guest.get(thread_url)
        assert seen == [], "and comes from the cache next time"


async def test_watching_lists_newest_activity_first_and_hides_what_the_member_cannot_see(
    client: AsyncClient, settings: Settings
) -> None:
    await make_category(settings, "general", "General")
    secret = await make_category(settings, "backroom", "Backroom", private=True)
    member = await make_member(settings, "ivy")
    await register(client, "jules")
    await start_thread(client, "Older")
    await start_thread(client, "Newer")
    forum = forum_of(client)
    async with forum.write() as session:
        found = await session.get(Member, member.id)
        assert found is not None
        viewer = await viewer_for_member(session, found)
        for thread_id in (1, 2):
            await watching.watch_thread(session, forum.bus, viewer, thread_id)
        with pytest.raises(NotFound):
            await watching.watch_category(session, forum.bus, viewer, secret)
        # A follow of a category that has since become private to them, made before.
        session.add(Follow(follower_id=member.actor_id, target_id=secret.actor_id, state=FollowState.ACCEPTED))
    await reply(client, "/t/1", "bumped")
    async with forum.read() as session:
        listed = await watching.watching(session, viewer)
    assert [t.title for t in listed.threads] == ["Older", "Newer"]
    assert [t.unread for t in listed.threads] == [1, 0]
    assert listed.threads[0].first_unread_page == 1
    assert listed.categories == []


async def test_a_double_click_on_watch_makes_one_watch(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await register(client, "kim")
    thread_url = await start_thread(client, "Twice")
    page = await client.get(thread_url)
    data = {"watch": "1", "csrf_token": csrf_from(page)}
    headers = {"Origin": BASE_URL}
    answers = await asyncio.gather(
        *(client.post(f"{thread_url}/watch", data=data, headers=headers) for _ in range(4)),
        *(client.post("/c/general/watch", data=data, headers=headers) for _ in range(4)),
    )
    assert [a.status_code for a in answers] == [303] * 8
    watched = (await client.get("/watching")).text
    assert watched.count(">Twice</a>") == 1
    assert watched.count('class="category-name" href="/c/general"') == 1
    data["watch"] = "0"
    answers = await asyncio.gather(
        *(client.post(f"{thread_url}/watch", data=data, headers=headers) for _ in range(4)),
        *(client.post("/c/general/watch", data=data, headers=headers) for _ in range(4)),
    )
    assert [a.status_code for a in answers] == [303] * 8
    assert "You are not watching anything yet." in (await client.get("/watching")).text
