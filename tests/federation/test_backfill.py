"""Backfill of remote threads from their `context` collection (FEP-7888 / FEP-f228), on SQLite and PostgreSQL:
from another Jardin over real HTTP, from a NodeBB-shaped peer, within bounds, and nothing where a thread has
no collection (Lemmy 0.19, Mastodon)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import PIPE
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from activitypub.backfill import Backfiller, Bounds, request_backfill
from activitypub.lookup import FederatedLookup
from forum.app import build_context, federation_of
from forum.config import Settings
from forum.models import Actor, Delivery, Follow, FollowState, OutgoingActivity, Post, Thread
from forum.web.context import ForumContext
from tests.factories import make_category, make_member
from tests.federation.context_peer import PUBLIC, NodeBBTopic, Peer, lemmy_thread
from tests.federation.instances import Instance, eventually, running

pytestmark = pytest.mark.slow


# -- between two Jardins --------------------------------------------------------------------------------


async def test_a_thread_met_by_its_address_arrives_whole_from_another_jardin(
    database_url: str, tmp_path: Path, sqlite_template: Path
) -> None:
    shutil.copy(sqlite_template, tmp_path / "b.db")
    async with (
        running("127.0.0.1", database_url, tmp_path / "a") as a,
        running("127.0.0.2", f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", tmp_path / "b") as b,
    ):
        await a.category("general", "General")
        alice, carol, bob = await a.member("alice"), await a.member("carol"), await b.member("bob")
        # Thirty replies on A, some answering others, before anyone on B follows anything.
        created = await a.api(alice, "POST", "/threads", {"category": "general", "title": "Bees", "body": "Why?"})
        assert created.status_code == 201, created.text
        a_thread = created.json()
        replies: list[dict[str, Any]] = []
        for n in range(30):
            body: dict[str, Any] = {"body": f"Reply number {n}"}
            if n % 3 == 2:
                body["in_reply_to"] = replies[-1]["id"]
            answered = await a.api(carol if n % 2 else alice, "POST", f"/threads/{a_thread['id']}/posts", body)
            assert answered.status_code == 201, answered.text
            replies.append(answered.json())
        a_posts = await _posts(a, alice, a_thread["id"])
        assert len(a_posts) == 31

        # B's member looks the thread up by its address: B answers with the thread, then reads the rest.
        found = await b.api(bob, "GET", f"/resolve?q={quote(a_thread['ap_id'], safe='')}")
        assert found.status_code == 200, found.text
        assert found.json()["type"] == "thread"
        b_thread_id = found.json()["id"]
        b_posts = await eventually(lambda: _at_least(_posts(b, bob, b_thread_id), 31), timeout=30)

        # The opening post is known by the thread's address (`/t/ID`, its Page), the replies by theirs.
        expected = [a_thread["ap_id"], *(p["ap_id"] for p in a_posts[1:])]
        assert [p["ap_id"] for p in b_posts] == expected
        assert [p["author"]["handle"] for p in b_posts] == [f"{p['author']['handle']}@{a.host}" for p in a_posts]
        assert [_parent(b_posts, p) for p in b_posts][1:] == [_parent(a_posts, p) for p in a_posts][1:]
        assert "Reply number 29" in b_posts[-1]["html"]

        # Walked again (by hand, as `forum federation backfill` does): nothing twice.
        again = await Backfiller(federation_of(b.forum)).backfill(b_thread_id)
        assert (again.added, again.known) == (0, 31)
        assert [p["ap_id"] for p in await _posts(b, bob, b_thread_id)] == expected
        # Looked up again within hours: not walked again.
        assert (await b.api(bob, "GET", f"/resolve?q={quote(a_thread['ap_id'], safe='')}")).status_code == 200
        async with b.forum.read() as session:
            thread = await session.get(Thread, b_thread_id)
            assert thread is not None and thread.backfilled_at is not None and thread.backfill_due_at is None
            # Silent: B announced and delivered nothing.
            assert await session.scalar(select(func.count(OutgoingActivity.id))) == 0
            assert await session.scalar(select(func.count(Delivery.id))) == 0


async def _posts(instance: Instance, token: str, thread_id: int) -> list[dict[str, Any]]:
    response = await instance.api(token, "GET", f"/threads/{thread_id}")
    assert response.status_code == 200, response.text
    posts: list[dict[str, Any]] = response.json()["posts"]
    return posts


async def _at_least(posts: Any, count: int) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = await posts
    return found if len(found) >= count else None


def _parent(posts: list[dict[str, Any]], post: dict[str, Any]) -> str | None:
    by_id = {p["id"]: p["ap_id"] for p in posts}
    return by_id.get(post["in_reply_to"]) if post["in_reply_to"] else None


# -- from a NodeBB-shaped peer ----------------------------------------------------------------------------


async def test_a_nodebb_topic_looked_up_is_read_across_its_pages(database_url: str, tmp_path: Path) -> None:
    async with running("127.0.0.1", database_url, tmp_path / "b") as b, Peer("127.0.0.2") as peer:
        bob = await b.member("bob")
        topic = NodeBBTopic(peer)
        topic.post(70)
        for pid in range(71, 95):
            topic.post(pid, reply_to=pid - 1 if pid % 4 == 0 else None, author=pid)
        listed: list[Any] = [post["id"] for post in topic.posts]
        # NodeBB may embed a post of its own: believed as embedded, never fetched.
        embedded = topic.post(95, author=1)
        peer.serve("/post/95", status=404)
        listed.append({k: v for k, v in embedded.items() if k != "@context"})
        topic.publish(listed)

        # The topic's address is its collection: looking it up finds its first post, then the rest.
        found = await b.api(bob, "GET", f"/resolve?q={quote(topic.context, safe='')}")
        assert found.status_code == 200, found.text
        assert found.json()["type"] == "thread"
        assert found.json()["title"] == "How do bees keep warm?"
        posts = await eventually(lambda: _at_least(_posts(b, bob, found.json()["id"]), 26), timeout=30)

        assert [p["ap_id"] for p in posts] == [post["id"] for post in topic.posts]
        assert {p["author"]["handle"] for p in posts} == {
            f"julian@{peer.host}:{peer.port}",
            f"baris@{peer.host}:{peer.port}",
        }
        assert peer.fetched("/topic/7?page=2") == 1
        assert peer.fetched("/post/95") == 0
        parents = {p["ap_id"]: _parent(posts, p) for p in posts}
        assert parents[peer.url("/post/76")] == peer.url("/post/75")


# -- within bounds ----------------------------------------------------------------------------------------


@asynccontextmanager
async def _forum(settings: Settings) -> AsyncIterator[ForumContext]:
    """The forum's collaborators without its server: lookups and backfills called directly."""
    forum = build_context(settings.with_changes(federation_allow_private=True))
    try:
        yield forum
    finally:
        await federation_of(forum).aclose()
        await forum.engine.dispose()


