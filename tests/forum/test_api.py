"""JSON API v1 through the real app: reading, writing, permissions, tokens, errors as problem+json."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import update

from forum.config import Settings
from forum.db import create_engine, sessionmaker
from forum.models import Thread
from forum.services import accounts
from tests.conftest import BASE_URL
from tests.factories import make_category, make_member

PROBLEM = "application/problem+json"


async def make_token(settings: Settings, name: str, label: str = "tests") -> str:
    """A personal access token, made as `forum token create NAME` makes it."""
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with sessionmaker(engine)() as session, session.begin():
            member = await accounts.get_member(session, name)
            _token, plain = await accounts.create_token(session, member, label)
            return plain
    finally:
        await engine.dispose()


async def revoke_tokens(settings: Settings, name: str) -> None:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with sessionmaker(engine)() as session, session.begin():
            member = await accounts.get_member(session, name)
            for token in await accounts.list_tokens(session, member):
                await accounts.revoke_token(session, member, token.id)
    finally:
        await engine.dispose()


async def lock_thread(settings: Settings, thread_id: int) -> None:
    """No moderation API yet: lock the thread as a gardener's action would, in the database."""
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with sessionmaker(engine)() as session, session.begin():
            await session.execute(update(Thread).where(Thread.id == thread_id).values(locked=True))
    finally:
        await engine.dispose()


