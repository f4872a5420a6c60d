"""Bad input through the real pages: every refusal is a 4xx with a message a person can act on, a
refused form keeps what was typed, and nothing ever ends in a 500."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import func, select

from forum.app import create_app
from forum.config import Settings
from forum.models import Post, Thread
from tests.conftest import BASE_URL, csrf_from, forum_of, register, submit
from tests.factories import make_category, make_member

PASSWORD = "correct horse battery"
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Origin": BASE_URL}


async def post_count(client: AsyncClient) -> int:
    async with forum_of(client).read() as session:
        return await session.scalar(select(func.count(Post.id))) or 0


@pytest.fixture
async def member(client: AsyncClient, settings: Settings) -> AsyncClient:
    """`client`, logged in as alice, with category `general` and thread 1 (posts 1 and 2)."""
    await make_category(settings, "general", "General")
    await register(client, "alice")
    created = await submit(client, "/c/general/new", {"title": "First", "body": "opening"})
    assert created.headers["location"] == "/t/1"
    assert (await submit(client, "/t/1", {"body": "a reply"}, action="/t/1/reply")).status_code == 303
    return client


async def token_of(client: AsyncClient) -> str:
    return csrf_from(await client.get("/settings"))


def refused(response: Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text[:2000]
    assert message in response.text


# --- Body size and encoding ----------------------------------------------------------------------


@pytest.fixture
async def small_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    application = create_app(settings.with_changes(max_body_bytes=2000), run_worker=False)
    async with (
        application.router.lifespan_context(application),
        AsyncClient(transport=ASGITransport(app=application), base_url=BASE_URL) as http,
    ):
        yield http


async def test_body_over_the_limit_with_content_length(small_client: AsyncClient) -> None:
    token = csrf_from(await small_client.get("/register"))
    response = await small_client.post(
        "/register", data={"username": "x" * 3000, "email": "a@example.org", "password": PASSWORD, "csrf_token": token},
        headers={"Origin": BASE_URL, "Accept": "text/html"},
    )  # fmt: skip
    refused(response, 413, "2,000 bytes at most")
    api_style = await small_client.post("/register", content=b"x" * 5000, headers={"Content-Type": "text/plain"})
    assert api_style.status_code == 413
    assert api_style.headers["content-type"] == "application/problem+json"
    assert "2,000 bytes" in api_style.json()["detail"]


async def test_chunked_body_over_the_limit(small_client: AsyncClient) -> None:
    token = csrf_from(await small_client.get("/register"))

    async def chunks() -> AsyncIterator[bytes]:
        yield f"csrf_token={token}&username=alice&email=a%40example.org&password=".encode()
        for _ in range(10):
            yield b"p" * 500

    response = await small_client.post("/register", content=chunks(), headers={**FORM, "Accept": "text/html"})
    assert "content-length" not in response.request.headers
    refused(response, 413, "2,000 bytes at most")


async def test_chunked_body_under_the_limit_is_read(small_client: AsyncClient) -> None:
    token = csrf_from(await small_client.get("/register"))

    async def chunks() -> AsyncIterator[bytes]:
        yield f"csrf_token={token}&username=alice&".encode()
        yield f"email=a%40example.org&password={PASSWORD.replace(' ', '+')}".encode()

    response = await small_client.post("/register", content=chunks(), headers=FORM)
    assert response.status_code == 303


async def test_content_length_that_is_not_a_number(client: AsyncClient) -> None:
    response = await client.post("/login", content=b"a=b", headers={**FORM, "Content-Length": "abc"})
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize(
    "body",
    [b"username=%FF%FE&password=x", b"username=\xff\xfe&password=x", b"username=caf%C3&password=x"],
    ids=["percent-encoded", "raw bytes", "truncated sequence"],
)
async def test_invalid_utf8_form(client: AsyncClient, body: bytes) -> None:
    token = csrf_from(await client.get("/login"))
    response = await client.post(
        "/login", content=body + f"&csrf_token={token}".encode(), headers={**FORM, "Accept": "text/html"}
    )
    refused(response, 422, "not valid UTF-8")


async def test_form_with_another_content_type(client: AsyncClient) -> None:
    response = await client.post("/login", json={"username": "alice"}, headers={"Origin": BASE_URL})
    assert response.status_code == 422
    assert "x-www-form-urlencoded" in response.text


async def test_many_fields_are_refused(client: AsyncClient) -> None:
    body = "&".join(f"f{number}=x" for number in range(500))
    response = await client.post("/login", content=body.encode(), headers=FORM)
    assert 400 <= response.status_code < 500


# --- Titles and bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "body", "message"),
    [
        ("", "a careful body", "Give the thread a title."),
        ("   \t ", "a careful body", "Give the thread a title."),
        ("t" * 201, "a careful body", "A title has at most 200 characters"),
        ("A fine title", "", "Write something first."),
        ("A fine title", " \n\n ", "Write something first."),
        ("A fine title", "b" * 50_001, "A post has at most 50"),
        ("Bell\x07title", "a careful body", "control character"),
        ("A fine title", "escape \x1b[31m red", "control character"),
        ("A fine title", "delete \x7f char", "control character"),
    ],
    ids=["empty title", "blank title", "long title", "empty body", "blank body", "long body", "bell in title",
         "escape in body", "DEL in body"],
)  # fmt: skip
async def test_refused_thread_keeps_the_typed_text(member: AsyncClient, title: str, body: str, message: str) -> None:
    response = await submit(member, "/c/general/new", {"title": title, "body": body})
    refused(response, 422, message)
    if title.strip() and "\x07" not in title:
        assert f'value="{title}"' in response.text
    if body.strip() and len(body) < 1000 and not any(c in body for c in "\x1b\x7f"):
        assert body in response.text
    if len(body) > 50_000:
        assert body in response.text
    assert await post_count(member) == 2


async def test_limits_are_inclusive(member: AsyncClient) -> None:
    response = await submit(member, "/c/general/new", {"title": "t" * 200, "body": "b" * 50_000})
    assert response.status_code == 303


@pytest.mark.parametrize(
    ("body", "message"),
    [("", "Write something first."), ("x" * 50_001, "A post has at most 50"), ("ring \x07", "control character")],
    ids=["empty", "long", "control"],
)
async def test_refused_reply_shows_why_and_keeps_the_text(member: AsyncClient, body: str, message: str) -> None:
    response = await submit(member, "/t/1", {"body": body}, action="/t/1/reply")
    refused(response, 422, message)
    if body.isprintable() and body:
        assert body in response.text
    assert await post_count(member) == 2


async def test_refused_edit_keeps_the_text(member: AsyncClient) -> None:
    response = await submit(member, "/p/1/edit", {"title": "", "body": "my edited careful text"})
    refused(response, 422, "Give the thread a title.")
    assert "my edited careful text" in response.text
    response = await submit(member, "/p/2/edit", {"body": "x" * 50_001})
    refused(response, 422, "A post has at most 50")


async def test_nul_byte_is_refused(member: AsyncClient) -> None:
    token = await token_of(member)
    for url, body in [
        ("/c/general/new", f"csrf_token={token}&title=Nul&body=before%00after"),
        ("/t/1/reply", f"csrf_token={token}&body=before%00after"),
        ("/p/2/edit", f"csrf_token={token}&body=before%00after"),
        ("/register", f"csrf_token={token}&username=a%00b&email=a%40example.org&password=x"),
    ]:
        response = await member.post(url, content=body.encode(), headers={**FORM, "Accept": "text/html"})
        refused(response, 422, "NUL")
    assert await post_count(member) == 2


# --- Addresses that lead nowhere -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/t/99999", "/t/abc", "/t/1?page=999", "/t/1?page=0", "/t/1?page=-1", "/t/1?page=abc", "/t/1?page=\u00b2",
        "/t/1?page=\u0663", "/t/99999999999999999999999", "/p/99999", "/p/99999999999999999999999",
        "/p/99999/revisions", "/c/nope", "/u/nobody", "/u/nobody@elsewhere.example", "/nothing/here",
        "/c/\u00b2", "/c/99999999999999999999999", "/c/99999", "/c/0",
    ],
)  # fmt: skip
async def test_not_found_pages(member: AsyncClient, url: str) -> None:
    async with AsyncClient(transport=member._transport, base_url=BASE_URL) as guest:
        for reader in (member, guest):
            response = await reader.get(url, headers={"Accept": "text/html"})
            assert response.status_code == 404, url
            assert "<h1>" in response.text


@pytest.mark.parametrize(
    "url",
    ["/p/99999/reply", "/p/99999/edit", "/p/99999999999999999999999/edit", "/c/99999999999999999999999/new"],
)
async def test_member_forms_that_lead_nowhere(member: AsyncClient, url: str) -> None:
    response = await member.get(url, headers={"Accept": "text/html"})
    assert response.status_code == 404, url


@pytest.mark.parametrize(
    "url", ["/t/99999999999999999999/reply", "/p/99999999999999999999/delete", "/p/99999/delete", "/t/2147483648/reply"]
)
async def test_member_posts_that_lead_nowhere(member: AsyncClient, url: str) -> None:
    token = await token_of(member)
    response = await member.post(url, data={"body": "x", "csrf_token": token}, headers=FORM)
    assert response.status_code == 404, url


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "%00",
        base64.urlsafe_b64encode(b"2024-01-01|5").decode(),
        base64.urlsafe_b64encode(b"2024-01-01T00:00:00+00:00|99999999999999999999999").decode(),
        base64.urlsafe_b64encode(b"not a date|1").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "x" * 5000,
    ],
    ids=["garbage", "nul", "naive date", "huge id", "bad date", "bad utf-8", "long"],
)
async def test_damaged_page_links(member: AsyncClient, cursor: str) -> None:
    response = await member.get("/c/general", params={"after": cursor}, headers={"Accept": "text/html"})
    assert 400 <= response.status_code < 500, response.text[:500]
    assert "<h1>" in response.text


async def test_first_page_link_still_works(member: AsyncClient) -> None:
    assert (await member.get("/c/general")).status_code == 200


# --- Replies and edits that are not yours to make -------------------------------------------------


async def test_reply_to_a_post_of_another_thread_is_refused(member: AsyncClient) -> None:
    second = await submit(member, "/c/general/new", {"title": "Second", "body": "other thread"})
    assert second.headers["location"] == "/t/2"
    token = await token_of(member)
    for target in ("1", "3", "99999", "99999999999999999999999", "abc", "\u00b2", "-1"):
        response = await member.post(
            "/t/2/reply", data={"body": "answer", "in_reply_to": target, "csrf_token": token}, headers=FORM
        )
        assert response.status_code == 422 or (target == "3" and response.status_code == 303), target
        if response.status_code == 422:
            assert "answer" in response.text
    async with forum_of(member).read() as session:
        parents = set(await session.scalars(select(Post.in_reply_to_id).where(Post.thread_id == 2)))
    assert parents <= {None, 3}


async def test_replying_to_a_missing_thread(member: AsyncClient) -> None:
    token = await token_of(member)
    response = await member.post("/t/99999/reply", data={"body": "hello", "csrf_token": token}, headers=FORM)
    assert response.status_code == 404


async def test_editing_someone_elses_post_is_forbidden(member: AsyncClient, settings: Settings) -> None:
    await make_member(settings, "bob", password=PASSWORD)
    async with AsyncClient(transport=member._transport, base_url=BASE_URL) as bob:
        logged_in = await submit(bob, "/login", {"username": "bob", "password": PASSWORD})
        assert logged_in.status_code == 303
        token = await token_of(bob)
        edit = await bob.post("/p/2/edit", data={"body": "defaced", "csrf_token": token}, headers=FORM)
        assert edit.status_code == 403
        assert "Only its author" in edit.text
        delete = await bob.post("/p/2/delete", data={"csrf_token": token}, headers=FORM)
        assert delete.status_code == 403
        assert (await bob.get("/p/2/edit")).status_code in (403, 404)
    async with forum_of(member).read() as session:
        post = await session.get(Post, 2)
        assert post is not None and post.source == "a reply" and post.deleted_at is None
        thread = await session.get(Thread, 1)
        assert thread is not None and thread.title == "First"


async def test_guest_forms_send_to_login(member: AsyncClient) -> None:
    async with AsyncClient(transport=member._transport, base_url=BASE_URL) as guest:
        token = csrf_from(await guest.get("/register"))
        for url in ("/c/general/new", "/t/1/reply", "/p/2/edit"):
            response = await guest.post(url, data={"body": "x", "title": "x", "csrf_token": token}, headers=FORM)
            assert response.status_code == 303, url
            assert response.headers["location"].startswith("/login")
        response = await guest.post("/p/2/delete", data={"csrf_token": token}, headers=FORM)
        assert 400 <= response.status_code < 500
    assert await post_count(member) == 2


@pytest.mark.parametrize(
    "data",
    [{"action": "revoke_token", "token_id": "\u00b2"}, {"action": "revoke_token", "token_id": "9" * 30},
     {"action": "nonsense"}, {"action": "preferences", "theme": "../../etc"},
     {"action": "preferences", "language": "xx"},
     {"action": "create_token", "name": ""}, {"action": "create_token", "name": "n" * 101}],
    ids=["superscript id", "huge id", "unknown action", "bad theme", "bad language", "empty token name",
         "long token name"],
)  # fmt: skip
async def test_settings_refusals(member: AsyncClient, data: dict[str, str]) -> None:
    token = await token_of(member)
    response = await member.post("/settings", data={**data, "csrf_token": token}, headers=FORM)
    assert 400 <= response.status_code < 500, response.text[:500]


@pytest.mark.parametrize(
    "data",
    [{"action": "update_category", "category_id": "\u00b2", "name": "x"},
     {"action": "move_up", "category_id": "9" * 30}, {"action": "update_category", "category_id": "999", "name": "x"},
     {"action": "create_category", "slug": "bad slug", "name": "x"}, {"action": "create_category", "slug": "ok_slug",
     "name": ""}, {"action": "site", "name": ""}, {"action": "nonsense"}],
    ids=["superscript id", "huge id", "missing category", "bad slug", "empty name", "empty site name", "unknown"],
)  # fmt: skip
async def test_admin_refusals(client: AsyncClient, settings: Settings, data: dict[str, str]) -> None:
    await make_member(settings, "rosa", password=PASSWORD, role="admin")
    await submit(client, "/login", {"username": "rosa", "password": PASSWORD})
    token = await token_of(client)
    response = await client.post("/admin", data={**data, "csrf_token": token}, headers=FORM)
    assert 400 <= response.status_code < 500, response.text[:500]


async def test_refusals_before_routing_speak_the_browsers_language(client: AsyncClient) -> None:
    response = await client.post(
        "/register", content=b"x" * 10, headers={
            "Origin": "https://evil.example", "Accept": "text/html", "Accept-Language": "fr-FR,fr;q=0.9",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )  # fmt: skip
    assert response.status_code == 403
    assert '<html lang="fr">' in response.text
    assert "elle a été refusée" in response.text
