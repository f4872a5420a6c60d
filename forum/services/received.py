"""Content that arrives from other servers: threads, replies, edits and deletions written by remote actors.

Stored like local content (`local = False`, with the origin's `ap_id`), so pages, counters, caches
and the API treat both alike. The HTML is sanitized here again, whatever the sender did; titles are
cut to the forum's limit instead of refused, since the text exists already elsewhere.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forum import markup
from forum.events import EventBus, PostCreated, PostDeleted, PostEdited, ThreadCreated
from forum.models import Category, Post, PostRevision, Thread
from forum.models.base import utcnow
from forum.services.posting import MAX_BODY, MAX_TITLE, append_post


def received_title(title: str) -> str:
    title = "".join(c for c in " ".join(title.split()) if unicodedata.category(c) != "Cc")
    return title[: MAX_TITLE - 1] + "…" if len(title) > MAX_TITLE else title


def received_text(html: str, source: str | None) -> tuple[str, str]:
    """(sanitized HTML, source): the Markdown source when the peer sent one, else the text of the HTML."""
    clean = markup.sanitize(html)[: MAX_BODY * 4]
    return clean, (source if source else markup.plain_text(clean))[:MAX_BODY]


def title_from_text(html: str) -> str:
    """A title for a post that has none (a Mastodon status sent to a Group): its first words."""
    text = markup.plain_text(html)
    return received_title(text[:80] + ("…" if len(text) > 80 else "")) or "…"


async def add_thread(
    session: AsyncSession,
    bus: EventBus,
    category: Category,
    author_id: int,
    *,
    ap_id: str,
    title: str,
    html: str,
    source: str | None,
    published: datetime | None,
    context_id: str | None,
    remote_url: str | None,
) -> tuple[Thread, Post]:
    html, text = received_text(html, source)
    now = utcnow()
    if context_id and await session.scalar(select(Thread.id).where(Thread.context_id == context_id)):
        context_id = None  # a peer reusing one context for several threads: keep the first
    thread = Thread(
        category_id=category.id,
        author_id=author_id,
        title=received_title(title) or title_from_text(html),
        post_count=1,
        created_at=published or now,
        last_activity_at=now,
        local=False,
        ap_id=ap_id,
        context_id=context_id,
    )
    session.add(thread)
    await session.flush()
    post = Post(
        thread_id=thread.id,
        position=1,
        author_id=author_id,
        source=text,
        html=html,
        created_at=published or now,
        local=False,
        ap_id=ap_id,
        remote_url=remote_url,
    )
    session.add(post)
    await session.flush()
    thread.last_post_id = post.id
    await session.execute(
        update(Category)
        .where(Category.id == category.id)
        .values(thread_count=Category.thread_count + 1, post_count=Category.post_count + 1, last_activity_at=now)
    )
    await session.flush()
    await bus.publish(session, ThreadCreated(thread.id, category.id, post.id))
    return thread, post


async def add_reply(
    session: AsyncSession,
    bus: EventBus,
    thread: Thread,
    author_id: int,
    *,
    ap_id: str,
    html: str,
    source: str | None,
    in_reply_to: int | None,
    published: datetime | None,
    remote_url: str | None,
) -> Post:
    html, text = received_text(html, source)
    post = await append_post(
        session,
        thread.id,
        thread.category_id,
        author_id,
        source=text,
        html=html,
        in_reply_to=in_reply_to,
        ap_id=ap_id,
        created_at=published,
        remote_url=remote_url,
    )
    await session.flush()
    await bus.publish(session, PostCreated(post.id, thread.id, thread.category_id))
    return post


@dataclass(frozen=True)
class ReceivedReply:
    """A reply to store with others (`add_replies`): where it goes and what it says."""

    thread_id: int
    category_id: int
    author_id: int
    ap_id: str
    html: str
    source: str | None
    in_reply_to: int | None
    published: datetime | None
    remote_url: str | None


# Built once, as `posting.append_post`'s are. One statement reserves a thread's next `count` positions: a
# member replying meanwhile gets a position after them, never one of them.
_RESERVE_POSITIONS = (
    update(Thread)
    .where(Thread.id == bindparam("the_thread"))
    .values(
        post_count=Thread.post_count + bindparam("count"), version=Thread.version + 1, last_activity_at=bindparam("now")
    )
    .returning(Thread.post_count)
)
_LAST_POST = update(Thread).where(Thread.id == bindparam("the_thread")).values(last_post_id=bindparam("the_post"))
_CATEGORY_COUNTS = (
    update(Category)
    .where(Category.id == bindparam("the_category"))
    .values(post_count=Category.post_count + bindparam("count"), last_activity_at=bindparam("now"))
)


async def add_replies(session: AsyncSession, bus: EventBus, replies: list[ReceivedReply]) -> list[Post]:
    """Many received replies at once, in order, as `add_reply` would store them one by one.

    The statements are per thread and per category, not per post, and the posts go in with one INSERT:
    a busy thread answered from many servers costs a few statements per batch instead of five per reply.
    """
    now = utcnow()
    by_thread: dict[int, list[ReceivedReply]] = defaultdict(list)
    for reply in replies:
        by_thread[reply.thread_id].append(reply)
    # The texts are cleaned before the first write: on SQLite, the write lock is held from there to the commit.
    texts = {reply.ap_id: received_text(reply.html, reply.source) for reply in replies}
    rows: list[dict[str, object]] = []
    # Threads, then categories, each in id order: two workers on PostgreSQL lock rows in the same order (a
    # member's reply locks its thread, then its category, too), so neither waits on the other in a cycle.
    for thread_id, answers in sorted(by_thread.items()):
        end = await session.scalar(_RESERVE_POSITIONS, {"the_thread": thread_id, "count": len(answers), "now": now})
        assert end is not None
        for position, reply in enumerate(answers, start=end - len(answers) + 1):
            html, text = texts[reply.ap_id]
            rows.append(
                {
                    "thread_id": thread_id,
                    "position": position,
                    "author_id": reply.author_id,
                    "in_reply_to_id": reply.in_reply_to,
                    "source": text,
                    "html": html,
                    "created_at": reply.published or now,
                    "local": False,
                    "ap_id": reply.ap_id,
                    "remote_url": reply.remote_url,
                }
            )
    # Through the connection, as one executemany: the ORM would insert them one by one on SQLite (it cannot
    # match RETURNING rows to objects there), and it reads a list of parameters with a WHERE as a bulk
    # update by primary key. The posts are then read back, one SELECT, into the session's identity map.
    connection = await session.connection()
    await connection.execute(insert(Post), rows)
    ap_ids = [reply.ap_id for reply in replies]
    posts = {str(post.ap_id): post for post in await session.scalars(select(Post).where(Post.ap_id.in_(ap_ids)))}
    await connection.execute(
        _LAST_POST,
        [
            {"the_thread": thread_id, "the_post": posts[answers[-1].ap_id].id}
            for thread_id, answers in sorted(by_thread.items())
        ],
    )
    per_category: dict[int, int] = defaultdict(int)
    for reply in replies:
        per_category[reply.category_id] += 1
    await connection.execute(
        _CATEGORY_COUNTS,
        [{"the_category": category, "count": count, "now": now} for category, count in sorted(per_category.items())],
    )
    stored = [posts[reply.ap_id] for reply in replies]
    for reply, post in zip(replies, stored, strict=True):
        await bus.publish(session, PostCreated(post.id, reply.thread_id, reply.category_id))
    return stored


async def edit(
    session: AsyncSession,
    bus: EventBus,
    post: Post,
    thread: Thread,
    *,
    html: str,
    source: str | None,
    title: str | None,
    editor_id: int,
) -> None:
    html, text = received_text(html, source)
    new_title = received_title(title) if title and post.position == 1 else None
    if html == post.html and (new_title is None or new_title == thread.title):
        return
    session.add(
        PostRevision(
            post_id=post.id,
            number=post.revision_count + 1,
            title=thread.title if post.position == 1 else None,
            source=post.source,
            html=post.html,
            editor_id=editor_id,
        )
    )
    post.revision_count += 1
    post.source, post.html, post.edited_at = text, html, utcnow()
    if new_title:
        thread.title = new_title
    thread.version += 1
    await session.flush()
    await bus.publish(session, PostEdited(post.id, thread.id, thread.category_id))


async def delete(session: AsyncSession, bus: EventBus, post: Post, thread: Thread, *, removed: bool) -> None:
    """The author deleted it (or a moderator of its Group removed it): a placeholder stays."""
    if post.is_gone:
        return
    if removed:
        post.removed_at = utcnow()
    else:
        post.deleted_at = utcnow()
    thread.version += 1
    await session.flush()
    await bus.publish(session, PostDeleted(post.id, thread.id, thread.category_id))
