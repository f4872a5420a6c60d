"""Jardin against Fedify 2.3.6, an ActivityPub implementation written independently (TypeScript, from npm).

Jardin runs on 127.0.0.1, the Fedify peer (`peers.FedifyPeer`, actor `alice`) on 127.0.0.3, over real HTTP.
Fedify verifies every signature it receives (an unverified activity is recorded with `verified: False`), so
each assertion on `verified` is Fedify's verdict on Jardin's signatures; what Jardin stores is what its own
inbox verified. Both directions: Fedify follows a category, gets its threads, answers them; Fedify starts a
thread in a category, a member answers it and Fedify gets the answer; a member follows alice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from forum.models import Follow, FollowState, ReceivedActivity, ReceivedState
from tests.federation.instances import Instance, eventually, running
from tests.federation.peers import FedifyPeer, Received, require_fedify

pytestmark = pytest.mark.slow

CAVAGE = "draft-cavage-http-signatures-12"


async def _threads(instance: Instance, token: str, category: str) -> list[dict[str, Any]]:
    response = await instance.api(token, "GET", f"/categories/{category}/threads")
    assert response.status_code == 200, response.text
    threads: list[dict[str, Any]] = response.json()["threads"]
    return threads


async def _posts(instance: Instance, token: str, thread_id: int) -> list[dict[str, Any]]:
    response = await instance.api(token, "GET", f"/threads/{thread_id}")
    assert response.status_code == 200, response.text
    posts: list[dict[str, Any]] = response.json()["posts"]
    return posts


def _about(object_id: str) -> Any:
    """Matches an activity whose object (or the object inside an announced activity) has this id."""

    def matches(received: Received) -> bool:
        inner = received.get("object") or {}
        nested = inner.get("object")
        nested_id = nested.get("id") if isinstance(nested, dict) else nested
        return object_id in (inner.get("id"), nested_id)

    return matches


async def _refusals(instance: Instance) -> list[tuple[str, str | None]]:
    async with instance.forum.read() as session:
        rows = await session.execute(
            select(ReceivedActivity.type, ReceivedActivity.outcome).where(ReceivedActivity.state != ReceivedState.DONE)
        )
        return [(kind, outcome) for kind, outcome in rows]


@pytest.mark.parametrize("first_knock", ["rfc9421", CAVAGE])
async def test_fedify_follows_a_category_gets_its_threads_and_its_replies_appear(
    first_knock: str, tmp_path: Path, sqlite_template: Path
) -> None:
    install = require_fedify()
    database = tmp_path / "jardin.db"
    database.write_bytes(sqlite_template.read_bytes())
    async with (
        running("127.0.0.1", f"sqlite+aiosqlite:///{database}", tmp_path / "data") as jardin,
        FedifyPeer("127.0.0.3", first_knock=first_knock, install=install) as fedify,
    ):
        await jardin.category("general", "General")
        maria = await jardin.member("maria")

        # Fedify finds the category by its handle (WebFinger, then the Group), follows it; the Group accepts.
        follow = await fedify.follow(f"general@{jardin.host}")
        assert follow["target"] == f"{jardin.base_url}/c/general"
        accept = await fedify.wait_for(lambda r: r["type"] == "Accept")
        assert accept["verified"] is True, accept
        assert accept["actor"] == follow["target"]
        assert (await fedify.following())[follow["target"]]["state"] == "accepted"
        async with jardin.forum.read() as session:
            follower = await session.scalar(select(Follow))
            assert follower is not None and follower.state == FollowState.ACCEPTED

        # A new thread reaches alice, signed in a form Fedify verifies, with its title and a link.
        created = await jardin.api(
            maria, "POST", "/threads", {"category": "general", "title": "Seed swap", "body": "Who has *tomatoes*?"}
        )
        assert created.status_code == 201, created.text
        thread = created.json()
        arrived = await fedify.wait_for(_about(thread["ap_id"]))
        assert arrived["verified"] is True, arrived
        assert arrived["type"] == "Announce" and arrived["actor"] == follow["target"]
        page = arrived["object"] if arrived["object"]["id"] == thread["ap_id"] else arrived["object"]["object"]
        assert page["type"] == "Page" and page["name"] == "Seed swap"
        assert "<em>tomatoes</em>" in page["content"]
        assert page["audience"] == follow["target"]
        # Fedify told Jardin which signature form it reads; the delivery used one it verified.
        assert arrived["signature"] in ("rfc9421", "draft-cavage")

        # Alice answers the thread from Fedify, Mastodon-style: a Note inReplyTo the Page.
        reply = await fedify.reply(thread["ap_id"], "<p>I have <strong>three</strong> kinds</p>")
        posts = await eventually(lambda: _more_than(_posts(jardin, maria, thread["id"]), 1))
        answer = posts[1]
        assert answer["ap_id"] == reply["object"]
        assert answer["author"]["handle"] == fedify.handle
        assert "<strong>three</strong>" in answer["html"]

        # Maria answers alice: Fedify, in the conversation, receives it verified.
        answered = await jardin.api(
            maria, "POST", f"/threads/{thread['id']}/posts", {"body": "Lovely, thanks!", "in_reply_to": answer["id"]}
        )
        assert answered.status_code == 201, answered.text
        back = await fedify.wait_for(_about(answered.json()["ap_id"]))
        assert back["verified"] is True, back
        note = back["object"] if back["object"]["id"] == answered.json()["ap_id"] else back["object"]["object"]
        assert note["inReplyTo"] == reply["object"]
        assert note["context"] == f"{thread['ap_id']}/context"

        # Alice unfollows: the Group no longer counts her among its followers.
        await fedify.unfollow(follow["target"])
        await eventually(lambda: _no_follows(jardin))

        assert [r for r in await fedify.received() if not r["verified"]] == []
        assert await _refusals(jardin) == []


async def test_fedify_starts_a_thread_a_member_answers_and_a_member_follows_alice(
    tmp_path: Path, sqlite_template: Path
) -> None:
    install = require_fedify()
    database = tmp_path / "jardin.db"
    database.write_bytes(sqlite_template.read_bytes())
    async with (
        running("127.0.0.1", f"sqlite+aiosqlite:///{database}", tmp_path / "data") as jardin,
        FedifyPeer("127.0.0.3", install=install) as fedify,
    ):
        await jardin.category("general", "General")
        maria = await jardin.member("maria")

        # Lemmy-style: alice sends Create(Page) to the Group; it becomes a thread in the category.
        started = await fedify.create(f"{jardin.base_url}/c/general", "From Fedify", "<p>Hello, <em>forum</em></p>")
        threads = await eventually(lambda: _threads(jardin, maria, "general"))
        assert [t["title"] for t in threads] == ["From Fedify"]
        posts = await _posts(jardin, maria, threads[0]["id"])
        assert posts[0]["ap_id"] == started["object"]
        assert posts[0]["author"]["handle"] == fedify.handle
        assert "<em>forum</em>" in posts[0]["html"]

        # Maria answers; alice, the thread's author, receives the answer, verified, in reply to her Page.
        answered = await jardin.api(maria, "POST", f"/threads/{threads[0]['id']}/posts", {"body": "Welcome!"})
        assert answered.status_code == 201, answered.text
        back = await fedify.wait_for(_about(answered.json()["ap_id"]))
        assert back["verified"] is True, back
        note = back["object"] if back["object"]["id"] == answered.json()["ap_id"] else back["object"]["object"]
        assert note["inReplyTo"] == started["object"]
        assert "Welcome!" in (note["content"] or "")

        # Alice likes maria's answer, then takes it back: the count follows both.
        liked = await fedify.like(answered.json()["ap_id"])
        await eventually(lambda: _has(_upvotes(jardin, maria, threads[0]["id"], 1), 1))
        await fedify.undo(liked["id"])
        await eventually(lambda: _has(_upvotes(jardin, maria, threads[0]["id"], 1), 0))

        # Maria upvotes alice's thread: Fedify receives the Like, verified, naming her Page.
        voted = await jardin.api(maria, "PUT", f"/posts/{posts[0]['id']}/vote", {"value": 1})
        assert voted.status_code == 200, voted.text
        like = await fedify.wait_for(lambda r: r["type"] == "Like")
        assert like["verified"] is True, like
        assert like["object"]["id"] == started["object"]

        # Maria follows alice by handle: Fedify verifies the Follow and accepts; Jardin records it accepted.
        followed = await jardin.api(maria, "POST", "/follows", {"target": fedify.handle})
        assert followed.status_code == 201, followed.text
        received_follow = await fedify.wait_for(lambda r: r["type"] == "Follow")
        assert received_follow["verified"] is True, received_follow
        assert await fedify.followers() == [f"{jardin.base_url}/u/maria"]
        await eventually(lambda: _follow_accepted(jardin))

        assert [r for r in await fedify.received() if not r["verified"]] == []
        assert await _refusals(jardin) == []


async def _more_than(posts: Any, count: int) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = await posts
    return found if len(found) > count else None


async def _upvotes(instance: Instance, token: str, thread_id: int, index: int) -> int:
    posts = await _posts(instance, token, thread_id)
    return int(posts[index]["upvotes"]) if len(posts) > index else -1


async def _has(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _no_follows(instance: Instance) -> bool:
    async with instance.forum.read() as session:
        return await session.scalar(select(Follow)) is None


async def _follow_accepted(instance: Instance) -> bool:
    async with instance.forum.read() as session:
        follow = await session.scalar(select(Follow))
        return follow is not None and follow.state == FollowState.ACCEPTED
