"""Watching: a member follows threads and categories, here or elsewhere, and sees what is new in them.

A watched thread is a `Follow` row with `thread_id`. It works here at once; for a thread of a remote
category, `ThreadWatched` lets federation send a `Follow` of the thread's context to its origin
(FEP-7888), which may accept, refuse or ignore it (Lemmy ignores it): the watch stands either way.
A watched category is a follow of its Group (`forum.services.follows`): pending until a remote
category's server accepts it.

What is new: posts are numbered 1, 2, 3… in their thread, and `last_read_position` is how far the
member has read, so a thread's unseen posts are `post_count - last_read_position`, with no count query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import SplitResult, urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forum.errors import N_, InvalidInput, NotFound
from forum.events import EventBus, ThreadUnwatched, ThreadWatched
from forum.models import Actor, ActorKind, Category, Follow, FollowState, Thread
from forum.models.base import is_id
from forum.permissions import Viewer, can_see_category, require_member
from forum.ports import RemoteResolver
from forum.services import follows
from forum.services.reading import POSTS_PER_PAGE, ThreadSummary

LATEST = 20
NEVER = datetime.min.replace(tzinfo=UTC)
MAX_TARGET = 2048
# `name@host`, as people write it: Lemmy writes communities `!name@host`, Mastodon people `@name@host`.
HANDLE = re.compile(r"^[!@]?(?P<name>[^@\s/!]+)(?:@(?P<host>[A-Za-z0-9.-]+(?::\d{1,5})?))?$")
LOCAL_PATH = re.compile(r"^/(?P<kind>[ct])/(?P<key>[^/]+)/?$")


@dataclass(frozen=True)
class WatchedThread:
    id: int
    title: str
    ap_id: str | None
    local: bool
    category_id: int
    category_slug: str
    category_name: str
    post_count: int
    last_activity_at: datetime
    last_read_position: int

    @property
    def unread(self) -> int:
        return max(0, self.post_count - self.last_read_position)

    @property
    def first_unread_page(self) -> int:
        """The page of the thread where the first unseen post is (or the last page when all are seen)."""
        position = min(self.last_read_position + 1, self.post_count)
        return max(1, (position - 1) // POSTS_PER_PAGE + 1)


@dataclass(frozen=True)
class WatchedCategory:
    category: Category
    state: FollowState


@dataclass(frozen=True)
class Watching:
    """What a member watches, newest activity first, and the latest threads of their categories."""

    categories: list[WatchedCategory]
    threads: list[WatchedThread]
    latest: list[ThreadSummary]

    @property
    def empty(self) -> bool:
        return not self.categories and not self.threads


@dataclass(frozen=True)
class Followed:
    """What `follow_elsewhere` found and followed: a category, or a thread (named by an address)."""

    state: FollowState
    category: Category | None = None
    thread_id: int | None = None


async def watch_thread(session: AsyncSession, bus: EventBus, viewer: Viewer, thread_id: int) -> Follow:
    """Watch a thread the member can see; what it holds now counts as read. Watching twice is one watch."""
    require_member(viewer)
    assert viewer.actor_id is not None
    thread = await _visible_thread(session, viewer, thread_id)
    existing = await _thread_follow(session, viewer.actor_id, thread.id)
    if existing is not None:
        return existing
    # Accepted whatever the origin answers: the member hears of the thread here, through its category or
    # the thread's own followers, and the page marks what is new in either case.
    created = Follow(
        follower_id=viewer.actor_id,
        thread_id=thread.id,
        state=FollowState.ACCEPTED,
        last_read_position=thread.post_count,
    )
    session.add(created)
    await session.flush()
    await bus.publish(session, ThreadWatched(created.id, viewer.actor_id, thread.id))
    return created


async def unwatch_thread(session: AsyncSession, bus: EventBus, viewer: Viewer, thread_id: int) -> bool:
    """Stop watching; False when the member was not watching it."""
    require_member(viewer)
    assert viewer.actor_id is not None
    existing = await _thread_follow(session, viewer.actor_id, thread_id)
    if existing is None:
        return False
    await bus.publish(session, ThreadUnwatched(viewer.actor_id, thread_id, existing.activity_id))
    # A statement, not `session.delete`: a second click deleting the same row deletes nothing, and is no error.
    await session.execute(delete(Follow).where(Follow.id == existing.id))
    return True


async def read_positions(session: AsyncSession, actor_id: int) -> dict[int, int]:
    """The threads a member watches, each with how far they have read it."""
    rows = await session.execute(
        select(Follow.thread_id, Follow.last_read_position).where(
            Follow.follower_id == actor_id, Follow.thread_id.is_not(None)
        )
    )
    return {thread_id: position for thread_id, position in rows if thread_id is not None}


async def mark_read(session: AsyncSession, actor_id: int, thread_id: int, position: int) -> None:
    """The member has seen the thread's posts up to `position`; reading an older page moves nothing back."""
    await session.execute(
        update(Follow)
        .where(
            Follow.follower_id == actor_id,
            Follow.thread_id == thread_id,
            Follow.last_read_position < position,
        )
        .values(last_read_position=position)
    )


