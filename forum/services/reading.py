"""Reading: what the home, category, thread and profile pages show, in as few queries as possible.

Rows come back as small frozen dataclasses, not ORM objects: a thread page of 50 posts is two
queries and no lazy loading.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from forum.errors import N_, InvalidInput, NotFound
from forum.models import Actor, Category, Post, PostRevision, Thread
from forum.models.base import is_id
from forum.permissions import Viewer, can_see_category

POSTS_PER_PAGE = 50
THREADS_PER_PAGE = 30


@dataclass(frozen=True)
class AuthorView:
    id: int
    username: str
    domain: str
    display_name: str
    local: bool
    url: str | None

    @property
    def handle(self) -> str:
        return self.username if self.local else f"{self.username}@{self.domain}"

    @property
    def name(self) -> str:
        return self.display_name or self.username


@dataclass(frozen=True)
class PostView:
    id: int
    position: int
    author: AuthorView
    html: str
    source: str
    created_at: datetime
    edited_at: datetime | None
    deleted: bool
    removed: bool
    in_reply_to_id: int | None
    in_reply_to_author: str | None
    revision_count: int
    ap_id: str | None
    local: bool
    upvotes: int = 0
    downvotes: int = 0

    @property
    def score(self) -> int:
        return self.upvotes - self.downvotes


@dataclass(frozen=True)
class ThreadSummary:
    id: int
    title: str
    category_slug: str
    category_name: str
    author: str
    post_count: int
    created_at: datetime
    last_activity_at: datetime
    pinned: bool
    locked: bool
    archived: bool


@dataclass(frozen=True)
class ThreadPage:
    thread: Thread
    category: Category
    posts: list[PostView]
    page: int
    page_count: int


@dataclass(frozen=True)
class ThreadListing:
    pinned: list[ThreadSummary]
    threads: list[ThreadSummary]
    next_cursor: str | None


_ParentPost = aliased(Post)
_ParentAuthor = aliased(Actor)


def _author(actor: Actor) -> AuthorView:
    return AuthorView(actor.id, actor.username, actor.domain, actor.display_name, actor.local, actor.url)


async def thread_page(session: AsyncSession, viewer: Viewer, thread_id: int, page: int | None = 1) -> ThreadPage:
    """One page of a thread (the last one when `page` is None), with its posts and their authors."""
    row = (
        await session.execute(
            select(Thread, Category).join(Category, Category.id == Thread.category_id).where(Thread.id == thread_id)
        )
    ).first()
    if row is None or not can_see_category(viewer, row[1].id, row[1].private):
        raise NotFound(N_("No such thread."))
    thread, category = row[0], row[1]
    page_count = max(1, math.ceil(thread.post_count / POSTS_PER_PAGE))
    if page is None:
        page = page_count
    if page < 1 or page > page_count:
        raise NotFound(N_("This thread has no page %(page)d."), page=page)
    first = (page - 1) * POSTS_PER_PAGE + 1
    result = await session.execute(
        select(
            Post.id, Post.position, Post.html, Post.source, Post.created_at, Post.edited_at, Post.deleted_at,
            Post.removed_at, Post.in_reply_to_id, Post.revision_count, Post.ap_id, Post.local,
            Post.upvotes, Post.downvotes,
            Actor.id, Actor.username, Actor.domain, Actor.display_name, Actor.local, Actor.url,
            _ParentAuthor.username, _ParentAuthor.domain, _ParentAuthor.local,
        )
        .join(Actor, Actor.id == Post.author_id)
        .outerjoin(_ParentPost, _ParentPost.id == Post.in_reply_to_id)
        .outerjoin(_ParentAuthor, _ParentAuthor.id == _ParentPost.author_id)
        .where(Post.thread_id == thread.id, Post.position.between(first, first + POSTS_PER_PAGE - 1))
        .order_by(Post.position)
    )  # fmt: skip
    posts = [
        PostView(
            id=r[0], position=r[1], html=r[2], source=r[3], created_at=r[4], edited_at=r[5],
            deleted=r[6] is not None, removed=r[7] is not None, in_reply_to_id=r[8], revision_count=r[9],
            ap_id=r[10], local=r[11], upvotes=r[12], downvotes=r[13],
            author=AuthorView(r[14], r[15], r[16], r[17], r[18], r[19]),
            in_reply_to_author=None if r[20] is None else (r[20] if r[22] else f"{r[20]}@{r[21]}"),
        )
        for r in result
    ]  # fmt: skip
    return ThreadPage(thread, category, posts, page, page_count)


async def post_location(session: AsyncSession, viewer: Viewer, post_id: int) -> tuple[int, int]:
    """(thread id, page) where a post is shown, for `/p/{id}`."""
    row = (
        await session.execute(
            select(Post.thread_id, Post.position, Category.id, Category.private)
            .join(Thread, Thread.id == Post.thread_id)
            .join(Category, Category.id == Thread.category_id)
            .where(Post.id == post_id)
        )
    ).first()
    if row is None or not can_see_category(viewer, row[2], row[3]):
        raise NotFound(N_("No such post."))
    return row[0], (row[1] - 1) // POSTS_PER_PAGE + 1


def _summary_query() -> Select[*tuple[Any, ...]]:
    return (
        select(
            Thread.id, Thread.title, Category.slug, Category.name, Actor.username, Actor.domain, Actor.local,
            Thread.post_count, Thread.created_at, Thread.last_activity_at, Thread.pinned, Thread.locked,
            Thread.archived,
        )
        .join(Category, Category.id == Thread.category_id)
        .join(Actor, Actor.id == Thread.author_id)
    )  # fmt: skip


def _summaries(rows: object) -> list[ThreadSummary]:
    return [
        ThreadSummary(
            id=r[0], title=r[1], category_slug=r[2], category_name=r[3],
            author=r[4] if r[6] else f"{r[4]}@{r[5]}", post_count=r[7], created_at=r[8],
            last_activity_at=r[9], pinned=r[10], locked=r[11], archived=r[12],
        )
        for r in rows  # type: ignore[attr-defined]
    ]  # fmt: skip


def encode_cursor(last_activity_at: datetime, thread_id: int) -> str:
    raw = f"{last_activity_at.isoformat()}|{thread_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, thread_id = raw.split("|")
        when = datetime.fromisoformat(stamp)
        # A naive time or an id out of the column's range would fail in the database, not here.
        if when.tzinfo is None or not is_id(thread_id):
            raise ValueError(raw)
        return when, int(thread_id)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput(N_("That page link is damaged; go back to the first page.")) from error


async def category_threads(
    session: AsyncSession, category: Category, cursor: str | None = None, limit: int = THREADS_PER_PAGE
) -> ThreadListing:
    """Threads by last activity, pinned first (on the first page), paged by keyset, not offset."""
    base = _summary_query().where(Thread.category_id == category.id)
    pinned: list[ThreadSummary] = []
    query = base.where(Thread.pinned.is_(False))
    if cursor is None:
        pinned = _summaries(
            await session.execute(base.where(Thread.pinned.is_(True)).order_by(Thread.last_activity_at.desc()))
        )
    else:
        stamp, thread_id = decode_cursor(cursor)
        query = query.where(
            or_(
                Thread.last_activity_at < stamp,
                and_(Thread.last_activity_at == stamp, Thread.id < thread_id),
            )
        )
    rows = _summaries(
        await session.execute(query.order_by(Thread.last_activity_at.desc(), Thread.id.desc()).limit(limit + 1))
    )
    next_cursor = encode_cursor(rows[limit - 1].last_activity_at, rows[limit - 1].id) if len(rows) > limit else None
    return ThreadListing(pinned, rows[:limit], next_cursor)


async def recent_threads(session: AsyncSession, viewer: Viewer, limit: int = 20) -> list[ThreadSummary]:
    query = _summary_query().order_by(Thread.last_activity_at.desc(), Thread.id.desc()).limit(limit)
    if not viewer.is_admin:
        query = query.where(Category.private.is_(False))
    return _summaries(await session.execute(query))


async def member_posts(
    session: AsyncSession, viewer: Viewer, actor_id: int, limit: int = 20
) -> list[tuple[PostView, ThreadSummary]]:
    """A member's latest visible posts with their threads, for the profile page."""
    query = (
        _summary_query()
        .add_columns(Post.id, Post.html, Post.created_at, Post.position)
        .join(Post, Post.thread_id == Thread.id)
        .where(Post.author_id == actor_id, Post.deleted_at.is_(None), Post.removed_at.is_(None))
        .order_by(Post.id.desc())
        .limit(limit)
    )
    if not viewer.is_admin:
        query = query.where(Category.private.is_(False))
    rows = list(await session.execute(query))
    author = await session.get(Actor, actor_id)
    assert author is not None
    summaries = _summaries(rows)
    return [
        (
            PostView(
                id=r[13], position=r[16], author=_author(author), html=r[14], source="", created_at=r[15],
                edited_at=None, deleted=False, removed=False, in_reply_to_id=None, in_reply_to_author=None,
                revision_count=0, ap_id=None, local=True,
            ),
            summary,
        )
        for r, summary in zip(rows, summaries, strict=True)
    ]  # fmt: skip


async def revisions(session: AsyncSession, viewer: Viewer, post_id: int) -> tuple[Post, list[PostRevision]]:
    await post_location(session, viewer, post_id)  # the same visibility check as the post itself
    post = await session.get(Post, post_id)
    assert post is not None
    result = await session.scalars(
        select(PostRevision).where(PostRevision.post_id == post_id).order_by(PostRevision.number.desc())
    )
    return post, list(result)


async def find_actor(session: AsyncSession, handle: str) -> Actor:
    name, _, domain = handle.partition("@")
    actor = await session.scalar(select(Actor).where(Actor.username_key == name.lower(), Actor.domain == domain))
    if actor is None:
        raise NotFound(N_("No one is named “%(name)s” here."), name=handle)
    return actor
