"""`Like`, `Dislike` and their `Undo`: votes on posts, one per actor and post."""

from __future__ import annotations

from sqlalchemy import select, update

from activitypub.handlers.base import HandlerRefused, Received
from forum.models import Post, Vote


async def on_vote(received: Received) -> str:
    found = await received.post_by_id(received.object_id)
    if found is None:
        return "vote on an unknown post ignored"
    post = found[0]
    value = 1 if received.type == "Like" else -1
    voter = await received.actor()
    vote = await received.session.scalar(select(Vote).where(Vote.post_id == post.id, Vote.actor_id == voter.id))
    if vote is not None and vote.value == value:
        return "vote already counted"
    if vote is None:
        vote = Vote(post_id=post.id, actor_id=voter.id, value=value)
        received.session.add(vote)
    else:
        await _count(received, post.id, vote.value, -1)
        vote.value = value
    vote.activity_id = received.id
    await _count(received, post.id, value, +1)
    return "vote counted"


async def on_undo_vote(received: Received) -> str:
    voter = await received.actor()
    vote = await received.session.scalar(select(Vote).where(Vote.activity_id == received.id))
    if vote is None and received.object_id is not None:
        found = await received.post_by_id(received.object_id)
        if found is not None:
            vote = await received.session.scalar(
                select(Vote).where(Vote.post_id == found[0].id, Vote.actor_id == voter.id)
            )
    if vote is None:
        return "no such vote"
    if vote.actor_id != voter.id:
        raise HandlerRefused("an actor may only undo its own vote")
    await _count(received, vote.post_id, vote.value, -1)
    await received.session.delete(vote)
    return "vote withdrawn"


async def _count(received: Received, post_id: int, value: int, change: int) -> None:
    column = Post.upvotes if value > 0 else Post.downvotes
    await received.session.execute(update(Post).where(Post.id == post_id).values({column: column + change}))
