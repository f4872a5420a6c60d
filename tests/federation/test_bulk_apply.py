"""Bursts from elsewhere applied together (`activitypub.bulk_replies`, `activitypub.bulk_votes`) end as if each
activity had been applied alone.

A burst of replies, applied together, ends as if each had been
applied alone: every reply in its thread, in order, answering the post it answers, counted, announced by our
Group to the servers that read Groups; and what the bulk path does not take (a reply to a reply of the same
burst, a locked thread, a post already known) is applied, refused or recognized one by one. Whoever follows
the thread's context hears of every reply too, whichever path applied it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import event, func, select, update

from activitypub import processing
from activitypub.processing import InboxWorker
from forum.app import federation_of
from forum.models import Category, Delivery, OutgoingActivity, Post, ReceivedActivity, ReceivedState, Thread, Vote
from tests.federation.instances import Instance, running
from tests.federation.remote import AS_CONTEXT, PUBLIC, Remote, RemoteActor


def _note(author: RemoteActor, in_reply_to: str, group: str, text: str) -> dict[str, Any]:
    return {
        "id": f"{author.base_url}/notes/{uuid.uuid4().hex}",
        "type": "Note",
        "attributedTo": author.ap_id,
        "inReplyTo": in_reply_to,
        "content": f"<p>{text}</p><script>alert(1)</script>",
        "to": [PUBLIC],
        "cc": [group],
        "audience": group,
    }


def _create(author: RemoteActor, note: dict[str, Any]) -> dict[str, Any]:
    return {"@context": AS_CONTEXT, "id": f"{author.base_url}/activities/{uuid.uuid4().hex}", "type": "Create",
            "actor": author.ap_id, "to": [PUBLIC], "cc": note["cc"], "object": note}  # fmt: skip


async def _thread_with_an_answer(jardin: Instance) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Alice's token, the thread she opens in General, and her answer in it."""
    await jardin.category("general", "General")
    alice = await jardin.member("alice")
    opened = await jardin.api(alice, "POST", "/threads", {"category": "general", "title": "Bees", "body": "Go"})
    assert opened.status_code == 201, opened.text
    answered = await jardin.api(alice, "POST", f"/threads/{opened.json()['id']}/posts", {"body": "First answer"})
    assert answered.status_code == 201, answered.text
    return alice, opened.json(), answered.json()


async def _lemmy_reader_follows(lemmy: Remote, inbox: str, group: str) -> dict[str, Any]:
    """A reader on a Lemmy (as its NodeInfo says) follows the category: what it receives is announced to it."""
    lemmy.serve("/.well-known/nodeinfo", {"links": [{"rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
                                                       "href": lemmy.url("/nodeinfo/2.1")}]},
                media_type="application/json")  # fmt: skip
    lemmy.serve("/nodeinfo/2.1", {"software": {"name": "lemmy", "version": "0.19.5"}}, media_type="application/json")
    reader = lemmy.actor("reader")
    follow = {"@context": AS_CONTEXT, "id": f"{reader.base_url}/follows/1", "type": "Follow",
              "actor": reader.ap_id, "object": group}  # fmt: skip
    assert (await lemmy.deliver(reader, inbox, follow)).status_code == 202
    return follow


