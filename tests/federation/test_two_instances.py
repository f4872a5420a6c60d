"""Two Jardin instances on 127.0.0.1 and 127.0.0.2, over real HTTP with signatures: a member of B follows
a category of A, sees its threads arrive, answers, edits, deletes; and the other way round."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from forum.models import Follow, FollowState, ReceivedActivity
from tests.federation.instances import Instance, eventually, running

pytestmark = pytest.mark.slow


async def _threads(instance: Instance, token: str, category: str) -> list[dict[str, Any]]:
    response = await instance.api(token, "GET", f"/categories/{category}/threads")
    if response.status_code != 200:
        return []
    threads: list[dict[str, Any]] = response.json()["threads"]
    return threads


async def _posts(instance: Instance, token: str, thread_id: int) -> list[dict[str, Any]]:
    response = await instance.api(token, "GET", f"/threads/{thread_id}")
    assert response.status_code == 200, response.text
    posts: list[dict[str, Any]] = response.json()["posts"]
    return posts


async def _follow_state(instance: Instance) -> str | None:
    async with instance.forum.read() as session:
        follow = await session.scalar(select(Follow))
        return follow.state.value if follow else None


async def test_follow_thread_reply_edit_delete_across_two_instances(
    database_url: str, tmp_path: Path, sqlite_template: Path
) -> None:
    shutil.copy(sqlite_template, tmp_path / "b.db")
    async with (
        running("127.0.0.1", database_url, tmp_path / "a") as a,
        running("127.0.0.2", f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", tmp_path / "b") as b,
    ):
        await a.category("general", "General")
        alice, bob = await a.member("alice"), await b.member("bob")
        remote_category = f"general@{a.host}"

        # B's member follows A's category by its handle: pending until A's Group accepts.
        followed = await b.api(bob, "POST", "/follows", {"target": remote_category})
        assert followed.status_code == 201, followed.text
        assert followed.json()["state"] == "pending"
        assert followed.json()["target"]["type"] == "category"
        assert await eventually(lambda: _is(_follow_state(b), "accepted"))
        async with a.forum.read() as session:
            follower = await session.scalar(select(Follow))
            assert follower is not None and follower.state == FollowState.ACCEPTED

        # A new thread on A arrives in B's copy of the category.
        created = await a.api(
            alice, "POST", "/threads", {"category": "general", "title": "Hello", "body": "First *post*"}
        )
        assert created.status_code == 201, created.text
        a_thread = created.json()
        b_threads = await eventually(lambda: _threads(b, bob, remote_category))
        assert [t["title"] for t in b_threads] == ["Hello"]
        b_thread_id = b_threads[0]["id"]
        b_posts = await _posts(b, bob, b_thread_id)
        assert b_posts[0]["ap_id"] == a_thread["ap_id"]
        assert "<em>post</em>" in b_posts[0]["html"]
        assert b_posts[0]["author"]["handle"] == f"alice@{a.host}"

        # B's member answers on B; the answer appears in A's thread with their name.
        answered = await b.api(bob, "POST", f"/threads/{b_thread_id}/posts", {"body": "Hello from B"})
        assert answered.status_code == 201, answered.text
        a_posts = await eventually(lambda: _longer(_posts(a, alice, a_thread["id"]), 1))
        assert a_posts[1]["author"]["handle"] == f"bob@{b.host}"
        assert "Hello from B" in a_posts[1]["html"]
        assert a_posts[1]["ap_id"] == answered.json()["ap_id"]

        # A's member answers on A; B, whose software reads Groups, gets the reply announced.
        await a.api(alice, "POST", f"/threads/{a_thread['id']}/posts", {"body": "Welcome, bob"})
        b_posts = await eventually(lambda: _longer(_posts(b, bob, b_thread_id), 2))
        assert "Welcome, bob" in b_posts[2]["html"]

        # The author edits the opening post on A: B's copy follows.
        opening = a_posts[0]["id"]
        edited = await a.api(
            alice, "PATCH", f"/posts/{opening}", {"body": "First post, edited", "title": "Hello again"}
        )
        assert edited.status_code == 200, edited.text
        await eventually(lambda: _contains(_posts(b, bob, b_thread_id), 0, "First post, edited"))

        # B's member deletes their answer: A shows it deleted.
        deleted = await b.api(bob, "DELETE", f"/posts/{answered.json()['id']}")
        assert deleted.status_code == 204
        await eventually(lambda: _gone(_posts(a, alice, a_thread["id"]), 1))

        # Nothing refused on either side along the way but what must be: our own objects coming back.
        for instance in (a, b):
            async with instance.forum.read() as session:
                refused = (
                    await session.scalars(select(ReceivedActivity.outcome).where(ReceivedActivity.state != "done"))
                ).all()
            assert all("our own" in str(reason) for reason in refused), refused


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


async def _longer(posts: Any, count: int) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = await posts
    return found if len(found) > count else None


async def _contains(posts: Any, index: int, text: str) -> bool:
    found: list[dict[str, Any]] = await posts
    return text in found[index]["html"]


async def _gone(posts: Any, index: int) -> bool:
    found: list[dict[str, Any]] = await posts
    return bool(found[index].get("deleted"))
