"""A burst of replies from elsewhere, applied together (`activitypub.bulk_replies`), ends as if each had been
applied alone: every reply in its thread, in order, answering the post it answers, counted, announced by our
Group to the servers that read Groups; and what the bulk path does not take (a reply to a reply of the same
burst, a locked thread, a post already known) is applied, refused or recognized one by one. Whoever follows
the thread's context hears of every reply too, whichever path applied it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, cast

from sqlalchemy import event, func, select, update

from activitypub.processing import InboxWorker
from forum.app import federation_of
from forum.models import Category, Delivery, OutgoingActivity, Post, ReceivedActivity, ReceivedState, Thread
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
        await jardin.category("general", "General")
        alice = await jardin.member("alice")
        opened = (
            await jardin.api(alice, "POST", "/threads", {"category": "general", "title": "Bees", "body": "Go"})
        ).json()
        answered = await jardin.api(alice, "POST", f"/threads/{opened['id']}/posts", {"body": "First answer"})
        assert answered.status_code == 201, answered.text
        closed = (
            await jardin.api(alice, "POST", "/threads", {"category": "general", "title": "Shut", "body": "x"})
        ).json()
        async with jardin.forum.write() as session:
            await session.execute(update(Thread).where(Thread.id == closed["id"]).values(locked=True))
        group = f"{jardin.base_url}/c/general"
        inbox = f"{jardin.base_url}/inbox"

        # A reader on a Lemmy follows the category: replies are announced to it.
        lemmy.serve("/.well-known/nodeinfo", {"links": [{"rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
                                                           "href": lemmy.url("/nodeinfo/2.1")}]},
                    media_type="application/json")  # fmt: skip
        lemmy.serve(
            "/nodeinfo/2.1", {"software": {"name": "lemmy", "version": "0.19.5"}}, media_type="application/json"
        )
        reader = lemmy.actor("reader")
        follow = {"@context": AS_CONTEXT, "id": f"{reader.base_url}/follows/1", "type": "Follow",
                  "actor": reader.ap_id, "object": group}  # fmt: skip
        assert (await lemmy.deliver(reader, inbox, follow)).status_code == 202
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
        to_answer = _note(bob, answered.json()["ap_id"], group, "Bob answers the first answer")
        to_ann = _note(cem, to_thread["id"], group, "Cem answers Ann")  # its parent arrives in the same burst
        again = _note(ann, opened["ap_id"], group, "Ann again")
        to_closed = _note(bob, closed["ap_id"], group, "Too late")
        burst = [_create(ann, to_thread), _create(bob, to_answer), _create(cem, to_ann), _create(ann, again),
                 _create(bob, to_closed), _create(ann, to_thread)]  # fmt: skip
        senders = [ann, bob, cem, ann, bob, ann]
        for sender, activity in zip(senders, burst, strict=True):
            delivered = await elsewhere.deliver(sender, inbox, activity)
            assert delivered.status_code == 202, delivered.text

        inserts: list[str] = []

        def count_inserts(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO POSTS"):
                inserts.append(statement)

        engine = jardin.forum.engine.sync_engine
        event.listen(engine, "before_cursor_execute", count_inserts)
        try:
            assert await worker.run_once() == len(burst)
        finally:
            event.remove(engine, "before_cursor_execute", count_inserts)

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
        assert by_id[to_answer["id"]].in_reply_to_id == answered.json()["id"]
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
