"""Votes on posts: one per actor and post, up (+1) or down (-1), kept as counters on the post.

Members vote here; remote actors' `Like`/`Dislike` arrive through the same `apply_vote`, so the counters
and the `VoteChanged` event (page caches, federation) are the same whoever votes.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forum.errors import N_, InvalidInput, NotFound
from forum.events import EventBus, VoteChanged
from forum.models import Category, Post, Thread, Vote
from forum.permissions import Viewer, can_see_category, require_member

VALUES = (-1, 0, 1)


@dataclass(frozen=True)
class Tally:
    post_id: int
    upvotes: int
    downvotes: int
    # The viewer's own vote: 1, -1, or 0 for none.
    mine: int

    @property
    def score(self) -> int:
        return self.upvotes - self.downvotes


async def vote(session: AsyncSession, bus: EventBus, viewer: Viewer, post_id: int, value: int) -> Tally:
    """A member votes on a post they can see (0 withdraws their vote); not on their own, not on a gone post."""
    require_member(viewer)
    assert viewer.actor_id is not None
    if value not in VALUES:
        raise InvalidInput(N_("A vote is 1 (up), -1 (down) or 0 (none)."), field="value")
    post, category = await _visible_post(session, viewer, post_id)
    if post.author_id == viewer.actor_id:
        raise InvalidInput(N_("You cannot vote on your own post."), field="value")
    if post.deleted_at is not None or post.removed_at is not None:
        raise InvalidInput(N_("This post is gone; it takes no votes."), field="value")
    await apply_vote(session, bus, post, category.id, viewer.actor_id, value)
    await session.refresh(post, ["upvotes", "downvotes"])
    return Tally(post.id, post.upvotes, post.downvotes, value)


async def apply_vote(
    session: AsyncSession,
    bus: EventBus,
    post: Post,
    category_id: int,
    voter_id: int,
    value: int,
    activity_id: str | None = None,
) -> bool:
    """Record `voter_id`'s vote on `post`, keeping the counters right; False when nothing changed."""
    existing = await session.scalar(select(Vote).where(Vote.post_id == post.id, Vote.actor_id == voter_id))
    previous = existing.value if existing is not None else 0
    if previous == value:
        return False
    previous_activity = existing.activity_id if existing is not None else None
    if existing is not None and value == 0:
        await session.delete(existing)
    elif existing is not None:
        existing.value, existing.activity_id = value, activity_id
    else:
        session.add(Vote(post_id=post.id, actor_id=voter_id, value=value, activity_id=activity_id))
    up, down = int(value > 0) - int(previous > 0), int(value < 0) - int(previous < 0)
    await session.execute(
        update(Post).where(Post.id == post.id).values(upvotes=Post.upvotes + up, downvotes=Post.downvotes + down)
    )
    await session.flush()
    await bus.publish(
        session, VoteChanged(post.id, post.thread_id, category_id, voter_id, value, previous, previous_activity)
    )
    return True


@dataclass(frozen=True)
class NewVote:
    """A first vote of an actor on a post, to record with others (`add_votes`)."""

    post_id: int
    thread_id: int
    category_id: int
    voter_id: int
    value: int
    activity_id: str | None


# Built once: the inbox worker counts votes by the hundred.
_COUNT_VOTES = (
    update(Post)
    .where(Post.id == bindparam("the_post"))
    .values(upvotes=Post.upvotes + bindparam("ups"), downvotes=Post.downvotes + bindparam("downs"))
)


async def add_votes(session: AsyncSession, bus: EventBus, votes: list[NewVote]) -> None:
    """Record many first votes at once, as `apply_vote` would one by one: the caller has made sure no actor
    has voted on the post yet and no pair comes twice. One INSERT and one UPDATE per batch, not per vote."""
    if not votes:
        return
    connection = await session.connection()  # Core: the ORM reads a list with a WHERE as an update by key
    await connection.execute(
        insert(Vote),
        [{"post_id": v.post_id, "actor_id": v.voter_id, "value": v.value, "activity_id": v.activity_id} for v in votes],
    )
    counts: dict[int, tuple[int, int]] = {}
    for v in votes:
        ups, downs = counts.get(v.post_id, (0, 0))
        counts[v.post_id] = (ups + int(v.value > 0), downs + int(v.value < 0))
    await connection.execute(
        _COUNT_VOTES,
        [{"the_post": post, "ups": ups, "downs": downs} for post, (ups, downs) in sorted(counts.items())],
    )
    for v in votes:
        await bus.publish(session, VoteChanged(v.post_id, v.thread_id, v.category_id, v.voter_id, v.value, 0, None))


async def my_votes(session: AsyncSession, actor_id: int, post_ids: list[int]) -> dict[int, int]:
    """The actor's votes among these posts: post id -> 1 or -1."""
    if not post_ids:
        return {}
    rows = await session.execute(
        select(Vote.post_id, Vote.value).where(Vote.actor_id == actor_id, Vote.post_id.in_(post_ids))
    )
    return {post_id: value for post_id, value in rows}


async def _visible_post(session: AsyncSession, viewer: Viewer, post_id: int) -> tuple[Post, Category]:
    row = (
        await session.execute(
            select(Post, Category)
            .join(Thread, Thread.id == Post.thread_id)
            .join(Category, Category.id == Thread.category_id)
            .where(Post.id == post_id)
        )
    ).first()
    if row is None or not can_see_category(viewer, row[1].id, row[1].private):
        raise NotFound(N_("No such post."))
    return row[0], row[1]