async def category_state(session: AsyncSession, viewer: Viewer, category: Category) -> FollowState | None:
    """Whether the member watches a category (pending while a remote one has not answered); no query for guests."""
    if viewer.actor_id is None:
        return None
    state: FollowState | None = await session.scalar(
        select(Follow.state).where(Follow.follower_id == viewer.actor_id, Follow.target_id == category.actor_id)
    )
    return state


async def watch_category(session: AsyncSession, bus: EventBus, viewer: Viewer, category: Category) -> Follow:
    return await follows.follow(session, bus, viewer, category.actor)


async def unwatch_category(session: AsyncSession, bus: EventBus, viewer: Viewer, category: Category) -> bool:
    return await follows.unfollow(session, bus, viewer, category.actor)


async def watching(session: AsyncSession, viewer: Viewer, latest: int = LATEST) -> Watching:
    """Everything the member watches, newest activity first: three queries, whatever they watch."""
    require_member(viewer)
    categories = [
        WatchedCategory(category, state)
        for category, state in await session.execute(
            select(Category, Follow.state)
            .join(Follow, Follow.target_id == Category.actor_id)
            .where(Follow.follower_id == viewer.actor_id)
        )
        if can_see_category(viewer, category.id, category.private)
    ]
    categories.sort(key=lambda w: (w.category.last_activity_at or NEVER, w.category.id), reverse=True)
    rows = await session.execute(
        select(
            Thread.id, Thread.title, Thread.ap_id, Thread.local, Category.id, Category.slug, Category.name,
            Category.private, Thread.post_count, Thread.last_activity_at, Follow.last_read_position,
        )
        .join(Follow, Follow.thread_id == Thread.id)
        .join(Category, Category.id == Thread.category_id)
        .where(Follow.follower_id == viewer.actor_id)
        .order_by(Thread.last_activity_at.desc(), Thread.id.desc())
    )  # fmt: skip
    threads = [
        WatchedThread(
            id=r[0], title=r[1], ap_id=r[2], local=r[3], category_id=r[4], category_slug=r[5], category_name=r[6],
            post_count=r[8], last_activity_at=r[9], last_read_position=r[10],
        )
        for r in rows
        if can_see_category(viewer, r[4], r[7])
    ]  # fmt: skip
    return Watching(categories, threads, await _latest(session, viewer, categories, latest))


async def follow_elsewhere(
    session: AsyncSession,
    bus: EventBus,
    resolver: RemoteResolver,
    viewer: Viewer,
    target: str,
    *,
    origin: str,
) -> Followed:
    """Follow a community by its handle (`name@host`, `!name@host`) or address, here or on another server.

    A remote one is looked up through federation first; an address of a thread watches that thread.
    `origin` is this forum's `scheme://host`, so that its own names and addresses are read locally.
    """
    require_member(viewer)
    text = target.strip()
    if not text:
        raise InvalidInput(N_("Type a community's handle, such as name@host, or its address."), field="target")
    if len(text) > MAX_TARGET:
        raise InvalidInput(N_("An address has at most %(count)d characters."), field="target", count=MAX_TARGET)
    own_host = urlsplit(origin).netloc.lower()
    if text.lower().startswith(("https://", "http://")):
        parts = _address(text)
        if parts is None:
            raise InvalidInput(N_("“%(target)s” is not an address."), field="target", target=text)
        if parts.netloc.lower() == own_host:
            return await _follow_local_path(session, bus, viewer, parts.path, text)
        return await _follow_remote(session, bus, resolver, viewer, text, is_address=True)
    match = HANDLE.match(text.removeprefix("acct:"))
    if match is None:
        raise InvalidInput(
            N_("“%(target)s” is neither a handle (name@host) nor an address (https://…)."),
            field="target",
            target=text,
        )
    host = (match["host"] or "").lower()
    if not host or host == own_host:
        return await _follow_local_category(session, bus, viewer, match["name"], text)
    return await _follow_remote(session, bus, resolver, viewer, f"{match['name']}@{host}", is_address=False)