async def member_token(settings: Settings, name: str, *, role: str = "member") -> str:
    await make_member(settings, name, role=role)
    return await make_token(settings, name)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"] == "about:blank"
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def start_thread(client: AsyncClient, token: str, category: str | int = "general", **fields: str) -> Any:
    payload = {"category": category, "title": "Hello", "body": "First *post*", **fields}
    response = await client.post("/api/v1/threads", json=payload, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()


# --- categories


async def test_categories_list_what_the_caller_may_see(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await make_category(settings, "backroom", "Staff room", private=True)
    admin = await member_token(settings, "root_admin", role="admin")
    member = await member_token(settings, "alice")

    anonymous = await client.get("/api/v1/categories")
    assert anonymous.status_code == 200
    assert anonymous.headers["content-type"] == "application/json"
    [general] = anonymous.json()
    assert general == {
        "id": general["id"], "slug": "general", "name": "General", "description": "",
        "ap_id": f"{BASE_URL}/c/general", "url": f"{BASE_URL}/c/general", "handle": "general@127.0.0.1:8000",
        "local": True, "private": False, "thread_count": 0, "post_count": 0, "last_activity_at": None,
    }  # fmt: skip
    as_member = await client.get("/api/v1/categories", headers=auth(member))
    assert [c["slug"] for c in as_member.json()] == ["general"]
    as_admin = await client.get("/api/v1/categories", headers=auth(admin))
    assert [c["slug"] for c in as_admin.json()] == ["general", "backroom"]


async def test_one_category_by_slug_or_id(client: AsyncClient, settings: Settings) -> None:
    general = await make_category(settings, "general", "General")
    private = await make_category(settings, "backroom", "Staff", private=True)
    member = await member_token(settings, "alice")
    by_slug = await client.get("/api/v1/categories/General")
    by_id = await client.get(f"/api/v1/categories/{general.id}")
    assert by_slug.status_code == by_id.status_code == 200
    assert by_slug.json() == by_id.json()
    for ref in ("backroom", private.id):
        problem(await client.get(f"/api/v1/categories/{ref}", headers=auth(member)), 404)
    for ref in ("nope", "99999999999", "²"):
        problem(await client.get(f"/api/v1/categories/{ref}"), 404)


async def test_category_threads_newest_activity_first_with_cursor(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    token = await member_token(settings, "alice")
    first = await start_thread(client, token, title="One")
    await start_thread(client, token, title="Two")
    await start_thread(client, token, title="Three")
    reply = await client.post(f"/api/v1/threads/{first['id']}/posts", json={"body": "bump"}, headers=auth(token))
    assert reply.status_code == 201

    page = await client.get("/api/v1/categories/general/threads?limit=2")
    assert page.status_code == 200
    listing = page.json()
    assert listing["category"]["slug"] == "general"
    assert [t["title"] for t in listing["threads"]] == ["One", "Three"]
    one = listing["threads"][0]
    assert one["post_count"] == 2
    assert one["ap_id"] == f"{BASE_URL}/t/{first['id']}"
    assert one["author"]["handle"] == "alice"
    assert listing["next"]
    rest = (await client.get(f"/api/v1/categories/general/threads?limit=2&after={listing['next']}")).json()
    assert [t["title"] for t in rest["threads"]] == ["Two"]
    assert rest["next"] is None

    damaged = problem(await client.get("/api/v1/categories/general/threads?after=garbage"), 422)
    assert damaged["field"] == "after"
    assert problem(await client.get("/api/v1/categories/general/threads?limit=0"), 422)["field"] == "limit"


# --- threads and posts


async def test_start_read_and_answer_a_thread(client: AsyncClient, settings: Settings) -> None:
    category = await make_category(settings, "general", "General")
    alice = await member_token(settings, "alice")
    bob = await member_token(settings, "bob")

    created = await client.post(
        "/api/v1/threads", json={"category": category.id, "title": "Hello *world*", "body": "First **post**"},
        headers=auth(alice),
    )  # fmt: skip
    assert created.status_code == 201
    thread = created.json()
    assert created.headers["location"] == f"{BASE_URL}/api/v1/threads/{thread['id']}"
    assert thread["url"] == f"{BASE_URL}/t/{thread['id']}"
    assert thread["ap_id"] == f"{BASE_URL}/t/{thread['id']}"
    assert thread["title"] == "Hello *world*"
    assert thread["category"]["slug"] == "general"
    assert (thread["locked"], thread["pinned"], thread["archived"], thread["tags"]) == (False, False, False, [])
    [opening] = thread["posts"]
    assert opening["body"] == "First **post**"
    assert "<strong>post</strong>" in opening["html"]
    assert opening["author"] == {
        "id": opening["author"]["id"], "name": "alice", "handle": "alice", "local": True, "url": f"{BASE_URL}/u/alice"
    }  # fmt: skip

    page_before = await client.get(thread["url"])
    replied = await client.post(
        f"/api/v1/threads/{thread['id']}/posts", json={"body": "An answer", "in_reply_to": opening["id"]},
        headers=auth(bob),
    )  # fmt: skip
    assert replied.status_code == 201
    answer = replied.json()
    assert replied.headers["location"] == f"{BASE_URL}/api/v1/posts/{answer['id']}"
    assert (answer["in_reply_to"], answer["thread"], answer["position"]) == (opening["id"], thread["id"], 2)
    assert answer["author"]["handle"] == "bob"

    read = (await client.get(f"/api/v1/threads/{thread['id']}")).json()
    assert read["post_count"] == 2
    assert [p["body"] for p in read["posts"]] == ["First **post**", "An answer"]
    assert (read["page"], read["page_count"]) == (1, 1)
    assert (await client.get(f"/api/v1/posts/{answer['id']}")).json() == answer
    # The visitor's cached page was invalidated by the write.
    page_after = await client.get(thread["url"])
    assert "An answer" not in page_before.text
    assert "An answer" in page_after.text

    problem(await client.get(f"/api/v1/threads/{thread['id']}?page=2"), 404)
    assert problem(await client.get(f"/api/v1/threads/{thread['id']}?page=x"), 422)["field"] == "page"
    for missing in ("999999", "99999999999", "abc", "²"):
        problem(await client.get(f"/api/v1/threads/{missing}"), 404)
        problem(await client.get(f"/api/v1/posts/{missing}"), 404)


async def test_thread_by_slug_at_our_host_and_remote_category(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    token = await member_token(settings, "alice")
    thread = await start_thread(client, token, category="general@127.0.0.1:8000")
    assert thread["category"]["slug"] == "general"
    remote = await client.post(
        "/api/v1/threads", json={"category": "general@lemmy.example", "title": "t", "body": "b"}, headers=auth(token)
    )
    refused = problem(remote, 404)
    assert "could not be found on its server" in refused["detail"]
    assert refused["field"] == "category"
    unknown = await client.post("/api/v1/threads", json={"category": "nope", "title": "t", "body": "b"},
                                headers=auth(token))  # fmt: skip
    assert problem(unknown, 404)["field"] == "category"


async def test_answer_to_a_post_of_another_thread_is_refused(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    token = await member_token(settings, "alice")
    one = await start_thread(client, token, title="One")
    two = await start_thread(client, token, title="Two")
    refused = await client.post(
        f"/api/v1/threads/{two['id']}/posts", json={"body": "x", "in_reply_to": one["posts"][0]["id"]},
        headers=auth(token),
    )  # fmt: skip
    assert problem(refused, 422)["field"] == "in_reply_to"


async def test_edit_delete_and_history(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    alice = await member_token(settings, "alice")
    bob = await member_token(settings, "bob")
    thread = await start_thread(client, alice, title="Old title", body="old text")
    opening = thread["posts"][0]["id"]
    answer = (await client.post(f"/api/v1/threads/{thread['id']}/posts", json={"body": "bob's"},
                                headers=auth(bob))).json()  # fmt: skip

    edited = await client.patch(f"/api/v1/posts/{opening}", json={"body": "new text", "title": "New title"},
                                headers=auth(alice))  # fmt: skip
    assert edited.status_code == 200
    assert edited.json()["body"] == "new text"
    assert edited.json()["edited_at"] is not None
    assert (await client.get(f"/api/v1/threads/{thread['id']}")).json()["title"] == "New title"
    history = (await client.get(f"/api/v1/posts/{opening}/revisions")).json()
    assert history["post"]["body"] == "new text"
    assert [(r["number"], r["title"], r["body"]) for r in history["revisions"]] == [(1, "Old title", "old text")]

    titled_reply = await client.patch(f"/api/v1/posts/{answer['id']}", json={"body": "x", "title": "T"},
                                      headers=auth(bob))  # fmt: skip
    assert problem(titled_reply, 422)["field"] == "title"
    assert (await client.get(f"/api/v1/posts/{answer['id']}")).json()["body"] == "bob's"
    empty_title = await client.patch(f"/api/v1/posts/{opening}", json={"body": "x", "title": " "}, headers=auth(alice))
    assert problem(empty_title, 422)["detail"] == "Give the thread a title."

    others = await client.patch(f"/api/v1/posts/{opening}", json={"body": "mine now"}, headers=auth(bob))
    assert problem(others, 403)["detail"] == "Only its author may change this post."
    problem(await client.delete(f"/api/v1/posts/{opening}", headers=auth(bob)), 403)
    problem(await client.delete(f"/api/v1/posts/{opening}"), 401)

    deleted = await client.delete(f"/api/v1/posts/{opening}", headers=auth(alice))
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = (await client.get(f"/api/v1/posts/{opening}")).json()
    assert (gone["deleted"], gone["body"], gone["html"]) == (True, "", "")
    assert (await client.get(f"/api/v1/posts/{opening}/revisions")).json()["revisions"] == []
    again = await client.patch(f"/api/v1/posts/{opening}", json={"body": "back"}, headers=auth(alice))
    problem(again, 403)


async def test_private_category_is_hidden_everywhere(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "backroom", "Staff", private=True)
    admin = await member_token(settings, "root_admin", role="admin")
    member = await member_token(settings, "alice")
    thread = await start_thread(client, admin, category="backroom", title="Secret")
    post_id = thread["posts"][0]["id"]
    assert (await client.get(f"/api/v1/threads/{thread['id']}", headers=auth(admin))).status_code == 200

    for headers in ({}, auth(member)):
        problem(await client.get(f"/api/v1/threads/{thread['id']}", headers=headers), 404)
        problem(await client.get(f"/api/v1/posts/{post_id}", headers=headers), 404)
        problem(await client.get(f"/api/v1/posts/{post_id}/revisions", headers=headers), 404)
        problem(await client.get("/api/v1/categories/backroom/threads", headers=headers), 404)
        problem(await client.get(f"/api/v1/resolve?q=/t/{thread['id']}", headers=headers), 404)
    reply = await client.post(f"/api/v1/threads/{thread['id']}/posts", json={"body": "hi"}, headers=auth(member))
    problem(reply, 404)
    new = await client.post("/api/v1/threads", json={"category": "backroom", "title": "t", "body": "b"},
                            headers=auth(member))  # fmt: skip
    problem(new, 404)
    problem(await client.patch(f"/api/v1/posts/{post_id}", json={"body": "x"}, headers=auth(member)), 404)


async def test_locked_thread_takes_no_replies(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    token = await member_token(settings, "alice")
    thread = await start_thread(client, token)
    await lock_thread(settings, thread["id"])
    assert (await client.get(f"/api/v1/threads/{thread['id']}")).json()["locked"] is True
    refused = await client.post(f"/api/v1/threads/{thread['id']}/posts", json={"body": "late"}, headers=auth(token))
    assert problem(refused, 403)["detail"] == "This thread is locked; it takes no new replies."


# --- tokens


async def test_writes_need_a_token(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    for response in (
        await client.post("/api/v1/threads", json={"category": "general", "title": "t", "body": "b"}),
        await client.post("/api/v1/threads/1/posts", json={"body": "b"}),
        await client.get("/api/v1/me"),
    ):
        assert "Authorization: Bearer TOKEN" in problem(response, 401)["detail"]
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header", ["Bearer jdn_not_a_real_token", "Bearer ", "Basic YWxpY2U6cHc=", "Bearer " + "x" * 500]
)
async def test_bad_token_is_refused_even_for_public_reads(client: AsyncClient, header: str) -> None:
    response = await client.get("/api/v1/categories", headers={"Authorization": header})
    problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer realm="api", error="invalid_token"'


async def test_revoked_token_stops_working(client: AsyncClient, settings: Settings) -> None:
    token = await member_token(settings, "alice")
    assert (await client.get("/api/v1/me", headers=auth(token))).status_code == 200
    await revoke_tokens(settings, "alice")
    revoked = await client.get("/api/v1/me", headers=auth(token))
    assert problem(revoked, 401)["detail"] == "This token is unknown or was revoked."
    assert "invalid_token" in revoked.headers["www-authenticate"]


async def test_me_and_token_last_use(client: AsyncClient, settings: Settings) -> None:
    token = await member_token(settings, "alice")
    first = await client.get("/api/v1/me", headers=auth(token))
    assert first.status_code == 200
    me = first.json()
    assert (me["handle"], me["email"], me["role"], me["admin"], me["duties"]) == (
        "alice", "alice@example.org", "member", False, [],
    )  # fmt: skip
    assert me["ap_id"] == f"{BASE_URL}/u/alice"
    assert me["token"]["name"] == "tests"
    assert token.startswith(me["token"]["prefix"])
    used = me["token"]["last_used_at"]
    assert used is not None
    # Within a minute the token's last use is not written again.
    assert (await client.get("/api/v1/me", headers=auth(token))).json()["token"]["last_used_at"] == used
    assert "no-store" in first.headers["cache-control"]


# --- resolve


async def test_resolve_local_names_and_addresses(client: AsyncClient, settings: Settings) -> None:
    category = await make_category(settings, "general", "General")
    token = await member_token(settings, "alice")
    thread = await start_thread(client, token)
    post_id = thread["posts"][0]["id"]
    expected = {
        "alice": ("member", None), "@alice@127.0.0.1:8000": ("member", None),
        "acct:ALICE@127.0.0.1:8000": ("member", None),
        f"{BASE_URL}/u/alice": ("member", None), "general": ("category", category.id),
        f"{BASE_URL}/c/general": ("category", category.id), "/c/general/": ("category", category.id),
        f"{BASE_URL}/t/{thread['id']}": ("thread", thread["id"]), f"/t/{thread['id']}": ("thread", thread["id"]),
        f"{BASE_URL}/p/{post_id}": ("post", post_id),
    }  # fmt: skip
    for query, (kind, record_id) in expected.items():
        response = await client.get("/api/v1/resolve", params={"q": query})
        assert response.status_code == 200, (query, response.text)
        found = response.json()
        assert found["type"] == kind, query
        assert found["ap_id"]
        if record_id is not None:
            assert found["id"] == record_id
    member = (await client.get("/api/v1/resolve", params={"q": "alice"})).json()
    assert member["handle"] == "alice"
    assert member["id"] == thread["posts"][0]["author"]["id"]

    for remote in ("someone@mastodon.example", "https://lemmy.example/c/cats", "acct:general@other.example"):
        refused = problem(await client.get("/api/v1/resolve", params={"q": remote}), 404)
        assert "could not be found on its server" in refused["detail"]
    for unknown in ("nobody", f"{BASE_URL}/x/1", "/t/99999999999", "/t/123456"):
        problem(await client.get("/api/v1/resolve", params={"q": unknown}), 404)
    assert problem(await client.get("/api/v1/resolve?q=%20"), 422)["field"] == "q"


# --- bodies and errors


@pytest.mark.parametrize(
    ("content", "content_type", "status", "reason"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"", "application/json", 400, "no body"),
        (b'["a list"]', "application/json", 400, "must be a JSON object"),
        (b'{"body": "\xff\xfe"}', "application/json", 400, "not valid UTF-8"),
        (b'{"body": NaN}', "application/json", 400, "not valid JSON"),
        (b"[" * 100_000, "application/json", 400, "nested too deeply"),
        (b'{"body": "hi"}', "text/plain", 415, "application/json"),
        (b'{"title": "t", "body": "b"}', "application/json", 422, "“category” is missing"),
        (b'{"category": "general", "title": 5, "body": "b"}', "application/json", 422, "must be a string"),
        (b'{"category": true, "title": "t", "body": "b"}', "application/json", 422, "must be an id or a name"),
        (b'{"category": "general", "title": "t", "body": "b", "tilte": 1}', "application/json", 422, "“tilte”"),
        (b'{"category": "general", "title": "", "body": "b"}', "application/json", 422, "Give the thread a title."),
        (b'{"category": "general", "title": "t", "body": "\\ud800"}', "application/json", 422, "surrogate"),
        (b'{"category": "general", "title": "t", "body": "a\\u0000b"}', "application/json", 422, "control character"),
    ],
)
async def test_bad_bodies_are_explained(
    client: AsyncClient, settings: Settings, content: bytes, content_type: str, status: int, reason: str
) -> None:
    await make_category(settings, "general", "General")
    token = await member_token(settings, "alice")
    response = await client.post(
        "/api/v1/threads", content=content, headers={**auth(token), "Content-Type": content_type}
    )
    assert reason in problem(response, status)["detail"]
    assert (await client.get("/api/v1/categories/general")).json()["thread_count"] == 0


async def test_over_long_texts_are_refused_with_the_field(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    token = await member_token(settings, "alice")
    long_title = await client.post("/api/v1/threads", json={"category": "general", "title": "t" * 201, "body": "b"},
                                   headers=auth(token))  # fmt: skip
    assert problem(long_title, 422)["field"] == "title"
    long_body = await client.post("/api/v1/threads", json={"category": "general", "title": "t", "body": "b" * 50_001},
                                  headers=auth(token))  # fmt: skip
    refused = problem(long_body, 422)
    assert refused["field"] == "body"
    assert refused["detail"].startswith("A post has at most 50")


async def test_body_over_the_size_limit_is_413(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    token = await member_token(settings, "alice")
    huge = {"category": "general", "title": "t", "body": "b" * (settings.max_body_bytes + 1)}
    response = await client.post("/api/v1/threads", json=huge, headers=auth(token))
    assert "larger than this forum accepts" in problem(response, 413)["detail"]


async def test_unknown_paths_and_methods_are_problems(client: AsyncClient) -> None:
    problem(await client.get("/api/v1/nothing-here"), 404)
    problem(await client.get("/api/v2/categories"), 404)
    problem(await client.put("/api/v1/categories"), 405)
