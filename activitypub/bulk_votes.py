"""Received votes applied together: the inbox worker's path for what Lemmy, PieFed and Mbin send most.

A `Like` or `Dislike` of a stored post in a public category, by a known and fresh actor who has not voted
on that post yet, needs neither a fetch nor a refusal. A batch of them costs one lookup each for posts,
voters, categories and earlier votes, one INSERT for the votes, one UPDATE of the counters and the Group's
announcements at once, instead of a dozen statements and a commit per vote.

Everything else is left to the per-activity path (`handlers.reactions`), which runs after, in order: a
changed or repeated vote (the voter has one on that post already, or a second in the same batch), an
`Undo`, an unknown voter or post, a private category. The outcome written is the one `on_vote` writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from activitypub.actors import as_strings
from activitypub.handlers.base import posts_by_ids
from activitypub.handlers.content import announce_many_if_ours
from activitypub.objects import Document
from activitypub.runtime import Federation
from forum.models import Actor, Category, Vote
from forum.services.votes import NewVote, add_votes

VOTE_TYPES = {"Like": 1, "Dislike": -1}


@dataclass(frozen=True)
class PlainVote:
    """A received activity shaped like a vote; whether it can be applied here is decided later."""

    row_id: int
    activity: Document
    activity_id: str
    voter_id: str
    post_id: str
    value: int


def plain_vote(row_id: int, activity: Document) -> PlainVote | None:
    """The activity as a vote to count in bulk, or None when it is anything else (or anything odd)."""
    value = VOTE_TYPES.get(str(activity.get("type")))
    activity_id, voters, objects = (
        activity.get("id"),
        as_strings(activity.get("actor")),
        as_strings(activity.get("object")),
    )
    if value is None or not isinstance(activity_id, str) or not voters or not objects:
        return None
    return PlainVote(row_id, activity, activity_id, voters[0], objects[0], value)


async def count_plain_votes(session: AsyncSession, federation: Federation, votes: list[PlainVote]) -> dict[int, str]:
    """Count the votes that need neither a fetch nor a refusal; the outcome of each, by row id.

    Rows missing from the answer were not touched: the caller applies them one by one, after.
    """
    posts = await posts_by_ids(session, federation.settings.host.lower(), {v.post_id for v in votes})
    voters = {
        actor.ap_id: actor
        for actor in await session.scalars(select(Actor).where(Actor.ap_id.in_({v.voter_id for v in votes})))
    }
    category_ids = {thread.category_id for _post, thread in posts.values()}
    categories = {c.id: c for c in await session.scalars(select(Category).where(Category.id.in_(category_ids)))}
    pairs = {
        (posts[v.post_id][0].id, voters[v.voter_id].id) for v in votes if v.post_id in posts and v.voter_id in voters
    }
    voted = set()
    if pairs:
        earlier = await session.execute(
            select(Vote.post_id, Vote.actor_id).where(tuple_(Vote.post_id, Vote.actor_id).in_(list(pairs)))
        )
        voted = {(post_id, actor_id) for post_id, actor_id in earlier}

    outcomes: dict[int, str] = {}
    taken: list[tuple[PlainVote, Category, NewVote]] = []
    for vote in votes:
        found, voter = posts.get(vote.post_id), voters.get(vote.voter_id)
        if found is None or voter is None or voter.local or federation.resolver.needs_refresh(voter):
            continue
        post, thread = found
        category = categories[thread.category_id]
        if category.private or (post.id, voter.id) in voted:
            continue
        voted.add((post.id, voter.id))  # a second vote on it in this batch is a change: the one-by-one path's
        taken.append((vote, category, NewVote(post.id, thread.id, category.id, voter.id, vote.value, vote.activity_id)))
        outcomes[vote.row_id] = "vote counted"
    await add_votes(session, federation.bus, [new for _vote, _category, new in taken])
    announced = [(vote.activity, category, None) for vote, category, _new in taken]
    await announce_many_if_ours(session, federation.settings.base_url, announced)
    return outcomes