async def _follow_remote(
    session: AsyncSession, bus: EventBus, resolver: RemoteResolver, viewer: Viewer, target: str, *, is_address: bool
) -> Followed:
    actor = await resolver.resolve_actor(session, target)
    if actor is None and is_address:
        post = await resolver.resolve_post(session, target)
        if post is not None:
            await watch_thread(session, bus, viewer, post.thread_id)
            return Followed(FollowState.ACCEPTED, thread_id=post.thread_id)
    if actor is None:
        host = urlsplit(target).netloc if is_address else target.rpartition("@")[2]
        raise NotFound(
            N_("Nothing was found at “%(target)s”: %(host)s does not know it, or did not answer. Check the "
               "spelling, or try again later."),
            field="target", target=target, host=host,
        )  # fmt: skip
    return await _follow_actor(session, bus, viewer, actor, target)


async def _follow_actor(session: AsyncSession, bus: EventBus, viewer: Viewer, actor: Actor, target: str) -> Followed:
    category = None
    if actor.kind == ActorKind.GROUP:
        category = await session.scalar(select(Category).where(Category.actor_id == actor.id))
    if category is None and actor.kind == ActorKind.PERSON:
        raise InvalidInput(
            N_("“%(target)s” is a person, not a community: follow a group, such as a Lemmy community or a forum "
               "category."),
            field="target", target=target,
        )  # fmt: skip
    if category is None:
        raise InvalidInput(
            N_("“%(target)s” is not a community: follow a group, such as a Lemmy community or a forum category."),
            field="target", target=target,
        )  # fmt: skip
    follow = await follows.follow(session, bus, viewer, actor)
    return Followed(follow.state, category=category)


async def _follow_local_category(
    session: AsyncSession, bus: EventBus, viewer: Viewer, name: str, target: str
) -> Followed:
    actor = await session.scalar(select(Actor).where(Actor.username_key == name.lower(), Actor.domain == ""))
    if actor is None:
        raise NotFound(N_("No community is named “%(target)s” here."), field="target", target=target)
    return await _follow_actor(session, bus, viewer, actor, target)


async def _follow_local_path(session: AsyncSession, bus: EventBus, viewer: Viewer, path: str, target: str) -> Followed:
    match = LOCAL_PATH.match(path)
    if match is not None and match["kind"] == "c":
        return await _follow_local_category(session, bus, viewer, match["key"], target)
    if match is not None and is_id(match["key"]):
        thread = await _visible_thread(session, viewer, int(match["key"]), field="target")
        await watch_thread(session, bus, viewer, thread.id)
        return Followed(FollowState.ACCEPTED, thread_id=thread.id)
    raise NotFound(N_("This address names no category or thread here."), field="target")


def _address(text: str) -> SplitResult | None:
    try:
        parts = urlsplit(text)
        port = parts.port  # raises for a port out of range
    except ValueError:  # a bracketed host that is not an IPv6 address, a port that is not a number
        return None
    return parts if parts.hostname and (port is None or port > 0) else None


async def _visible_thread(session: AsyncSession, viewer: Viewer, thread_id: int, field: str | None = None) -> Thread:
    row = (
        await session.execute(
            select(Thread, Category.private)
            .join(Category, Category.id == Thread.category_id)
            .where(Thread.id == thread_id)
        )
    ).first()
    if row is None or not can_see_category(viewer, row[0].category_id, row[1]):
        raise NotFound(N_("No such thread."), field=field)
    thread: Thread = row[0]
    return thread


async def _thread_follow(session: AsyncSession, actor_id: int, thread_id: int) -> Follow | None:
    return await session.scalar(select(Follow).where(Follow.follower_id == actor_id, Follow.thread_id == thread_id))


async def _latest(
    session: AsyncSession, viewer: Viewer, categories: list[WatchedCategory], limit: int
) -> list[ThreadSummary]:
    """The newest threads of the watched categories, but those watched on their own (listed with them)."""
    ids = [w.category.id for w in categories]
    if not ids or limit <= 0:
        return []
    watched = select(Follow.thread_id).where(Follow.follower_id == viewer.actor_id, Follow.thread_id.is_not(None))
    rows = await session.execute(
        select(
            Thread.id, Thread.title, Category.slug, Category.name, Actor.username, Actor.domain, Actor.local,
            Thread.post_count, Thread.created_at, Thread.last_activity_at, Thread.pinned, Thread.locked,
            Thread.archived,
        )
        .join(Category, Category.id == Thread.category_id)
        .join(Actor, Actor.id == Thread.author_id)
        .where(Thread.category_id.in_(ids), Thread.id.not_in(watched))
        .order_by(Thread.last_activity_at.desc(), Thread.id.desc())
        .limit(limit)
    )  # fmt: skip
    return [
        ThreadSummary(
            id=r[0], title=r[1], category_slug=r[2], category_name=r[3],
            author=r[4] if r[6] else f"{r[4]}@{r[5]}", post_count=r[7], created_at=r[8],
            last_activity_at=r[9], pinned=r[10], locked=r[11], archived=r[12],
        )
        for r in rows
    ]  # fmt: skip