@contextmanager
def _statements(jardin: Instance, prefix: str) -> Iterator[list[str]]:
    """The statements starting with `prefix` that the instance's database runs within the block."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(prefix.upper()):
            seen.append(statement)

    engine = jardin.forum.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def _outcomes(jardin: Instance) -> dict[str, tuple[ReceivedState, str | None]]:
    async with jardin.forum.read() as session:
        rows = await session.execute(select(ReceivedActivity.ap_id, ReceivedActivity.state, ReceivedActivity.outcome))
        return {ap_id: (state, outcome) for ap_id, state, outcome in rows}


async def test_a_burst_of_replies_lands_as_if_applied_one_by_one(database_url: str, tmp_path: Path) -> None:
    async with (
        Remote("127.0.0.2") as elsewhere,
        Remote("127.0.0.3") as lemmy,
        Remote("127.0.0.2") as nodebb,
        running("127.0.0.1", database_url, tmp_path / "jardin", run_worker=False) as jardin,
    ):
        worker = InboxWorker(federation_of(jardin.forum))
        alice, opened, answer = await _thread_with_an_answer(jardin)
        closed = (
            await jardin.api(alice, "POST", "/threads", {"category": "general", "title": "Shut", "body": "x"})
        ).json()
        async with jardin.forum.write() as session:
            await session.execute(update(Thread).where(Thread.id == closed["id"]).values(locked=True))
        group = f"{jardin.base_url}/c/general"
        inbox = f"{jardin.base_url}/inbox"

        follow = await _lemmy_reader_follows(lemmy, inbox, group)
        # Someone on a NodeBB follows the thread's context alone.
        watcher = nodebb.actor("watcher")
        context_follow: dict[str, Any] = {
            "@context": AS_CONTEXT, "id": f"{watcher.base_url}/follows/1", "type": "Follow",
            "actor": watcher.ap_id, "object": f"{opened['ap_id']}/context", "to": [group],
        }  # fmt: skip
        assert (await nodebb.deliver(watcher, inbox, context_follow)).status_code == 202
        await worker.run_once()
        followed = await _outcomes(jardin)
        assert followed[follow["id"]][0] == followed[context_follow["id"]][0] == ReceivedState.DONE, followed

        ann, bob, cem = elsewhere.actor("ann"), elsewhere.actor("bob"), elsewhere.actor("cem")
        to_thread = _note(ann, opened["ap_id"], group, "Ann answers the thread")
        to_answer = _note(bob, answer["ap_id"], group, "Bob answers the first answer")
        to_ann = _note(cem, to_thread["id"], group, "Cem answers Ann")  # its parent arrives in the same burst
        again = _note(ann, opened["ap_id"], group, "Ann again")
        to_closed = _note(bob, closed["ap_id"], group, "Too late")
        burst = [_create(ann, to_thread), _create(bob, to_answer), _create(cem, to_ann), _create(ann, again),
                 _create(bob, to_closed), _create(ann, to_thread)]  # fmt: skip
        senders = [ann, bob, cem, ann, bob, ann]
        for sender, activity in zip(senders, burst, strict=True):
            delivered = await elsewhere.deliver(sender, inbox, activity)
            assert delivered.status_code == 202, delivered.text

        with _statements(jardin, "INSERT INTO posts") as inserts:
            assert await worker.run_once() == len(burst)

        outcomes = await _outcomes(jardin)
        states = [outcomes[activity["id"]] for activity in burst]
        assert [state for state, _ in states] == [ReceivedState.DONE] * 4 + [ReceivedState.REFUSED, ReceivedState.DONE]
        assert all(str(text).startswith("reply ") for _, text in states[:4]), states
        assert states[4][1] == "the thread is locked"
        assert states[5][1] == "already known"
        # Three replies went in with one INSERT; the reply to Ann's, whose parent came with it, with its own.
        assert len(inserts) == 2, inserts

        async with jardin.forum.read() as session:
            thread = await session.get(Thread, opened["id"])
            assert thread is not None
            posts = list(await session.scalars(select(Post).where(Post.thread_id == thread.id).order_by(Post.position)))
            by_id = {post.ap_id: post for post in posts}
            category = await session.scalar(select(Category).where(Category.slug == "general"))
            assert category is not None
            in_category = await session.scalar(
                select(func.count(Post.id))
                .join(Thread, Thread.id == Post.thread_id)
                .where(Thread.category_id == category.id)
            )
            announced = list(
                await session.execute(
                    select(OutgoingActivity.document, Delivery.inbox_url)
                    .join(Delivery, Delivery.activity_id == OutgoingActivity.id)
                    .where(OutgoingActivity.type == "Announce")
                )
            )
        assert [post.position for post in posts] == [1, 2, 3, 4, 5, 6]
        assert {post.ap_id for post in posts[2:]} == {to_thread["id"], to_answer["id"], to_ann["id"], again["id"]}
        assert posts[-1].ap_id == to_ann["id"]  # applied after the burst's plain replies
        assert thread.post_count == 6 and thread.last_post_id == posts[-1].id
        assert category.post_count == in_category == 7  # six posts in the first thread, one in the locked one
        assert by_id[to_thread["id"]].in_reply_to_id is None  # an answer to the thread itself
        assert by_id[to_answer["id"]].in_reply_to_id == answer["id"]
        assert by_id[to_ann["id"]].in_reply_to_id == by_id[to_thread["id"]].id
        assert all("<script" not in post.html and not post.local for post in posts[2:])
        announced_to = {
            (cast(dict[str, Any], document["object"])["object"]["id"], inbox) for document, inbox in announced
        }
        replies = [to_thread["id"], to_answer["id"], to_ann["id"], again["id"]]
        # Each to the shared inboxes of the category's follower and of the context's, once.
        assert len(announced) == len(announced_to) == 8
        assert announced_to == {(reply, f"{remote.base_url}/inbox") for reply in replies for remote in (lemmy, nodebb)}

        page = await jardin.http.get(f"/t/{thread.id}")
        for text in ("Ann answers the thread", "Bob answers the first answer", "Cem answers Ann", "Ann again"):
            assert text in page.text


async def test_a_burst_of_votes_counts_as_if_applied_one_by_one(database_url: str, tmp_path: Path) -> None:
    """First votes are counted together; a changed vote, a vote on an unknown post and an `Undo` go one by one,
    after; the counters, the votes kept and the Group's announcements are what one-by-one would give."""
    async with (
        Remote("127.0.0.2") as elsewhere,
        Remote("127.0.0.3") as lemmy,
        running("127.0.0.1", database_url, tmp_path / "jardin", run_worker=False) as jardin,
    ):
        worker = InboxWorker(federation_of(jardin.forum))
        _alice, opened, answer = await _thread_with_an_answer(jardin)
        group, inbox = f"{jardin.base_url}/c/general", f"{jardin.base_url}/inbox"
        await _lemmy_reader_follows(lemmy, inbox, group)
        ann, bob, cem = elsewhere.actor("ann"), elsewhere.actor("bob"), elsewhere.actor("cem")

        def vote(actor: RemoteActor, kind: str, target: str) -> dict[str, Any]:
            return {"@context": AS_CONTEXT, "id": f"{actor.base_url}/votes/{uuid.uuid4().hex}", "type": kind,
                    "actor": actor.ap_id, "object": target, "audience": group}  # fmt: skip

        earlier = vote(bob, "Like", answer["ap_id"])  # Bob has voted already, before the burst
        assert (await elsewhere.deliver(bob, inbox, earlier)).status_code == 202
        await worker.run_once()

        ann_likes = vote(ann, "Like", opened["ap_id"])
        cem_dislikes = vote(cem, "Dislike", answer["ap_id"])
        burst = [
            (ann, ann_likes),
            (cem, cem_dislikes),
            (bob, vote(bob, "Dislike", answer["ap_id"])),  # a change of Bob's vote
            (ann, vote(ann, "Dislike", opened["ap_id"])),  # a change of the vote Ann makes in this burst
            (cem, vote(cem, "Like", f"{jardin.base_url}/p/999999")),
            (cem, {"@context": AS_CONTEXT, "id": f"{cem.base_url}/undo/1", "type": "Undo", "actor": cem.ap_id,
                   "object": {key: value for key, value in cem_dislikes.items() if key != "@context"}}),
        ]  # fmt: skip
        for sender, activity in burst:
            delivered = await elsewhere.deliver(sender, inbox, activity)
            assert delivered.status_code == 202, delivered.text

        with _statements(jardin, "INSERT INTO votes") as inserts:
            assert await worker.run_once() == len(burst)

        outcomes = await _outcomes(jardin)
        assert [outcomes[activity["id"]] for _, activity in burst] == [
            (ReceivedState.DONE, "vote counted"),
            (ReceivedState.DONE, "vote counted"),
            (ReceivedState.DONE, "vote counted"),
            (ReceivedState.DONE, "vote counted"),
            (ReceivedState.DONE, "vote on an unknown post ignored"),
            (ReceivedState.DONE, "vote withdrawn"),
        ]
        assert len(inserts) == 1, inserts  # the two first votes, together; the changes are updates

        async with jardin.forum.read() as session:
            first = await session.scalar(select(Post).where(Post.thread_id == opened["id"], Post.position == 1))
            second = await session.get(Post, answer["id"])
            assert first is not None and second is not None
            kept = set(await session.execute(select(Vote.post_id, Vote.value)))
            announced = list(
                await session.execute(
                    select(OutgoingActivity.document, Delivery.inbox_url)
                    .join(Delivery, Delivery.activity_id == OutgoingActivity.id)
                    .where(OutgoingActivity.type == "Announce")
                )
            )
        assert (first.upvotes, first.downvotes) == (0, 1)  # Ann's Like, then her Dislike
        assert (second.upvotes, second.downvotes) == (0, 1)  # Bob's Like changed; Cem's Dislike withdrawn
        assert kept == {(first.id, -1), (second.id, -1)}
        # Every vote counted, changed or withdrawn, announced to the Lemmy reader once; the ignored one not.
        announced_ids = sorted(cast(dict[str, Any], document["object"])["id"] for document, _ in announced)
        counted = [earlier, *[activity for _, activity in burst[:4]], burst[5][1]]
        assert announced_ids == sorted(activity["id"] for activity in counted)
        assert {inbox_url for _, inbox_url in announced} == {f"{lemmy.base_url}/inbox"}


