"""Domain events -> activities and their deliveries, written in the transaction that made the change.

The author's activity (`Create`, `Update`, `Delete`) goes to the people in the conversation and the
actors it mentions; a local category's Group then `Announce`s it to its followers (FEP-1b12). Followers
on software that reads Groups get every activity announced; the others (Mastodon and unknown software)
get each new thread once, as `Announce(Page)`, and no flood of replies. A thread in a remote category
is sent to that Group, which announces it to its own followers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

from activitypub import doorbell
from activitypub.audiences import (
    Target,
    actor_target,
    follower_targets,
    participant_targets,
    targets_by_inbox,
    thread_follower_targets,
)
from activitypub.objects import CONTEXT, PUBLIC, Document, PostSubject, post_document, post_id
from activitypub.subjects import load_post_subject, mentioned_actors, mentioning
from forum.events import (
    Event,
    EventBus,
    FollowerApproved,
    FollowerRejected,
    FollowRequested,
    FollowWithdrawn,
    PostCreated,
    PostDeleted,
    PostEdited,
    ThreadCreated,
    ThreadUnwatched,
    ThreadWatched,
    VoteChanged,
)
from forum.models import Actor, Category, Delivery, Follow, OutgoingActivity, Post, Thread, Vote
from forum.models.base import utcnow


def new_activity_id(base_url: str) -> str:
    return f"{base_url}/activities/{uuid.uuid4().hex}"


async def record_activity(
    session: AsyncSession, actor: Actor, document: Document, targets: Iterable[Target]
) -> OutgoingActivity:
    """Keep the activity (its id dereferences) and queue one delivery per distinct inbox."""
    return (await record_activities(session, [(actor, document, targets)]))[0]


async def record_activities(
    session: AsyncSession, batch: Sequence[tuple[Actor, Document, Iterable[Target]]]
) -> list[OutgoingActivity]:
    """`record_activity` for many at once: one INSERT for the activities and one for their deliveries."""
    if not batch:
        return []
    activities = [
        OutgoingActivity(ap_id=document["id"], actor_id=actor.id, type=document["type"], document=document)
        for actor, document, _ in batch
    ]
    session.add_all(activities)
    await session.flush()
    now = utcnow()
    rows = [
        {"activity_id": activity.id, "inbox_url": target.inbox, "domain": target.domain, "next_attempt_at": now}
        for activity, (_, _, targets) in zip(activities, batch, strict=True)
        for target in targets_by_inbox(targets)
    ]
    if rows:
        await session.execute(insert(Delivery), rows)
        doorbell.mark(session)
    return activities


async def answer_follow(
    session: AsyncSession,
    base_url: str,
    kind: str,
    followed: Actor,
    follower: Actor,
    follow_id: str | None,
    object_id: str | None = None,
) -> None:
    """`Accept` or `Reject` of a remote `Follow`, by the followed actor, to the follower's own inbox.

    The object repeats the Follow (its id, actor and object): Mastodon and Lemmy match the answer by its id,
    others by who follows what. `object_id` is what was followed when it is not the actor (a thread's context).
    """
    target = actor_target(follower)
    if target is None:
        return
    follow: Document = {"type": "Follow", "actor": follower.ap_id, "object": object_id or followed.ap_id}
    if follow_id:
        follow = {"id": follow_id, **follow}
    document: Document = {
        "@context": CONTEXT,
        "id": new_activity_id(base_url),
        "type": kind,
        "actor": followed.ap_id,
        "to": [follower.ap_id],
        "object": follow,
    }
    await record_activity(session, followed, document, [target])


class Outbox:
    """Subscribes to the forum's content events; `base_url` mints activity ids."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(ThreadCreated, self._on_content)
        bus.subscribe(PostCreated, self._on_content)
        bus.subscribe(PostEdited, self._on_content)
        bus.subscribe(PostDeleted, self._on_content)
        bus.subscribe(FollowRequested, self._on_follow)
        bus.subscribe(FollowWithdrawn, self._on_unfollow)
        bus.subscribe(FollowerApproved, self._on_follower_approved)
        bus.subscribe(FollowerRejected, self._on_follower_rejected)
        bus.subscribe(VoteChanged, self._on_vote)
        bus.subscribe(ThreadWatched, self._on_thread_watched)
        bus.subscribe(ThreadUnwatched, self._on_thread_unwatched)

    async def _on_follow(self, session: AsyncSession, event: Event) -> None:
        assert isinstance(event, FollowRequested)
        follow = await session.get(Follow, event.follow_id)
        assert follow is not None and follow.target_id is not None
        follower, target = await session.get(Actor, follow.follower_id), await session.get(Actor, follow.target_id)
        assert follower is not None and target is not None
        document = self._follow(follower, target, new_activity_id(self.base_url))
        follow.activity_id = document["id"]
        await record_activity(session, follower, document, [t for t in [actor_target(target)] if t])

    async def _on_unfollow(self, session: AsyncSession, event: Event) -> None:
        assert isinstance(event, FollowWithdrawn)
        follower, target = await session.get(Actor, event.follower_id), await session.get(Actor, event.target_id)
        assert follower is not None and target is not None
        inner = self._follow(follower, target, event.activity_id or new_activity_id(self.base_url))
        inner.pop("@context")
        document = {
            "@context": CONTEXT,
            "id": new_activity_id(self.base_url),
            "type": "Undo",
            "actor": follower.ap_id,
            "to": [target.ap_id],
            "object": inner,
        }
        await record_activity(session, follower, document, [t for t in [actor_target(target)] if t])

    async def _on_follower_approved(self, session: AsyncSession, event: Event) -> None:
        assert isinstance(event, FollowerApproved)
        follow = await session.get(Follow, event.follow_id)
        assert follow is not None and follow.target_id is not None
        group, follower = await session.get(Actor, follow.target_id), await session.get(Actor, follow.follower_id)
        assert group is not None and follower is not None
        await answer_follow(session, self.base_url, "Accept", group, follower, follow.activity_id)

    async def _on_follower_rejected(self, session: AsyncSession, event: Event) -> None:
        assert isinstance(event, FollowerRejected)
        group, follower = await session.get(Actor, event.group_id), await session.get(Actor, event.follower_id)
        assert group is not None and follower is not None
        await answer_follow(session, self.base_url, "Reject", group, follower, event.activity_id)

    async def _on_vote(self, session: AsyncSession, event: Event) -> None:
        """A member's vote: `Like`/`Dislike` (a changed vote is simply the new one, as Lemmy sends it), or the
        `Undo` of the earlier one; to the post's author and its Group, which announces it (FEP-1b12)."""
        assert isinstance(event, VoteChanged)
        voter = await session.get(Actor, event.voter_id)  # the inbox has it in the session already: no query
        if voter is None or not voter.local:
            return  # a remote actor's vote is announced by the inbox
        subject = await load_post_subject(session, event.post_id)
        if subject is None:
            return  # a private category's votes never federate
        voted: Document = {"type": "Like" if event.value > 0 else "Dislike", "object": post_id(subject)}
        if event.value == 0:
            if event.previous_activity_id is None:
                return
            before = {"type": "Like" if event.previous_value > 0 else "Dislike", "object": post_id(subject)}
            inner = {"id": event.previous_activity_id, "actor": voter.ap_id, **before}
            voted = {"type": "Undo", "object": inner}
        document: Document = {
            "@context": CONTEXT,
            "id": new_activity_id(self.base_url),
            "actor": voter.ap_id,
            **voted,
            "to": [subject.group.ap_id],
            "cc": [PUBLIC, subject.author.ap_id],
            "audience": subject.group.ap_id,
        }
        if event.value != 0:
            vote = await session.scalar(
                select(Vote).where(Vote.post_id == event.post_id, Vote.actor_id == event.voter_id)
            )
            assert vote is not None
            vote.activity_id = document["id"]
        author = [t for t in [actor_target(subject.author)] if t]
        if not subject.group.local:
            await record_activity(session, voter, document, [*author, *[t for t in [actor_target(subject.group)] if t]])
            return
        await record_activity(session, voter, document, author)
        followers = [t for t in await follower_targets(session, subject.group.id) if t.understands_groups]
        if followers:
            await record_activity(session, subject.group, self._announce(subject.group, document), followers)

    @staticmethod
    def _follow(follower: Actor, target: Actor, activity_id: str) -> Document:
        return {
            "@context": CONTEXT,
            "id": activity_id,
            "type": "Follow",
            "actor": follower.ap_id,
            "to": [target.ap_id],
            "object": target.ap_id,
        }

    async def _on_thread_watched(self, session: AsyncSession, event: Event) -> None:
        """A member watches a remote thread: a `Follow` of its context to the Group that owns it (FEP-7888).

        Peers that do not support it (Lemmy) ignore or refuse it; the member's watch stands either way."""
        assert isinstance(event, ThreadWatched)
        owner = await _context_owner(session, event.thread_id)
        follower, follow = await session.get(Actor, event.follower_id), await session.get(Follow, event.follow_id)
        if owner is None or follower is None or follow is None:
            return
        context_id, group = owner
        document = {**self._follow(follower, group, new_activity_id(self.base_url)), "object": context_id}
        follow.activity_id = document["id"]
        await record_activity(session, follower, document, [t for t in [actor_target(group)] if t])

    async def _on_thread_unwatched(self, session: AsyncSession, event: Event) -> None:
        assert isinstance(event, ThreadUnwatched)
        owner = await _context_owner(session, event.thread_id)
        follower = await session.get(Actor, event.follower_id)
        if owner is None or follower is None or event.activity_id is None:
            return  # no `Follow` was sent for it
        context_id, group = owner
        inner = {**self._follow(follower, group, event.activity_id), "object": context_id}
        inner.pop("@context")
        document: Document = {
            "@context": CONTEXT,
            "id": new_activity_id(self.base_url),
            "type": "Undo",
            "actor": follower.ap_id,
            "to": [group.ap_id],
            "object": inner,
        }
        await record_activity(session, follower, document, [t for t in [actor_target(group)] if t])

    async def _on_content(self, session: AsyncSession, event: Event) -> None:
        assert isinstance(event, ThreadCreated | PostCreated | PostEdited | PostDeleted)
        # A received post, still in this session's identity map: its origin has already sent it, and it costs
        # no query to know (the inbox worker stores thousands of them).
        known = session.sync_session.identity_map.get(identity_key(Post, event.post_id))
        if isinstance(known, Post) and not known.local:
            return
        # None as well for a post in a private category: those never federate.
        subject = await load_post_subject(session, event.post_id)
        if subject is None or not subject.author.local:
            return
        kind = {ThreadCreated: "Create", PostCreated: "Create", PostEdited: "Update", PostDeleted: "Delete"}[
            type(event)
        ]
        await self.publish_post(session, subject, kind)

    async def publish_post(self, session: AsyncSession, subject: PostSubject, kind: str) -> None:
        mentioned = await mentioned_actors(session, subject.post.source)
        subject = mentioning(subject, mentioned)
        obj = post_document(subject, with_context=False)
        if kind == "Delete":
            obj = {"id": post_id(subject), "type": "Tombstone"}
        activity = self._wrap(kind, subject.author.ap_id, obj, subject)
        first = subject.post.position == 1
        direct = [t for t in (actor_target(a) for a in mentioned) if t is not None]
        if not first:
            direct += await participant_targets(session, subject.thread.id)
            direct += await thread_follower_targets(session, subject.thread.id)
        if not subject.group.local:
            group_target = actor_target(subject.group)
            direct += [group_target] if group_target else []
            await record_activity(session, subject.author, activity, direct)
            return
        followers = await follower_targets(session, subject.group.id)
        group_aware = [t for t in followers if t.understands_groups]
        others = [t for t in followers if not t.understands_groups]
        await record_activity(session, subject.author, activity, direct)
        await record_activity(session, subject.group, self._announce(subject.group, activity), group_aware)
        if first and kind == "Create" and others:
            # Mastodon cannot read Announce(Create(Page)); it shows a boosted Page as one timeline item.
            await record_activity(session, subject.group, self._announce(subject.group, obj), others)

    def _wrap(self, kind: str, actor_id: str, obj: Document, subject: PostSubject) -> Document:
        to = obj.get("to") or [PUBLIC]
        cc = obj.get("cc") or []
        if kind == "Delete":
            to, cc = [PUBLIC], [subject.group.ap_id, *subject.also_to]
        return {
            "@context": CONTEXT,
            "id": new_activity_id(self.base_url),
            "type": kind,
            "actor": actor_id,
            "to": to,
            "cc": cc,
            "audience": subject.group.ap_id,
            "object": obj,
            "published": obj.get("updated") or obj.get("published") or utcnow().isoformat(),
        }

    def _announce(self, group: Actor, inner: Document) -> Document:
        body = {key: value for key, value in inner.items() if key != "@context"}
        return {
            "@context": CONTEXT,
            "id": new_activity_id(self.base_url),
            "type": "Announce",
            "actor": group.ap_id,
            "to": [PUBLIC],
            "cc": [group.followers_url] if group.followers_url else [],
            "audience": group.ap_id,
            "object": body,
        }


async def _context_owner(session: AsyncSession, thread_id: int) -> tuple[str, Actor] | None:
    """A remote thread's context id and the remote Group that owns it; None for a thread of ours."""
    row = (
        await session.execute(
            select(Thread.context_id, Actor)
            .join(Category, Category.id == Thread.category_id)
            .join(Actor, Actor.id == Category.actor_id)
            .where(Thread.id == thread_id)
        )
    ).first()
    if row is None or row[0] is None or row[1].local:
        return None
    return str(row[0]), row[1]
