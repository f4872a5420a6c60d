"""Three Jardin instances (127.0.0.1, .2, .3): A's category is followed from B and C; what B's member writes
or votes reaches C through A's Group (FEP-1b12), and votes go both ways, are changed, and withdrawn."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.federation.instances import Instance, eventually, running

pytestmark = pytest.mark.slow


async def _thread(instance: Instance, token: str, category: str) -> dict[str, Any] | None:
    response = await instance.api(token, "GET", f"/categories/{category}/threads")
    threads: list[dict[str, Any]] = response.json()["threads"] if response.status_code == 200 else []
    return threads[0] if threads else None


async def _posts(instance: Instance, token: str, thread_id: int) -> list[dict[str, Any]]:
    response = await instance.api(token, "GET", f"/threads/{thread_id}")
    assert response.status_code == 200, response.text
    posts: list[dict[str, Any]] = response.json()["posts"]
    return posts


async def _counts(instance: Instance, token: str, thread_id: int, index: int) -> tuple[int, int]:
    posts = await _posts(instance, token, thread_id)
    if len(posts) <= index:
        return (-1, -1)
    return posts[index]["upvotes"], posts[index]["downvotes"]


async def _has(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _vote(instance: Instance, token: str, post_id: int, value: int) -> None:
    response = await instance.api(token, "PUT", f"/posts/{post_id}/vote", {"value": value})
    assert response.status_code == 200, response.text


async def test_votes_and_replies_travel_through_the_group_to_a_third_instance(
    database_url: str, tmp_path: Path, sqlite_template: Path
) -> None:
    for name in ("b", "c"):
        shutil.copy(sqlite_template, tmp_path / f"{name}.db")
    async with (
        running("127.0.0.1", database_url, tmp_path / "a") as a,
        running("127.0.0.2", f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", tmp_path / "b") as b,
        running("127.0.0.3", f"sqlite+aiosqlite:///{tmp_path / 'c.db'}", tmp_path / "c") as c,
    ):
        await a.category("general", "General")
        alice, bob, carol = await a.member("alice"), await b.member("bob"), await c.member("carol")
        remote = f"general@{a.host}"
        for instance, token in ((b, bob), (c, carol)):
            followed = await instance.api(token, "POST", "/follows", {"target": remote})
            assert followed.status_code == 201, followed.text

        # Both followers are accepted before the thread, so both receive it.
        await eventually(lambda: _accepted_followers(a, alice, 2))
        created = await a.api(
            alice, "POST", "/threads", {"category": "general", "title": "Bulbs", "body": "Plant now?"}
        )
        assert created.status_code == 201, created.text
        a_thread = created.json()
        b_thread = await eventually(lambda: _thread(b, bob, remote))
        c_thread = await eventually(lambda: _thread(c, carol, remote))

        # Bob upvotes on B: A counts it and its Group announces it to C.
        b_opening = (await _posts(b, bob, b_thread["id"]))[0]["id"]
        await _vote(b, bob, b_opening, 1)
        await eventually(lambda: _has(_counts(a, alice, a_thread["id"], 0), (1, 0)))
        await eventually(lambda: _has(_counts(c, carol, c_thread["id"], 0), (1, 0)))
        # He changes his mind: one down vote everywhere, not an up and a down.
        await _vote(b, bob, b_opening, -1)
        await eventually(lambda: _has(_counts(a, alice, a_thread["id"], 0), (0, 1)))
        await eventually(lambda: _has(_counts(c, carol, c_thread["id"], 0), (0, 1)))
        # And withdraws it: Undo, announced too.
        withdrawn = await b.api(bob, "DELETE", f"/posts/{b_opening}/vote")
        assert withdrawn.status_code == 200, withdrawn.text
        await eventually(lambda: _has(_counts(a, alice, a_thread["id"], 0), (0, 0)))
        await eventually(lambda: _has(_counts(c, carol, c_thread["id"], 0), (0, 0)))

        # Carol replies on C: the reply reaches A, and B through A's Group.
        replied = await c.api(carol, "POST", f"/threads/{c_thread['id']}/posts", {"body": "Yes, before frost."})
        assert replied.status_code == 201, replied.text
        await eventually(lambda: _has(_counts(b, bob, b_thread["id"], 1), (0, 0)))
        b_reply = (await _posts(b, bob, b_thread["id"]))[1]
        assert b_reply["author"]["handle"] == f"carol@{c.host}"
        assert b_reply["ap_id"] == replied.json()["ap_id"]

        # Alice, on A, upvotes carol's reply: C (the author's home) and B (through the Group) count it.
        a_reply = (await _posts(a, alice, a_thread["id"]))[1]
        await _vote(a, alice, a_reply["id"], 1)
        await eventually(lambda: _has(_counts(c, carol, c_thread["id"], 1), (1, 0)))
        await eventually(lambda: _has(_counts(b, bob, b_thread["id"], 1), (1, 0)))


async def _accepted_followers(instance: Instance, token: str, count: int) -> bool:
    response = await instance.http.get("/c/general/followers", headers={"Accept": "application/activity+json"})
    return response.status_code == 200 and response.json().get("totalItems") == count