async def _look_up(forum: ForumContext, url: str) -> Post:
    async with forum.read() as session:
        post = await FederatedLookup(federation_of(forum)).resolve_post(session, url)
    assert post is not None, f"{url} could not be looked up"
    return post


async def _thread_posts(forum: ForumContext, thread_id: int) -> list[tuple[str, str, str | None]]:
    """(id, author, id of the post answered) of each post, in the thread's order."""
    parent = aliased(Post)
    async with forum.read() as session:
        rows = await session.execute(
            select(Post.ap_id, Actor.username, parent.ap_id)
            .join(Actor, Actor.id == Post.author_id)
            .outerjoin(parent, parent.id == Post.in_reply_to_id)
            .where(Post.thread_id == thread_id)
            .order_by(Post.position)
        )
        return [(str(r[0]), str(r[1]), r[2]) for r in rows]


def _topic(peer: Peer, replies: int, *, per_page: int = 5, tid: int = 7) -> NodeBBTopic:
    topic = NodeBBTopic(peer, tid=tid, per_page=per_page)
    topic.post(tid * 10)
    for n in range(1, replies + 1):
        topic.post(tid * 10 + n, author=n)
    return topic


async def test_the_walk_stops_at_its_page_and_item_bounds(settings: Settings) -> None:
    async with _forum(settings) as forum, Peer("127.0.0.2") as peer:
        topic = _topic(peer, 24)
        topic.publish()
        thread_id = (await _look_up(forum, topic.posts[0]["id"])).thread_id
        federation = federation_of(forum)

        first = await Backfiller(federation, bounds=Bounds(pages=2)).backfill(thread_id)
        assert (first.added, first.pages) == (9, 2)
        assert first.stopped is not None and "2 pages" in first.stopped
        assert [p[0] for p in await _thread_posts(forum, thread_id)] == [p["id"] for p in topic.posts[:10]]
        assert peer.fetched("/topic/7?page=3") == 0

        second = await Backfiller(federation, bounds=Bounds(items=12)).backfill(thread_id)
        assert (second.added, second.known) == (2, 10)
        assert second.stopped is not None and "12 items" in second.stopped
        assert [p[0] for p in await _thread_posts(forum, thread_id)] == [p["id"] for p in topic.posts[:12]]
        assert peer.fetched("/post/83") == 0


