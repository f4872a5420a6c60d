"""Received replies applied together: the inbox worker's path for the activity it sees most.

What a busy forum receives is mostly one thing: a `Create` of a post answering a post already stored, by an
author already known, in a thread that takes replies. Applied one by one, each costs a dozen statements and
a commit. Here a batch of them costs one lookup per kind of thing named (posts, authors, parents,
categories), a few statements per thread and per category, one INSERT and one commit.

Only replies that need neither a fetch nor a refusal are taken: an unknown or stale author, an unknown
parent (a reply to a post in the same batch included), a locked thread or a private category are left to
the per-activity path (`activitypub.processing` → `activitypub.handlers`), which fetches, refuses and
explains. The checks made and the outcomes written are those of `handlers.content.store_post`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activitypub.actors import as_strings
from activitypub.audiences import domain_of
from activitypub.handlers.base import posts_by_ids
from activitypub.handlers.content import (
    POST_TYPES,
    announce_many_if_ours,
    markdown_source,
    received_time,
    received_url,
)
from activitypub.objects import Document
from activitypub.runtime import Federation
from forum.models import Actor, Category, Post, Thread
from forum.services.received import ReceivedReply, add_replies


@dataclass(frozen=True)
class PlainReply:
    """A received activity shaped like a plain reply; whether it can be applied here is decided later."""

    row_id: int
    activity: Document
    post: Document
    post_id: str
    author_id: str
    parent_id: str


def plain_reply(row_id: int, activity: Document, host: str) -> PlainReply | None:
    """The activity as a reply to store in bulk, or None when it is anything else (or anything odd)."""
    if activity.get("type") != "Create":
        return None
    post = activity.get("object")
    if not isinstance(post, dict) or post.get("type") not in POST_TYPES:
        return None
    post_id, authors, parents = post.get("id"), as_strings(post.get("attributedTo")), as_strings(post.get("inReplyTo"))
    if not isinstance(post_id, str) or not authors or not parents:
        return None
    origin = domain_of(post_id)
    if origin == host or domain_of(authors[0]) != origin:
        return None  # refused by the per-activity path, with its reason
    return PlainReply(row_id, activity, post, post_id, authors[0], parents[0])


async def store_plain_replies(
    session: AsyncSession, federation: Federation, replies: list[PlainReply]
) -> dict[int, str]:
    """Store what can be stored without a fetch or a refusal; the outcome of each, by row id.

    Rows missing from the answer were not touched: the caller applies them one by one.
    """
    host = federation.settings.host.lower()
    known = set(await session.scalars(select(Post.ap_id).where(Post.ap_id.in_({r.post_id for r in replies}))))
    authors = {
        actor.ap_id: actor
        for actor in await session.scalars(select(Actor).where(Actor.ap_id.in_({r.author_id for r in replies})))
    }
    parents = await posts_by_ids(session, host, {r.parent_id for r in replies})
    category_ids = {thread.category_id for _post, thread in parents.values()}
    categories = {c.id: c for c in await session.scalars(select(Category).where(Category.id.in_(category_ids)))}

    outcomes: dict[int, str] = {}
    taken: list[tuple[PlainReply, Thread, Category]] = []
    new_rows: list[ReceivedReply] = []
    for reply in replies:
        if reply.post_id in known:
            outcomes[reply.row_id] = "already known"
            continue
        author, parent = authors.get(reply.author_id), parents.get(reply.parent_id)
        if author is None or federation.resolver.needs_refresh(author) or parent is None:
            continue
        parent_post, thread = parent
        category = categories[thread.category_id]
        if thread.locked or thread.archived or category.private:
            continue
        known.add(reply.post_id)  # the same post twice in one batch: the second is "already known"
        taken.append((reply, thread, category))
        new_rows.append(
            ReceivedReply(
                thread_id=thread.id,
                category_id=category.id,
                author_id=author.id,
                ap_id=reply.post_id,
                html=str(reply.post.get("content") or ""),
                source=markdown_source(reply.post),
                in_reply_to=parent_post.id if parent_post.position > 1 else None,
                published=received_time(reply.post.get("published")),
                remote_url=received_url(reply.post),
            )
        )
    if not new_rows:
        return outcomes
    stored = await add_replies(session, federation.bus, new_rows)
    for (reply, thread, _category), post in zip(taken, stored, strict=True):
        outcomes[reply.row_id] = f"reply {post.id} in thread {thread.id}"
    await announce_many_if_ours(
        session,
        federation.settings.base_url,
        [(reply.activity, category, thread.id) for reply, thread, category in taken],
    )
    return outcomes