async def test_under_a_stream_of_requests_the_worker_waits_once_per_slice_not_once_per_activity(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While peers are being answered, the in-process worker waits for a lull (at most `YIELD_AT_MOST`), then
    works for `WORK_SLICE` before it waits again: activities that go one by one (here, follows) do not each
    wait, or a stream that never pauses would let only a few through a second."""
    async with (
        Remote("127.0.0.3") as lemmy,
        running("127.0.0.1", database_url, tmp_path / "jardin", run_worker=False) as jardin,
    ):
        federation = federation_of(jardin.forum)
        await jardin.category("general", "General")
        group, inbox = f"{jardin.base_url}/c/general", f"{jardin.base_url}/inbox"
        follows = []
        for n in range(6):
            reader = lemmy.actor(f"reader{n}")
            follow = {"@context": AS_CONTEXT, "id": f"{reader.base_url}/follows/{n}", "type": "Follow",
                      "actor": reader.ap_id, "object": group}  # fmt: skip
            assert (await lemmy.deliver(reader, inbox, follow)).status_code == 202
            follows.append(follow)
        waits: list[float] = []
        real_lull = federation.pressure.lull

        async def counted_lull(at_most: float) -> None:
            waits.append(at_most)
            await real_lull(at_most)

        monkeypatch.setattr(federation.pressure, "lull", counted_lull)
        monkeypatch.setattr(processing, "YIELD_AT_MOST", 0.05)
        monkeypatch.setattr(processing, "WORK_SLICE", 3600.0)  # one slice holds the whole batch
        with federation.pressure.answering_one():  # a request is being answered all along
            assert await InboxWorker(federation).run_once() == len(follows)
        assert waits == [0.05]
        outcomes = await _outcomes(jardin)
        assert {outcomes[follow["id"]][0] for follow in follows} == {ReceivedState.DONE}