async def test_a_page_that_stalls_or_is_too_big_ends_the_walk_and_keeps_what_was_stored(settings: Settings) -> None:
    async with _forum(settings) as forum, Peer("127.0.0.2") as peer:
        topic = _topic(peer, 14)
        topic.publish()
        good_page = peer.served_answer("/topic/7?page=2")
        peer.serve("/topic/7?page=2", good_page.document, hold=30)
        thread_id = (await _look_up(forum, topic.posts[0]["id"])).thread_id
        federation = federation_of(forum)

        started = time.monotonic()
        stalled = await Backfiller(federation, bounds=Bounds(deadline=2)).backfill(thread_id)
        assert time.monotonic() - started < 8
        assert stalled.added == 4 and stalled.stopped is not None and "deadline" in stalled.stopped
        assert len(await _thread_posts(forum, thread_id)) == 5

        peer.serve("/topic/7?page=2", raw=b'{"type": "OrderedCollectionPage", "x": "' + b"x" * 1_200_000 + b'"}')
        too_big = await Backfiller(federation).backfill(thread_id)
        assert too_big.added == 0 and too_big.stopped is not None and "cap" in too_big.stopped
        assert len(await _thread_posts(forum, thread_id)) == 5

        peer.serve("/topic/7?page=2", good_page.document)
        whole = await Backfiller(federation).backfill(thread_id)
        assert (whole.added, whole.known, whole.stopped) == (10, 5, None)
        assert [p[0] for p in await _thread_posts(forum, thread_id)] == [p["id"] for p in topic.posts]


