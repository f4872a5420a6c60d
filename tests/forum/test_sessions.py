"""Browser sessions: they end when they expire (cached or not), and only a cookie the forum signed counts."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from httpx import AsyncClient
from itsdangerous import URLSafeSerializer
from sqlalchemy import func, select, update

from forum.models import LoginSession
from forum.models.base import utcnow
from forum.services.maintenance import prune_expired_sessions
from forum.web.security import SESSION_COOKIE
from tests.conftest import BASE_URL, forum_of, register, submit

PASSWORD = "correct horse battery"


async def is_logged_in(client: AsyncClient) -> bool:
    """What a person sees: the settings page, or a redirect to the login form."""
    response = await client.get("/settings")
    if response.status_code == 303:
        assert response.headers["location"].startswith("/login")
        return False
    assert response.status_code == 200
    return True


async def expire_sessions(client: AsyncClient, after: timedelta) -> None:
    async with forum_of(client).write() as session:
        await session.execute(update(LoginSession).values(expires_at=utcnow() + after))


def browser(client: AsyncClient, cookie: str | None) -> AsyncClient:
    cookies = {SESSION_COOKIE: cookie} if cookie is not None else {}
    return AsyncClient(transport=client._transport, base_url=BASE_URL, cookies=cookies)


async def test_expired_session_no_longer_authenticates(client: AsyncClient) -> None:
    await register(client, "alice")
    await expire_sessions(client, timedelta(seconds=-1))
    assert not await is_logged_in(client)
    home = await client.get("/")
    assert home.status_code == 200
    assert 'action="/logout"' not in home.text


async def test_session_expires_even_while_cached(client: AsyncClient) -> None:
    """The viewer cache keeps a session for speed, but never past the session's own end."""
    await register(client, "alice")
    await expire_sessions(client, timedelta(seconds=1.5))
    assert await is_logged_in(client)
    assert await is_logged_in(client)  # served from the process's viewer cache
    await asyncio.sleep(1.6)
    assert not await is_logged_in(client)


async def test_session_lasts_until_it_expires(client: AsyncClient) -> None:
    response = await register(client, "alice")
    max_age = next(
        part.split("=", 1)[1]
        for header in response.headers.get_list("set-cookie") if header.startswith(f"{SESSION_COOKIE}=")
        for part in header.split("; ") if part.lower().startswith("max-age=")
    )  # fmt: skip
    assert int(max_age) == 30 * 24 * 3600
    async with forum_of(client).read() as session:
        expires_at = await session.scalar(select(LoginSession.expires_at))
    assert expires_at is not None
    assert timedelta(days=29, hours=23) < expires_at - utcnow() <= timedelta(days=30)


def tampered(value: str) -> list[str]:
    session_id, _, signature = value.rpartition(".")
    # The first character, not the last: base64's last character carries padding bits that the
    # decoder ignores, so changing it may leave the signature's bytes as they were.
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    middle = len(session_id) // 2  # the payload changed, away from its padding bits too
    return [
        f"{session_id}.{flipped}",  # signature changed
        f"{session_id[:middle]}{'x' if session_id[middle] != 'x' else 'y'}{session_id[middle + 1 :]}.{signature}",
        session_id,  # no signature at all
        value + "x",
        "",
        "garbage",
        "a.b.c.d",
        "%00%ff",
        "%C3%A9t%C3%A9",
        "x" * 4000,
    ]


async def test_tampered_cookie_is_ignored(client: AsyncClient) -> None:
    await register(client, "alice")
    genuine = client.cookies[SESSION_COOKIE]
    async with browser(client, genuine) as same:
        assert await is_logged_in(same)
    for forged in tampered(genuine):
        async with browser(client, forged) as forger:
            assert not await is_logged_in(forger), forged
            home = await forger.get("/")
            assert home.status_code == 200
            assert 'href="/register"' in home.text  # the guest page


async def test_cookie_signed_with_another_key_is_ignored(client: AsyncClient) -> None:
    await register(client, "alice")
    async with forum_of(client).read() as session:
        session_id = await session.scalar(select(LoginSession.id))
    assert session_id is not None
    forged = URLSafeSerializer("not-the-forum-secret", salt="session").dumps(session_id)
    async with browser(client, forged) as forger:
        assert not await is_logged_in(forger)
    genuine = URLSafeSerializer(forum_of(client).settings.secret_key, salt="session").dumps(session_id)
    async with browser(client, genuine) as owner:
        assert await is_logged_in(owner)


async def test_signed_cookie_for_an_unknown_session_is_ignored(client: AsyncClient) -> None:
    await register(client, "alice")
    made_up = URLSafeSerializer(forum_of(client).settings.secret_key, salt="session").dumps("no-such-session")
    async with browser(client, made_up) as stranger:
        assert not await is_logged_in(stranger)


async def test_every_login_starts_a_new_session(client: AsyncClient) -> None:
    await register(client, "alice")
    first = client.cookies[SESSION_COOKIE]
    # Every login makes its own random session id; none is taken from the browser.
    async with browser(client, None) as other:
        logged_in = await submit(other, "/login", {"username": "alice", "password": PASSWORD})
        assert logged_in.status_code == 303
        assert other.cookies[SESSION_COOKIE] != first
    async with forum_of(client).read() as session:
        assert await session.scalar(select(func.count(LoginSession.id))) == 2


async def test_logout_deletes_the_session(client: AsyncClient) -> None:
    await register(client, "alice")
    assert (await submit(client, "/settings", {}, action="/logout")).status_code == 303
    async with forum_of(client).read() as session:
        assert await session.scalar(select(func.count(LoginSession.id))) == 0


async def test_expired_sessions_are_pruned(client: AsyncClient) -> None:
    await register(client, "alice")
    async with browser(client, None) as other:
        await register(other, "bob")
    forum = forum_of(client)
    async with forum.write() as session:
        await session.execute(
            update(LoginSession)
            .where(LoginSession.id == select(func.min(LoginSession.id)).scalar_subquery())
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    assert await prune_expired_sessions(forum.sessions) == 1
    async with forum.read() as session:
        assert await session.scalar(select(func.count(LoginSession.id))) == 1
