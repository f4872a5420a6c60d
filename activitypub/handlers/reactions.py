"""`Like`, `Dislike` and their `Undo`: votes on posts, one per actor and post.

They go through the forum's own vote service, so counters, page caches and events are the same as for a
member's vote; a vote in one of our categories is then announced by its Group (FEP-1b12).
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from activitypub.handlers.base import HandlerRefused, Received
from activitypub.handlers.content import announce_if_ours
from forum.models import Vote
from forum.services.votes import apply_vote


async def on_vote(received: Received) -> str:
    found = await received.post_by_id(received.object_id)
    if found is None:
        return "vote on an unknown post ignored"
    post, thread = found
    category = await received.category_of(thread)
    if category.private:
        raise HandlerRefused("posts of a private category take no votes from elsewhere")
    voter = await received.actor()
    value = 1 if received.type == "Like" else -1
    changed = await apply_vote(
        received.session, received.federation.bus, post, category.id, voter.id, value, received.id
    )
    if not changed:
        return "vote already counted"
    await announce_if_ours(received, category)
    return "vote counted"


async def on_undo_vote(received: Received) -> str:
    voter = await received.actor()
    vote = await received.session.scalar(select(Vote).where(Vote.activity_id == received.id))
    found = await received.post_by_id(received.object_id) if vote is None else None
    if vote is None and found is not None:
        vote = await received.session.scalar(select(Vote).where(Vote.post_id == found[0].id, Vote.actor_id == voter.id))
    if vote is None:
        return "no such vote"
    if vote.actor_id != voter.id:
        raise HandlerRefused("an actor may only undo its own vote")
    found = found or await received.post_by_local_id(vote.post_id)
    assert found is not None
    category = await received.category_of(found[1])
    await apply_vote(received.session, received.federation.bus, found[0], category.id, voter.id, 0)
    if received.undo is not None:
        await announce_if_ours(replace(received, activity=received.undo, undo=None), category)
    return "vote withdrawn"