async def test_items_their_origin_does_not_vouch_for_or_of_another_context_are_skipped(settings: Settings) -> None:
    async with _forum(settings) as forum, Peer("127.0.0.2") as peer, Peer("127.0.0.3") as elsewhere:
        other = _topic(peer, 0, tid=9)
        other.publish()
        other_thread = (await _look_up(forum, other.posts[0]["id"])).thread_id

        topic = _topic(peer, 1)
        main = topic.posts[0]["id"]
        stranger = elsewhere.actor("/users/mallory", "mallory")
        # Embedded under peer's collection, but its id is elsewhere's: fetched from there, as it is there.
        forged = {"id": elsewhere.url("/post/666"), "type": "Note", "attributedTo": stranger, "inReplyTo": main,
                  "content": "<p>forged</p>", "to": [PUBLIC], "context": topic.context}  # fmt: skip
        elsewhere.serve("/post/666", {**forged, "@context": "https://www.w3.org/ns/activitystreams",
                                      "content": "<p>genuine</p>"})  # fmt: skip
        unserved = {**forged, "id": elsewhere.url("/post/667")}
        # Written by someone of another host than the post.
        topic.post(72, attributedTo=stranger)
        # Served by peer under an id of elsewhere, which does not confirm it.
        topic.post(73, id=elsewhere.url("/post/73"))
        # Claims the context of another thread.
        topic.post(74, context=other.context)
        topic.post(75, reply_to=74)
        topic.post(76, type="Tombstone")
        created = topic.post(77)
        listed = [
            main,
            topic.posts[1]["id"],
            forged,
            unserved,
            peer.url("/post/72"),
            peer.url("/post/73"),
            peer.url("/post/74"),
            peer.url("/post/75"),
            peer.url("/post/76"),
            {"id": f"{peer.url('/post/78')}#like", "type": "Like", "actor": topic.people[0], "object": main},
            {"id": f"{created['id']}#create", "type": "Create", "actor": created["attributedTo"],
             "object": created["id"]},
        ]  # fmt: skip
        topic.publish(listed)
        thread_id = (await _look_up(forum, main)).thread_id

        outcome = await Backfiller(federation_of(forum)).backfill(thread_id)
        posts = await _thread_posts(forum, thread_id)
        # The one post without a date comes last.
        assert [p[0] for p in posts] == [main, topic.posts[1]["id"], created["id"], elsewhere.url("/post/666")]
        assert outcome.added == 3
        async with forum.read() as session:
            html = await session.scalar(select(Post.html).where(Post.ap_id == elsewhere.url("/post/666")))
            assert html is not None and "genuine" in html
            assert await session.scalar(select(func.count(Post.id)).where(Post.thread_id == other_thread)) == 1
        assert peer.fetched("/post/78") == 0


async def test_a_reply_that_brought_its_thread_takes_its_place_after_the_backfill(settings: Settings) -> None:
    async with _forum(settings) as forum, Peer("127.0.0.2") as peer:
        topic = _topic(peer, 5)
        topic.publish()
        # The newest reply is met first (sent, or looked up): its thread is fetched, then backfilled.
        newest = await _look_up(forum, topic.posts[-1]["id"])
        assert [p[0] for p in await _thread_posts(forum, newest.thread_id)] == [
            topic.posts[0]["id"],
            topic.posts[-1]["id"],
        ]
        # Ana watches the thread and has read both posts; Ben has read only the opening post.
        ana, ben = await make_member(settings, "ana"), await make_member(settings, "ben")
        async with forum.write() as session:
            session.add_all([
                Follow(follower_id=ana.actor_id, thread_id=newest.thread_id, state=FollowState.ACCEPTED,
                       last_read_position=2),
                Follow(follower_id=ben.actor_id, thread_id=newest.thread_id, state=FollowState.ACCEPTED,
                       last_read_position=1),
            ])  # fmt: skip
        assert await Backfiller(federation_of(forum)).run_once() == 1
        posts = await _thread_posts(forum, newest.thread_id)
        assert [p[0] for p in posts] == [p["id"] for p in topic.posts]
        assert [p[1] for p in posts] == ["julian", "baris", "julian", "baris", "julian", "baris"]
        async with forum.read() as session:
            thread = await session.get(Thread, newest.thread_id)
            assert thread is not None and thread.post_count == 6 and thread.backfill_due_at is None
            last = await session.scalar(select(Post.ap_id).where(Post.id == thread.last_post_id))
            assert last == topic.posts[-1]["id"]
            read = dict(
                (await session.execute(select(Follow.follower_id, Follow.last_read_position)
                                       .where(Follow.thread_id == thread.id))).all()
            )  # fmt: skip
        # The older posts slotted in before what Ana had read are history to her, not news: nothing is new.
        # Ben had read only the opening post: the whole conversation is new to him.
        assert read == {ana.actor_id: 6, ben.actor_id: 1}
        # Met again within hours: not due again.
        async with forum.write() as session:
            assert await request_backfill(session, newest.thread_id) is False


