"""The inbox worker fetches what an activity needs with no transaction open: a slow peer delays only that
activity, never the forum's other writes (on SQLite, a transaction waiting on a peer held the one write lock,
and members' posts failed with "database is locked" after five seconds)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import select

from forum.models import Post, ReceivedActivity, ReceivedState, Thread
from tests.federation.instances import Instance, eventually, running
from tests.federation.remote import AS_CONTEXT, PUBLIC, Remote, RemoteActor

# Longer than SQLite's busy timeout (5 s): a write queued behind a transaction waiting this long fails.
SLOW_ANSWER = 8.0


def _note(author: RemoteActor, in_reply_to: str, group: str) -> dict[str, Any]:
    return {
        "id": f"{author.base_url}/notes/{uuid.uuid4().hex}",
        "type": "Note",
        "attributedTo": author.ap_id,
        "inReplyTo": in_reply_to,
        "content": f"<p>Said by {author.name}</p>",
        "to": [PUBLIC],
        "cc": [group],
        "audience": group,
    }


async def _stored(jardin: Instance, object_id: str) -> bool:
    async with jardin.forum.read() as session:
        return await session.scalar(select(Post.id).where(Post.ap_id == object_id)) is not None


async def _settled(jardin: Instance, activity_id: str) -> ReceivedActivity | None:
    async with jardin.forum.read() as session:
        row = await session.scalar(select(ReceivedActivity).where(ReceivedActivity.ap_id == activity_id))
    return row if row is not None and row.state != ReceivedState.PROCESSING else None


async def test_members_keep_writing_while_the_worker_waits_on_a_peer(database_url: str, tmp_path: Path) -> None:
    async with Remote("127.0.0.2") as remote, running("127.0.0.1", database_url, tmp_path / "jardin") as jardin:
        await jardin.category("general", "General")
        alice = await jardin.member("alice")
        opened = await jardin.api(alice, "POST", "/threads", {"category": "general", "title": "Ours", "body": "Go"})
        assert opened.status_code == 201, opened.text
        group = f"{jardin.settings.base_url}/c/general"
        bob, old, new = remote.actor("bob"), remote.actor("old"), remote.actor("new")
        # Bob answers New, who answered Old, who answered Alice's thread; neither post is known here, nor
        # their authors. New's post and author come at once (storing them takes the write lock on SQLite);
        # Old's post, needed after that, comes slowly.
        first = _note(old, opened.json()["ap_id"], group)
        second = _note(new, first["id"], group)
        third = _note(bob, second["id"], group)
        for note, how in ((first, {"hold": SLOW_ANSWER}), (second, {})):
            remote.serve(note["id"].removeprefix(remote.base_url), note, **how)
        activity_id = f"{bob.base_url}/activities/{uuid.uuid4().hex}"
        create = {"@context": AS_CONTEXT, "id": activity_id, "type": "Create",
                  "actor": bob.ap_id, "to": [PUBLIC], "cc": [group], "object": third}  # fmt: skip
        delivered = await remote.deliver(bob, f"{jardin.settings.base_url}/inbox", create)
        assert delivered.status_code == 202, delivered.text

        # The worker has stored what came at once and now waits for Old's post.
        slow_path = first["id"].removeprefix(remote.base_url)
        await eventually(lambda: _asked(remote, slow_path), timeout=30)
        meanwhile = await jardin.api(alice, "POST", "/threads", {"category": "general", "title": "Meanwhile",
                                                                "body": "Still writing"})  # fmt: skip
        assert meanwhile.status_code == 201, meanwhile.text
        assert not await _stored(jardin, third["id"])  # written while the reply still waited for Old's post

        row = await eventually(lambda: _settled(jardin, activity_id), timeout=SLOW_ANSWER + 30)
        assert row.state == ReceivedState.DONE, row.outcome
        async with jardin.forum.read() as session:
            thread_id = await session.scalar(select(Thread.id).where(Thread.ap_id == opened.json()["ap_id"]))
            chain = list(
                await session.scalars(select(Post.ap_id).where(Post.thread_id == thread_id).order_by(Post.position))
            )
        assert chain[1:] == [first["id"], second["id"], third["id"]]
        # Each document was fetched once, though the activity was applied again after each fetch.
        assert len(remote.requests_for(slow_path)) == 1
        assert len(remote.requests_for(second["id"].removeprefix(remote.base_url))) == 1


async def test_members_keep_writing_while_a_lookup_waits_on_a_peer(database_url: str, tmp_path: Path) -> None:
    """A member looking a remote post up stores it as the worker would: each document it needs (the posts it
    answers, their authors) fetched with no transaction open, so the forum's writes go on meanwhile."""
    async with Remote("127.0.0.2") as remote, running("127.0.0.1", database_url, tmp_path / "jardin") as jardin:
        await jardin.category("general", "General")
        alice, carol = await jardin.member("alice"), await jardin.member("carol")
        opened = await jardin.api(alice, "POST", "/threads", {"category": "general", "title": "Ours", "body": "Go"})
        assert opened.status_code == 201, opened.text
        group = f"{jardin.settings.base_url}/c/general"
        bob, old, new = remote.actor("bob"), remote.actor("old"), remote.actor("new")
        first = _note(old, opened.json()["ap_id"], group)
        second = _note(new, first["id"], group)
        third = _note(bob, second["id"], group)
        for note, how in ((first, {"hold": SLOW_ANSWER}), (second, {}), (third, {})):
            remote.serve(note["id"].removeprefix(remote.base_url), note, **how)

        lookup = asyncio.create_task(
            jardin.http.get(
                f"/api/v1/resolve?q={quote(third['id'], safe='')}",
                headers={"Authorization": f"Bearer {carol}"},
                timeout=SLOW_ANSWER + 30,
            )
        )
        # The lookup has stored Bob and New (on SQLite, a write lock if it were still in a transaction) and
        # now waits for Old's post.
        slow_path = first["id"].removeprefix(remote.base_url)
        await eventually(lambda: _asked(remote, slow_path), timeout=30)
        meanwhile = await jardin.api(alice, "POST", "/threads", {"category": "general", "title": "Meanwhile",
                                                                "body": "Still writing"})  # fmt: skip
        assert meanwhile.status_code == 201, meanwhile.text
        assert not lookup.done()

        found = await lookup
        assert found.status_code == 200, found.text
        for note in (first, second, third):
            assert await _stored(jardin, note["id"])
        assert len(remote.requests_for(slow_path)) == 1


async def _asked(remote: Remote, path: str) -> bool:
    return bool(remote.requests_for(path))
