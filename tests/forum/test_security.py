"""The foundation's defences, seen from a browser: CSRF and Origin checks, session cookies, password
hashing, read-only reading, sanitized pages, private categories and the first-run setup."""

from __future__ import annotations

import html
import re
import sqlite3
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import pytest
from argon2 import PasswordHasher
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import func, select, update

from forum.app import create_app
from forum.config import Settings
from forum.models import Actor, Base, Member, Thread
from forum.services import site
from forum.web.context import ForumContext
from forum.web.security import CSRF_COOKIE, SESSION_COOKIE
from tests.conftest import BASE_URL, csrf_from, forum_of, register, submit
from tests.factories import make_category, make_member

PASSWORD = "correct horse battery"
FORM_ROUTES = [
    "/register", "/login", "/logout", "/c/x/new", "/t/1/reply", "/p/1/edit", "/p/1/delete", "/settings",
    "/admin", "/setup",
]  # fmt: skip


async def table_counts(forum: ForumContext) -> dict[str, int]:
    async with forum.read() as session:
        return {
            table.name: await session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


async def member_row(forum: ForumContext, name: str) -> Member:
    async with forum.read() as session:
        member = await session.scalar(
            select(Member).join(Actor, Actor.id == Member.actor_id).where(Actor.username_key == name.lower())
        )
    assert member is not None
    return member


async def log_in(client: AsyncClient, name: str, password: str = PASSWORD) -> Response:
    response = await submit(client, "/login", {"username": name, "password": password})
    assert response.status_code == 303, response.text
    return response


def visitor(client: AsyncClient, base_url: str = BASE_URL, **cookies: str) -> AsyncClient:
    """Another browser on the same app, with its own cookie jar."""
    return AsyncClient(transport=client._transport, base_url=base_url, cookies=cookies)


# --- CSRF and Origin -----------------------------------------------------------------------------


async def test_form_without_csrf_token_is_refused(client: AsyncClient) -> None:
    await client.get("/register")
    before = await table_counts(forum_of(client))
    response = await client.post(
        "/register", data={"username": "eve", "email": "eve@example.org", "password": PASSWORD},
        headers={"Origin": BASE_URL},
    )  # fmt: skip
    assert response.status_code == 403
    assert "Reload the page" in response.text
    assert await table_counts(forum_of(client)) == before


async def test_csrf_token_of_another_browser_is_refused(client: AsyncClient) -> None:
    attacker_page = await client.get("/register")
    attacker_token = csrf_from(attacker_page)
    async with visitor(client) as victim:
        await victim.get("/register")  # the victim has a CSRF cookie of their own
        assert victim.cookies[CSRF_COOKIE] != client.cookies[CSRF_COOKIE]
        response = await victim.post(
            "/register",
            data={"username": "eve", "email": "eve@example.org", "password": PASSWORD, "csrf_token": attacker_token},
        )
    assert response.status_code == 403
    assert (await table_counts(forum_of(client)))["members"] == 0


async def test_wrong_csrf_token_is_refused_on_member_forms(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await register(client, "alice")
    before = await table_counts(forum_of(client))
    for url, data in [
        ("/c/general/new", {"title": "Forged", "body": "forged"}),
        ("/settings", {"action": "create_token", "name": "forged"}),
        ("/logout", {}),
    ]:
        response = await client.post(url, data={**data, "csrf_token": "0" * 64})
        assert response.status_code == 403, url
    assert await table_counts(forum_of(client)) == before
    assert (await client.get("/settings")).status_code == 200  # still logged in


async def test_csrf_cookie_without_matching_token_is_refused(client: AsyncClient) -> None:
    await client.get("/register")
    response = await client.post(
        "/register",
        data={"username": "eve", "email": "eve@example.org", "password": PASSWORD,
              "csrf_token": csrf_from(await client.get("/register")) + "0"},
    )  # fmt: skip
    assert response.status_code == 403


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:8000.evil.example"])
@pytest.mark.parametrize("path", FORM_ROUTES)
async def test_post_from_another_origin_is_refused(client: AsyncClient, path: str, origin: str) -> None:
    page = await client.get("/register")
    response = await client.post(
        path, data={"csrf_token": csrf_from(page), "username": "eve", "body": "x"},
        headers={"Origin": origin, "Accept": "text/html"},
    )  # fmt: skip
    assert response.status_code == 403
    assert "another site" in response.text


async def test_same_origin_and_no_origin_are_accepted(client: AsyncClient, settings: Settings) -> None:
    """Browsers that send no Origin (older ones, privacy settings) still work when the CSRF token is right."""
    await make_category(settings, "general", "General")
    page = await client.get("/register")
    registered = await client.post(
        "/register",
        data={"username": "alice", "email": "alice@example.org", "password": PASSWORD, "csrf_token": csrf_from(page)},
    )
    assert registered.status_code == 303
    token = csrf_from(await client.get("/c/general/new"))
    created = await client.post("/c/general/new", data={"title": "No origin", "body": "text", "csrf_token": token})
    assert created.status_code == 303
    thread_url = created.headers["location"]
    replied = await client.post(f"{thread_url}/reply", data={"body": "answer", "csrf_token": token})
    assert replied.status_code == 303
    post_id = replied.headers["location"].removeprefix("/p/")
    edited = await client.post(f"/p/{post_id}/edit", data={"body": "answer, edited", "csrf_token": token})
    assert edited.status_code == 303
    deleted = await client.post(f"/p/{post_id}/delete", data={"csrf_token": token}, headers={"Origin": BASE_URL})
    assert deleted.status_code == 303
    saved = await client.post("/settings", data={"action": "preferences", "language": "fr", "csrf_token": token})
    assert saved.status_code == 303
    logged_out = await client.post("/logout", data={"csrf_token": token})
    assert logged_out.status_code == 303
    logged_in = await client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    assert logged_in.status_code == 303


# --- Session cookies -----------------------------------------------------------------------------


def cookie_attributes(response: Response, name: str) -> set[str]:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return {part.strip().lower() for part in header.split(";")[1:]}
    raise AssertionError(f"no {name} cookie set")


async def test_session_cookie_flags_over_http(client: AsyncClient) -> None:
    response = await register(client, "alice")
    for name in (SESSION_COOKIE,):
        attributes = cookie_attributes(response, name)
        assert "httponly" in attributes
        assert "samesite=lax" in attributes
        assert "secure" not in attributes
        assert "path=/" in attributes
    csrf = cookie_attributes(await visitor(client).get("/register"), CSRF_COOKIE)
    assert {"httponly", "samesite=lax"} <= csrf
    assert "secure" not in csrf


@pytest.fixture
async def https_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    application = create_app(settings.with_changes(base_url="https://forum.example"), run_worker=False)
    async with (
        application.router.lifespan_context(application),
        AsyncClient(transport=ASGITransport(app=application), base_url="https://forum.example") as http,
    ):
        yield http


async def test_cookies_are_secure_behind_https(https_client: AsyncClient) -> None:
    page = await https_client.get("/register")
    assert "secure" in cookie_attributes(page, CSRF_COOKIE)
    response = await https_client.post(
        "/register",
        data={"username": "alice", "email": "alice@example.org", "password": PASSWORD, "csrf_token": csrf_from(page)},
        headers={"Origin": "https://forum.example"},
    )
    assert response.status_code == 303, response.text
    attributes = cookie_attributes(response, SESSION_COOKIE)
    assert {"httponly", "samesite=lax", "secure"} <= attributes
    assert "alice" in (await https_client.get("/settings")).text
    # The http origin of the same host is another origin for a form.
    refused = await https_client.post("/logout", data={}, headers={"Origin": "http://forum.example"})
    assert refused.status_code == 403


async def test_logout_ends_the_session_everywhere(client: AsyncClient) -> None:
    await register(client, "alice")
    old_cookie = client.cookies[SESSION_COOKIE]
    async with visitor(client, **{SESSION_COOKIE: old_cookie}) as other_tab:
        assert "alice" in (await other_tab.get("/settings")).text  # the viewer is now cached in the process
        logged_out = await submit(client, "/settings", {}, action="/logout")
        assert logged_out.status_code == 303
        assert SESSION_COOKIE not in client.cookies
        after = await other_tab.get("/settings")
        assert after.status_code == 303
        assert after.headers["location"].startswith("/login")
        profile = await other_tab.get("/u/alice")
        assert 'action="/logout"' not in profile.text
        assert 'href="/register"' in profile.text


# --- Passwords -----------------------------------------------------------------------------------


def argon2_parameters(encoded: str) -> dict[str, int]:
    match = re.match(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$", encoded)
    assert match is not None, encoded
    return {"m": int(match[1]), "t": int(match[2]), "p": int(match[3])}


async def test_passwords_are_stored_as_argon2id(client: AsyncClient) -> None:
    await register(client, "alice")
    stored = (await member_row(forum_of(client), "alice")).password_hash
    assert stored.startswith("$argon2id$")
    parameters = argon2_parameters(stored)
    assert parameters["m"] >= 19456
    assert parameters["t"] >= 2
    assert PASSWORD not in stored


async def test_weaker_hash_is_upgraded_on_login(client: AsyncClient, settings: Settings) -> None:
    await make_member(settings, "alice")
    forum = forum_of(client)
    weak = PasswordHasher(memory_cost=8192, time_cost=1).hash(PASSWORD)
    async with forum.write() as session:
        await session.execute(update(Member).values(password_hash=weak))
    await log_in(client, "alice")
    stored = (await member_row(forum, "alice")).password_hash
    assert stored != weak
    assert argon2_parameters(stored)["m"] >= 19456
    assert argon2_parameters(stored)["t"] >= 2
    client.cookies.clear()
    await log_in(client, "alice")  # the upgraded hash still takes the same password


async def test_wrong_password_and_unknown_name_read_the_same(client: AsyncClient, settings: Settings) -> None:
    await make_member(settings, "alice")
    wrong = await submit(client, "/login", {"username": "alice", "password": "wrong password"})
    unknown = await submit(client, "/login", {"username": "nobody", "password": "wrong password"})
    assert wrong.status_code == unknown.status_code == 422
    assert "do not match" in wrong.text and "do not match" in unknown.text
    assert SESSION_COOKIE not in client.cookies


# --- Reading writes nothing ----------------------------------------------------------------------


def sqlite_data_version(connection: sqlite3.Connection) -> int:
    value: int = connection.execute("PRAGMA data_version").fetchone()[0]
    return value


async def test_reading_pages_writes_nothing(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await register(client, "alice")
    created = await submit(client, "/c/general/new", {"title": "Quiet", "body": "Nothing should change"})
    thread_url = created.headers["location"]
    await submit(client, thread_url, {"body": "a reply"}, action=f"{thread_url}/reply")
    forum = forum_of(client)
    watcher = sqlite3.connect(settings.database_url.split(":///", 1)[1]) if settings.is_sqlite else None
    try:
        before = await table_counts(forum)
        version = sqlite_data_version(watcher) if watcher else None
        pages = ["/", "/c/general", thread_url, f"{thread_url}?page=1", "/u/alice", "/p/1", "/p/1/revisions"]
        async with visitor(client) as guest:
            for _ in range(2):  # the second round is served from the visitor cache
                for url in pages:
                    assert (await guest.get(url)).status_code in (200, 302), url
                    assert (await client.get(url)).status_code in (200, 302), url
        assert await table_counts(forum) == before
        if watcher:
            assert sqlite_data_version(watcher) == version
    finally:
        if watcher:
            watcher.close()


# --- Sanitized pages -----------------------------------------------------------------------------


class DangerFinder(HTMLParser):
    """Collects what a hostile text must never become: script elements, event handlers, script URLs."""

    FORBIDDEN_TAGS = frozenset({"script", "iframe", "object", "embed", "svg", "math", "base", "frame", "applet"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.FORBIDDEN_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{tag} {name}=")
            if name in ("href", "src", "action", "formaction", "xlink:href") and value:
                compact = re.sub(r"[\s\x00-\x1f]", "", value).lower()
                if compact.startswith(("javascript:", "vbscript:", "data:text/html")):
                    self.found.append(f"{tag} {name}={value}")
            if name == "style" and value and "expression(" in value.lower():
                self.found.append(f"{tag} style={value}")


def dangers(page: str) -> list[str]:
    finder = DangerFinder()
    finder.feed(page)
    return finder.found


HOSTILE_TITLES = ['<script>alert("title")</script>', '"><img src=x onerror=alert(1)>', "</title><svg onload=alert(1)>"]
HOSTILE_BODIES = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click me](javascript:alert(1))",
    '<a href="javascript:alert(1)">x</a>',
    "[tab](java\tscript:alert(1))",
    '<iframe src="https://evil.example/"></iframe>',
    "<svg><script>alert(1)</script></svg>",
    '<div style="background:url(javascript:alert(1))" onclick="alert(1)">x</div>',
    "![img](javascript:alert(1))",
    '"><script>alert(2)</script>',
]


@pytest.mark.parametrize("title", HOSTILE_TITLES)
async def test_hostile_titles_stay_text(client: AsyncClient, settings: Settings, title: str) -> None:
    await make_category(settings, "general", "General")
    await register(client, "mallory")
    created = await submit(client, "/c/general/new", {"title": title, "body": "plain"})
    assert created.status_code == 303
    thread_url = created.headers["location"]
    async with visitor(client) as guest:
        for reader in (client, guest):
            for url in ("/", "/c/general", thread_url, "/u/mallory"):
                page = await reader.get(url)
                assert page.status_code == 200
                assert dangers(page.text) == [], url
                if url != "/u/mallory":
                    assert html.escape(title, quote=False) in page.text.replace("&#34;", '"').replace("&#39;", "'")


@pytest.mark.parametrize("body", HOSTILE_BODIES)
async def test_hostile_bodies_are_sanitized(client: AsyncClient, settings: Settings, body: str) -> None:
    await make_category(settings, "general", "General")
    await register(client, "mallory")
    created = await submit(client, "/c/general/new", {"title": "Look", "body": body})
    assert created.status_code == 303
    thread_url = created.headers["location"]
    replied = await submit(client, thread_url, {"body": body}, action=f"{thread_url}/reply")
    assert replied.status_code == 303
    async with visitor(client) as guest:
        for reader in (client, guest):
            for url in (thread_url, "/u/mallory"):
                page = await reader.get(url)
                assert page.status_code == 200
                assert dangers(page.text) == [], url
    edit_form = await client.get(replied.headers["location"].replace("/p/", "/p/") + "/edit")
    assert edit_form.status_code == 200
    assert dangers(edit_form.text) == []


# --- Private categories --------------------------------------------------------------------------


async def test_private_category_is_not_found_for_visitors_and_members(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "secret", "Secret garden", private=True)
    await make_member(settings, "rosa", role="admin")
    await log_in(client, "rosa")
    created = await submit(client, "/c/secret/new", {"title": "Hidden plans", "body": "shh"})
    assert created.status_code == 303
    thread_url = created.headers["location"]
    thread_id = thread_url.rsplit("/", 1)[1]
    assert "Hidden plans" in (await client.get(thread_url)).text

    await make_member(settings, "bob")
    async with visitor(client) as guest, visitor(client) as member:
        await log_in(member, "bob")
        for reader in (guest, member):
            for url in ("/c/secret", thread_url, "/p/1", "/p/1/revisions", f"{thread_url}?page=1"):
                response = await reader.get(url)
                assert response.status_code == 404, url
                assert "Hidden plans" not in response.text
            home = await reader.get("/")
            assert "Secret garden" not in home.text and "Hidden plans" not in home.text
            assert "Hidden plans" not in (await reader.get("/u/rosa")).text
        token = csrf_from(await member.get("/settings"))
        for url, data in [
            ("/c/secret/new", {"title": "In", "body": "x"}),
            (f"/t/{thread_id}/reply", {"body": "x"}),
            ("/p/1/edit", {"body": "x"}),
        ]:
            response = await member.post(url, data={**data, "csrf_token": token})
            assert response.status_code == 404, url
        assert (await member.get("/c/secret/new")).status_code == 404
    async with forum_of(client).read() as session:
        assert await session.scalar(select(Thread.post_count).where(Thread.id == int(thread_id))) == 1


# --- First-run setup -----------------------------------------------------------------------------


async def test_first_run_setup(client: AsyncClient) -> None:
    first = await client.get("/")
    assert first.status_code == 303
    assert first.headers["location"] == "/setup"
    form = await client.get("/setup")
    assert form.status_code == 200
    assert 'name="code"' in form.text

    async with forum_of(client).write() as session:
        code = await site.issue_setup_code(session)
    wrong = await submit(client, "/setup", {
        "code": "000000-000000-000000", "username": "gardener1", "email": "g@example.org", "password": PASSWORD,
    })  # fmt: skip
    assert wrong.status_code == 422
    assert "setup code" in wrong.text
    assert 'value="gardener1"' in wrong.text
    assert 'value="g@example.org"' in wrong.text
    assert PASSWORD not in wrong.text
    assert SESSION_COOKIE not in client.cookies

    right = await submit(client, "/setup", {
        "code": code, "username": "gardener1", "email": "g@example.org", "password": PASSWORD,
    })  # fmt: skip
    assert right.status_code == 303
    assert SESSION_COOKIE in client.cookies
    admin_page = await client.get(right.headers["location"])
    assert admin_page.status_code == 200
    assert "gardener1" in admin_page.text
    assert (await member_row(forum_of(client), "gardener1")).is_admin

    again = await client.get("/setup")
    assert again.status_code == 303 and again.headers["location"] == "/"
    home = await client.get("/")
    assert home.status_code == 200
    async with visitor(client) as late:
        assert (await late.get("/setup")).headers["location"] == "/"
        assert (await late.get("/")).status_code == 200
        # The used code creates nothing more.
        late_post = await late.post(
            "/setup", data={"code": code, "username": "intruder", "email": "i@example.org", "password": PASSWORD,
                            "csrf_token": csrf_from(await late.get("/register"))},
        )  # fmt: skip
        assert late_post.status_code == 303 and late_post.headers["location"] == "/"
    assert (await table_counts(forum_of(client)))["members"] == 1


async def test_setup_is_closed_once_a_member_exists(client: AsyncClient, settings: Settings) -> None:
    await make_member(settings, "alice")
    async with forum_of(client).write() as session:
        code = await site.issue_setup_code(session)
    assert (await client.get("/")).status_code == 200
    response = await client.post(
        "/setup",
        data={"code": code, "username": "intruder", "email": "i@example.org", "password": PASSWORD,
              "csrf_token": csrf_from(await client.get("/register"))},
    )  # fmt: skip
    assert response.status_code == 303
    assert (await table_counts(forum_of(client)))["members"] == 1
