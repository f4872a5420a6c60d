"""Members in a browser: register, start a thread, reply, edit, delete, read — through the real app."""

from __future__ import annotations

import pytest
from httpx import AsyncClient

from forum.config import Settings
from tests.conftest import BASE_URL, register, submit
from tests.factories import make_category


async def test_register_post_reply_and_read(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await register(client, "alice")
    created = await submit(client, "/c/general/new", {"title": "Hello *world*", "body": "First **post**"})
    assert created.status_code == 303
    thread_url = created.headers["location"]
    replied = await submit(client, thread_url, {"body": "A reply"}, action=f"{thread_url}/reply")
    assert replied.status_code == 303
    page = await client.get(thread_url)
    assert page.status_code == 200
    assert "Hello *world*" in page.text
    assert "<strong>post</strong>" in page.text
    assert "A reply" in page.text
    home = await client.get("/")
    assert "Hello *world*" in home.text
    assert "1 thread" in home.text


async def test_refused_form_keeps_what_was_typed(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await register(client, "bob")
    refused = await submit(client, "/c/general/new", {"title": "", "body": "my long careful text"})
    assert refused.status_code == 422
    assert "my long careful text" in refused.text
    assert "Give the thread a title." in refused.text


@pytest.mark.parametrize("name", ["admin", "ADMIN", "inbox", "api"])
async def test_reserved_names_are_refused(client: AsyncClient, name: str) -> None:
    response = await submit(client, "/register", {"username": name, "email": "x@example.org", "password": "x" * 12})
    assert response.status_code == 422
    assert "reserved" in response.text


async def test_taken_name_case_insensitive(client: AsyncClient) -> None:
    await register(client, "Carol")
    client.cookies.clear()
    response = await submit(client, "/register", {"username": "carol", "email": "c2@example.org", "password": "x" * 12})
    assert response.status_code == 409
    assert "already taken" in response.text
    assert 'value="carol"' in response.text


async def test_form_from_another_site_is_refused(client: AsyncClient) -> None:
    page = await client.get("/register")
    assert page.status_code == 200
    response = await client.post(
        "/register", data={"username": "eve", "email": "e@example.org", "password": "x" * 12},
        headers={"Origin": "https://evil.example"},
    )  # fmt: skip
    assert response.status_code == 403


async def test_visitor_page_is_cached_and_revalidated(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await register(client, "dave")
    created = await submit(client, "/c/general/new", {"title": "Cached", "body": "text"})
    thread_url = created.headers["location"]
    async with AsyncClient(transport=client._transport, base_url=BASE_URL) as visitor:
        first = await visitor.get(thread_url)
        etag = first.headers["etag"]
        again = await visitor.get(thread_url, headers={"If-None-Match": etag})
        assert again.status_code == 304
        await submit(client, thread_url, {"body": "fresh reply"}, action=f"{thread_url}/reply")
        changed = await visitor.get(thread_url, headers={"If-None-Match": etag})
        assert changed.status_code == 200
        assert "fresh reply" in changed.text


async def test_saved_preferences_are_confirmed(client: AsyncClient) -> None:
    await register(client, "erin")
    saved = await submit(client, "/settings", {"action": "preferences", "language": "", "theme": ""})
    assert saved.status_code == 303
    page = await client.get(saved.headers["location"])
    assert 'role="status"' in page.text
    assert "Your preferences are saved." in page.text


async def test_wrong_method_names_the_allowed_ones(client: AsyncClient) -> None:
    response = await client.post("/t/1", headers={"Origin": BASE_URL, "Accept": "text/html"})
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]


async def test_quote_prefills_the_reply_with_the_quoted_text(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await register(client, "fanny")
    created = await submit(client, "/c/general/new", {"title": "Quotes", "body": "line one\n\nline two"})
    thread = await client.get(created.headers["location"])
    post_id = thread.text.split('id="p', 1)[1].split('"', 1)[0]
    form = await client.get(f"/p/{post_id}/reply?quote=1")
    assert "@fanny wrote:\n&gt; line one\n&gt;\n&gt; line two" in form.text


async def test_post_actions_are_named_by_their_author(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await register(client, "hana")
    created = await submit(client, "/c/general/new", {"title": "Names", "body": "text"})
    page = await client.get(created.headers["location"])
    assert 'aria-label="Reply to hana"' in page.text
    assert 'aria-label="Quote hana"' in page.text
    assert 'aria-label="Edit your post"' in page.text
