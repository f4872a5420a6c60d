"""What the inbox keeps, and what the worker believes of it.

The inbox reads most activities' claims (id, type, actor, object) at a glance and keeps them as received;
the worker normalizes them and checks the claims again. An activity the glance cannot be sure of is
normalized before the answer, as before. A kept activity whose full reading claims otherwise than what the
inbox checked is refused by the worker, with nothing applied, whichever path (in bulk or one by one) takes it.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy import text as sql_text

from activitypub.processing import InboxWorker
from forum.app import federation_of
from forum.models import Follow, Post, ReceivedActivity, ReceivedState
from tests.federation.instances import Instance, running
from tests.federation.remote import AS_CONTEXT, PUBLIC, Remote, RemoteActor


async def _opened_thread(jardin: Instance) -> dict[str, Any]:
    await jardin.category("general", "General")
    alice = await jardin.member("alice")
    opened = await jardin.api(alice, "POST", "/threads", {"category": "general", "title": "Bees", "body": "Go"})
    assert opened.status_code == 201, opened.text
    thread: dict[str, Any] = opened.json()
    return thread


def _reply(author: RemoteActor, thread: dict[str, Any], group: str, **object_extra: Any) -> dict[str, Any]:
    note = {"id": f"{author.base_url}/notes/{uuid.uuid4().hex}", "type": "Note", "attributedTo": author.ap_id,
            "inReplyTo": thread["ap_id"], "content": "<p>From elsewhere</p>", "to": [PUBLIC], "cc": [group],
            "audience": group, **object_extra}  # fmt: skip
    return {"@context": AS_CONTEXT, "id": f"{author.base_url}/activities/{uuid.uuid4().hex}", "type": "Create",
            "actor": author.ap_id, "to": [PUBLIC], "cc": [group], "object": note}  # fmt: skip


async def _kept(jardin: Instance, ap_id: str) -> ReceivedActivity:
    async with jardin.forum.read() as session:
        row = await session.scalar(select(ReceivedActivity).where(ReceivedActivity.ap_id == ap_id))
    assert row is not None
    return row


async def _posts(jardin: Instance, thread: dict[str, Any]) -> list[str | None]:
    async with jardin.forum.read() as session:
        return list(await session.scalars(select(Post.ap_id).where(Post.thread_id == thread["id"])))


async def test_a_glanced_reply_is_kept_as_received_and_applied(database_url: str, tmp_path: Path) -> None:
    async with (
        Remote("127.0.0.2") as elsewhere,
        running("127.0.0.1", database_url, tmp_path / "jardin", run_worker=False) as jardin,
    ):
        thread = await _opened_thread(jardin)
        group, inbox = f"{jardin.base_url}/c/general", f"{jardin.base_url}/inbox"
        ann = elsewhere.actor("ann")
        glanced = _reply(ann, thread, group)
        # An embedded object with its own context is not glanced: the activity is normalized before the answer.
        normalized = _reply(ann, thread, group, **{"@context": AS_CONTEXT})
        for activity in (glanced, normalized):
            delivered = await elsewhere.deliver(ann, inbox, activity)
            assert delivered.status_code == 202, delivered.text

        kept_raw, kept_normalized = await _kept(jardin, glanced["id"]), await _kept(jardin, normalized["id"])
        assert kept_raw.document == glanced  # as received, context and all
        async with jardin.forum.read() as session:
            # In the very text received (what `deliver` sent): not encoded again.
            as_stored = sql_text("SELECT CAST(document AS TEXT) FROM received_activities WHERE ap_id = :id")
            text = await session.scalar(as_stored, {"id": glanced["id"]})
        assert text == json.dumps(glanced)
        assert "@context" not in kept_normalized.document
        embedded = kept_normalized.document["object"]
        assert isinstance(embedded, dict) and embedded["id"] == normalized["object"]["id"]
        for row in (kept_raw, kept_normalized):
            assert (row.type, row.actor_ap_id) == ("Create", ann.ap_id)

        assert await InboxWorker(federation_of(jardin.forum)).run_once() == 2
        assert (await _kept(jardin, glanced["id"])).state == ReceivedState.DONE
        assert (await _kept(jardin, normalized["id"])).state == ReceivedState.DONE
        posts = await _posts(jardin, thread)
        assert glanced["object"]["id"] in posts and normalized["object"]["id"] in posts


async def test_an_activity_whose_full_reading_claims_otherwise_is_refused_by_the_worker(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        Remote("127.0.0.2") as elsewhere,
        running("127.0.0.1", database_url, tmp_path / "jardin", run_worker=False) as jardin,
    ):
        thread = await _opened_thread(jardin)
        group = f"{jardin.base_url}/c/general"
        ann, bob = elsewhere.actor("ann"), elsewhere.actor("bob")
        federation = federation_of(jardin.forum)
        reply = _reply(bob, thread, group)  # a plain reply: the bulk path takes it
        follow = {"@context": AS_CONTEXT, "id": f"{bob.base_url}/follows/{uuid.uuid4().hex}", "type": "Follow",
                  "actor": bob.ap_id, "object": group}  # fmt: skip
        other_host = _reply(ann, thread, group)
        other_host["object"]["id"] = "https://elsewhere.example/notes/1"  # an own object on another host
        kept: list[tuple[dict[str, Any], dict[str, str]]] = [
            (reply, {"actor_ap_id": ann.ap_id}),  # the inbox checked Ann, the document says Bob
            (follow, {"actor_ap_id": ann.ap_id}),  # the same, on the one-by-one path
            (_reply(ann, thread, group), {"type": "Update"}),  # another type than the one checked
            (other_host, {}),
        ]
        for document, told in kept:
            row = {"ap_id": document["id"], "type": document["type"], "actor_ap_id": document["actor"],
                   "signer_key_id": f"{ann.ap_id}#main-key", "document": document, **told}  # fmt: skip
            await federation.received.store(federation.sessions, row)

        assert await InboxWorker(federation).run_once() == len(kept)
        for document, _told in kept:
            settled = await _kept(jardin, document["id"])
            assert settled.state == ReceivedState.REFUSED, (document["id"], settled.outcome)
        assert (await _kept(jardin, reply["id"])).outcome == (
            "the activity, read in full, claims another id, type or actor than its inbox checked"
        )
        assert (await _kept(jardin, other_host["id"])).outcome == "the object's id is on another host than its author"
        assert len(await _posts(jardin, thread)) == 1  # the opening post alone
        async with jardin.forum.read() as session:
            assert await session.scalar(select(func.count()).select_from(Follow)) == 0
