"""What every handler gets: the activity, its session, and helpers to find what it names."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from activitypub.actors import as_strings
from activitypub.audiences import domain_of
from activitypub.protocol.client import FetchError
from activitypub.protocol.jsonld import DocumentError
from activitypub.resolver import ResolveError
from activitypub.runtime import Federation
from forum.models import Actor, Category, Post, Thread

ACTIVITY_TYPES = {
    "Create", "Update", "Delete", "Follow", "Accept", "Reject", "Undo", "Like", "Dislike",
    "Announce", "Flag", "Block", "Lock", "Add", "Remove",
}  # fmt: skip

# Built once (building a statement costs more than running it): a post by its id, or a thread by its own.
_POST_AND_THREAD = select(Post, Thread).join(Thread, Thread.id == Post.thread_id)
_BY_POST_ID = _POST_AND_THREAD.where(Post.ap_id == bindparam("ap_id")).limit(1)
_BY_THREAD_ID = _POST_AND_THREAD.where(Thread.ap_id == bindparam("ap_id"), Post.position == 1).limit(1)


async def posts_by_ids(session: AsyncSession, host: str, ap_ids: set[str]) -> dict[str, tuple[Post, Thread]]:
    """`Received.post_by_id` for many ids at once (two queries at most): the posts found, with their thread."""
    rows = await session.execute(_POST_AND_THREAD.where(Post.ap_id.in_(ap_ids)))
    found = {str(post.ap_id): (post, thread) for post, thread in rows}
    ours = {ap_id for ap_id in ap_ids if domain_of(ap_id) == host}
    if ours:
        # A thread of ours is named by its own id (`/t/N`), which its first post does not carry.
        threads = _POST_AND_THREAD.where(Thread.ap_id.in_(ours), Post.position == 1)
        found |= {str(thread.ap_id): (post, thread) for post, thread in await session.execute(threads)}
    return found


class HandlerRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HandlerFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Received:
    session: AsyncSession
    federation: Federation
    activity: dict[str, Any]
    # The remote Group that announced this activity, when it came wrapped in an `Announce`.
    via_group: Actor | None = None
    # The `Undo` itself, while its inner activity is handled as `activity`.
    undo: dict[str, Any] | None = None

    @property
    def type(self) -> str:
        return str(self.activity.get("type"))

    @property
    def id(self) -> str:
        return str(self.activity.get("id"))

    @property
    def actor_id(self) -> str:
        return self.single(self.activity.get("actor")) or ""

    @property
    def object_id(self) -> str | None:
        return self.single(self.activity.get("object"))

    @staticmethod
    def single(value: object) -> str | None:
        ids = as_strings(value)
        return ids[0] if ids else None

    def undoing(self, inner: dict[str, Any]) -> Received:
        return replace(self, activity=inner | {"actor": self.actor_id}, undo=self.activity)

    def wrapped(self, inner: dict[str, Any], group: Actor) -> Received:
        return replace(self, activity=inner, via_group=group)

    async def actor(self) -> Actor:
        return await self.remote_actor(self.actor_id)

    async def remote_actor(self, ap_id: str) -> Actor:
        try:
            return await self.federation.resolver.actor(self.session, ap_id)
        except (ResolveError, FetchError, DocumentError) as error:
            raise HandlerFailed(f"could not fetch {ap_id}: {error}") from None

    async def fetch(self, url: str) -> dict[str, Any]:
        if domain_of(url) == self.federation.settings.host.lower():
            # Never fetched (our database has it), and no retry would change that: refused, not failed.
            raise HandlerRefused(f"{url} is one of our own objects: its copy from elsewhere is not believed")
        try:
            return await self.federation.resolver.fetch(url)
        except (ResolveError, FetchError, DocumentError) as error:
            raise HandlerFailed(f"could not fetch {url}: {error}") from None

    async def inner_activity(self) -> dict[str, Any]:
        value = self.activity.get("object")
        if isinstance(value, dict):
            return value
        object_id = self.object_id
        if object_id is None:
            raise HandlerRefused("the activity has no object")
        # A bare id: an activity of ours (an Undo of a Follow we answered), a stored one, or fetched.
        return {"id": object_id}

    async def local_actor(self, ap_id: str | None) -> Actor | None:
        if ap_id is None:
            return None
        return await self.session.scalar(select(Actor).where(Actor.ap_id == ap_id, Actor.local.is_(True)))

    async def post_by_id(self, ap_id: str | None) -> tuple[Post, Thread] | None:
        """A post by its id; a thread's id names its first post."""
        if ap_id is None:
            return None
        # One lookup on a unique index (an OR across the two tables made both databases scan every post). A
        # received thread's first post carries the thread's id; only our own threads' ids (`/t/N`) differ from
        # their first post's (`/p/M`), so only ours are looked up among threads.
        params = {"ap_id": ap_id}
        if domain_of(ap_id) != self.federation.settings.host.lower():
            row = (await self.session.execute(_BY_POST_ID, params)).first()
        else:
            row = (await self.session.execute(_BY_THREAD_ID, params)).first() or (
                await self.session.execute(_BY_POST_ID, params)
            ).first()
        return (row[0], row[1]) if row else None

    async def post_by_local_id(self, post_id: int) -> tuple[Post, Thread] | None:
        row = (
            await self.session.execute(
                select(Post, Thread).join(Thread, Thread.id == Post.thread_id).where(Post.id == post_id)
            )
        ).first()
        return (row[0], row[1]) if row else None

    async def category_of(self, thread: Thread) -> Category:
        category = await self.session.get(Category, thread.category_id)
        assert category is not None
        return category

    def same_origin(self, object_id: str) -> bool:
        return domain_of(object_id) == domain_of(self.actor_id)