async def test_posts_backfilled_into_a_thread_of_our_category_are_not_announced(settings: Settings) -> None:
    await make_category(settings, "general", "General")
    async with _forum(settings) as forum, Peer("127.0.0.2") as peer:
        federation = federation_of(forum)
        fan = peer.actor("/users/fan", "fan")
        async with forum.write() as session:
            follower = await federation.resolver.actor(session, fan)
            group = await session.scalar(select(Actor).where(Actor.username == "general", Actor.domain == ""))
            assert group is not None
            session.add(Follow(follower_id=follower.id, target_id=group.id, state=FollowState.ACCEPTED))
        topic = NodeBBTopic(peer)
        for pid in range(70, 74):
            topic.post(pid, audience=[group.ap_id], cc=[group.ap_id])
        topic.publish()
        thread_id = (await _look_up(forum, topic.posts[0]["id"])).thread_id

        async with forum.read() as session:
            before = await session.scalar(select(func.count(OutgoingActivity.id)))
        outcome = await Backfiller(federation).backfill(thread_id)
        assert outcome.added == 3
        async with forum.read() as session:
            assert await session.scalar(select(func.count(OutgoingActivity.id))) == before
            assert await session.scalar(select(func.count(Post.id)).where(Post.thread_id == thread_id)) == 4


# -- threads without a collection ---------------------------------------------------------------------------


async def test_threads_without_a_collection_are_recorded_with_nothing_fetched(settings: Settings) -> None:
    async with _forum(settings) as forum, Peer("127.0.0.2") as peer:
        # Lemmy 0.19: no `context`; a comment met first brings its post (the parent), and that is all.
        _, comment = lemmy_thread(peer, 1)
        lemmy = (await _look_up(forum, comment)).thread_id
        # Mastodon before 4.5: a conversation URI that is no address.
        _, toot = lemmy_thread(peer, 2, context="tag:mastodon.social,2025-03-01:objectId=1:objectType=Conversation")
        mastodon = (await _look_up(forum, toot)).thread_id
        # A context that does not dereference (Lemmy 1.0 serves one only for its own posts).
        _, gone = lemmy_thread(peer, 3, context=peer.url("/post/3/context"))
        missing = (await _look_up(forum, gone)).thread_id
        asked = len(peer.requests)

        backfiller = Backfiller(federation_of(forum), concurrency=3)
        assert await backfiller.run_once() == 3
        assert peer.requests[asked:] == ["/post/3/context"]
        async with forum.read() as session:
            for thread_id in (lemmy, mastodon, missing):
                thread = await session.get(Thread, thread_id)
                assert thread is not None and thread.backfilled_at is not None and thread.backfill_due_at is None
                assert await session.scalar(select(func.count(Post.id)).where(Post.thread_id == thread_id)) == 2
        assert await backfiller.run_once() == 0


# -- by hand --------------------------------------------------------------------------------------------------


async def test_the_backfill_command_looks_a_thread_up_and_walks_it(database_url: str, tmp_path: Path) -> None:
    async with Peer("127.0.0.2") as peer:
        topic = _topic(peer, 3)
        topic.publish()
        done = await _forum_command(tmp_path, database_url, "federation", "backfill", topic.context)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "thread 1: 3 added, 1 known, 0 skipped, 1 pages"
        again = await _forum_command(tmp_path, database_url, "federation", "backfill", "1")
        assert again.stdout.strip() == "thread 1: 0 added, 4 known, 0 skipped, 1 pages"
        unknown = await _forum_command(tmp_path, database_url, "federation", "backfill", peer.url("/topic/404"))
        assert unknown.returncode == 1 and unknown.stderr.startswith("forum: "), unknown.stderr
        assert len(unknown.stderr.splitlines()) == 1 and "could not be looked up" in unknown.stderr


async def _forum_command(data_dir: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command in a subprocess, awaited without blocking the peer it talks to."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FORUM_")}
    env |= {"FORUM_DATA_DIR": str(data_dir), "FORUM_DATABASE_URL": database_url, "FORUM_LOG_LEVEL": "WARNING"}
    env["FORUM_FEDERATION_ALLOW_PRIVATE"] = "1"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "forum.cli", *args, env=env, stdout=PIPE, stderr=PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, stdout.decode(), stderr.decode())
