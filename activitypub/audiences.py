"""Who should hear of an activity: the inboxes of a Group's followers, of a conversation, of mentioned actors.

Every function returns `Target`s, one per inbox, the shared inbox of an instance standing for all its
followers there; `targets_by_inbox` merges lists so an inbox gets one delivery.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from forum.models import Actor, Follow, FollowState, Instance, Post


@dataclass(frozen=True)
class Target:
    inbox: str
    domain: str
    # Whether the instance's software reads FEP-1b12 Groups (replies and edits reach it announced).
    understands_groups: bool = False


def domain_of(url: str) -> str:
    """The authority of a URL (host, and port if any), lower-cased: what origin checks compare.

    The common `scheme://authority/...` is read by a pattern, five times faster than `urlsplit`, which the
    inbox would call a dozen times per activity; anything else (whitespace or control characters, which
    `urlsplit` strips, no `//`) goes through `urlsplit`, so the answer is `urlsplit`'s netloc wherever
    `urlsplit` has one. Where it raises (a malformed IPv6 authority), the answer is the authority as written,
    or "" (no authority), as for any string that is not a URL: never an exception for a peer's input.
    """
    match = _AUTHORITY.match(url)
    if match is None or not url.isprintable() or " " in url:
        try:
            return urlsplit(url).netloc.lower()
        except ValueError:  # an unbalanced "[" in the authority: a peer's nonsense, not our error
            return ""
    return match[1].lower()


_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")


# Built once: the inbox worker asks for every activity it passes on, and building a statement costs more
# than running it (its compiled form is cached by SQLAlchemy either way).
_INBOX = func.coalesce(Actor.shared_inbox_url, Actor.inbox_url)
_FOLLOWER_INBOXES = (
    select(_INBOX, Actor.domain, func.coalesce(Instance.understands_groups, False))
    .join(Follow, Follow.follower_id == Actor.id)
    .outerjoin(Instance, Instance.domain == Actor.domain)
    .where(
        Follow.target_id == bindparam("actor_id"),
        Follow.state == FollowState.ACCEPTED,
        Actor.local.is_(False),
        Actor.gone_at.is_(None),
        _INBOX.is_not(None),
    )
    .distinct()
)


async def follower_targets(session: AsyncSession, actor_id: int) -> list[Target]:
    """The remote followers of a local actor, one target per shared inbox."""
    rows = await session.execute(_FOLLOWER_INBOXES, {"actor_id": actor_id})
    return targets_by_inbox(Target(str(row[0]), row[1] or domain_of(str(row[0])), bool(row[2])) for row in rows)


async def thread_follower_targets(session: AsyncSession, thread_id: int) -> list[Target]:
    """Remote actors who follow the thread's context collection."""
    inbox = func.coalesce(Actor.shared_inbox_url, Actor.inbox_url)
    rows = await session.execute(
        select(inbox, Actor.domain)
        .join(Follow, Follow.follower_id == Actor.id)
        .where(Follow.thread_id == thread_id, Actor.local.is_(False), Actor.gone_at.is_(None), inbox.is_not(None))
        .distinct()
    )
    return [Target(str(row[0]), row[1] or domain_of(str(row[0]))) for row in rows]


async def participant_targets(session: AsyncSession, thread_id: int) -> list[Target]:
    """Remote authors who wrote in the thread: they are in the conversation."""
    inbox = func.coalesce(Actor.shared_inbox_url, Actor.inbox_url)
    rows = await session.execute(
        select(inbox, Actor.domain)
        .join(Post, Post.author_id == Actor.id)
        .where(Post.thread_id == thread_id, Actor.local.is_(False), Actor.gone_at.is_(None), inbox.is_not(None))
        .distinct()
    )
    return [Target(str(row[0]), row[1] or domain_of(str(row[0]))) for row in rows]


def actor_target(actor: Actor) -> Target | None:
    """A remote actor's own inbox (a Group we post into, a mentioned person)."""
    if actor.local or actor.gone_at is not None or not actor.inbox_url:
        return None
    return Target(actor.inbox_url, actor.domain or domain_of(actor.inbox_url))


def targets_by_inbox(targets: Iterable[Target]) -> list[Target]:
    merged: dict[str, Target] = {}
    for target in targets:
        known = merged.get(target.inbox)
        if known is None or (target.understands_groups and not known.understands_groups):
            merged[target.inbox] = target
    return list(merged.values())
