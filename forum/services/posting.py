"""Writing: new threads, replies, edits (every revision kept) and deletions (a placeholder stays)."""

from __future__ import annotations

import unicodedata
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forum import markup
from forum.errors import N_, Forbidden, InvalidInput, NotFound
from forum.events import EventBus, PostCreated, PostDeleted, PostEdited, ThreadCreated
from forum.models import Category, Post, PostRevision, Thread
from forum.models.base import utcnow
from forum.permissions import Viewer, can_edit_post, can_see_category, require_member

MAX_TITLE = 200
MAX_BODY = 50_000


def clean_title(title: str) -> str:
    title = " ".join(title.split())
    if not title:
        raise InvalidInput(N_("Give the thread a title."), field="title")
    if len(title) > MAX_TITLE:
        raise InvalidInput(
            N_("A title has at most %(count)d characters (this one has %(length)d)."),
            field="title", count=MAX_TITLE, length=len(title),
        )  # fmt: skip
    _refuse_control_characters(title, "title")
    return title


def clean_body(body: str) -> str:
    body = body.replace("\r\n", "\n").strip()
    if not body:
        raise InvalidInput(N_("Write something first."), field="body")
    if len(body) > MAX_BODY:
        raise InvalidInput(
            N_("A post has at most %(count)d characters (this one has %(length)d)."),
            field="body", count=MAX_BODY, length=len(body),
        )  # fmt: skip
    _refuse_control_characters(body, "body")
    return body


def _refuse_control_characters(text: str, field: str) -> None:
    for char in text:
        if char not in "\n\t" and unicodedata.category(char) == "Cc":
            raise InvalidInput(N_("The text holds a control character; remove it and try again."), field=field)


async def create_thread(
    session: AsyncSession,
    bus: EventBus,
    base_url: str,
    viewer: Viewer,
    category: Category,
    *,
    title: str,
    body: str,
) -> tuple[Thread, Post]:
    require_member(viewer)
    assert viewer.actor_id is not None
    if not can_see_category(viewer, category.id, category.private):
        raise NotFound(N_("No such category."))
    title, body = clean_title(title), clean_body(body)
    rendered = markup.render(body)
    now = utcnow()
    thread = Thread(
        category_id=category.id,
        author_id=viewer.actor_id,
        title=title,
        post_count=1,
        created_at=now,
        last_activity_at=now,
        local=True,
    )
    session.add(thread)
    await session.flush()
    thread.ap_id = f"{base_url}/t/{thread.id}"
    thread.context_id = f"{base_url}/t/{thread.id}/context"
    post = Post(
        thread_id=thread.id,
        position=1,
        author_id=viewer.actor_id,
        source=body,
        html=rendered.html,
        created_at=now,
        local=True,
    )
    session.add(post)
    await session.flush()
    post.ap_id = f"{base_url}/p/{post.id}"
    thread.last_post_id = post.id
    await session.execute(
        update(Category)
        .where(Category.id == category.id)
        .values(thread_count=Category.thread_count + 1, post_count=Category.post_count + 1, last_activity_at=now)
    )
    await session.flush()
    await bus.publish(session, ThreadCreated(thread.id, category.id, post.id))
    return thread, post


async def reply(
    session: AsyncSession,
    bus: EventBus,
    base_url: str,
    viewer: Viewer,
    thread_id: int,
    *,
    body: str,
    in_reply_to: int | None = None,
) -> Post:
    require_member(viewer)
    assert viewer.actor_id is not None
    thread, category = await _visible_thread(session, viewer, thread_id)
    if thread.locked or thread.archived:
        raise Forbidden(N_("This thread is locked; it takes no new replies."))
    body = clean_body(body)
    if in_reply_to is not None:
        parent_thread = await session.scalar(select(Post.thread_id).where(Post.id == in_reply_to))
        if parent_thread != thread.id:
            raise InvalidInput(N_("The post you answer is not in this thread."), field="in_reply_to")
    rendered = markup.render(body)
    post = await append_post(
        session, thread.id, category.id, viewer.actor_id, source=body, html=rendered.html, in_reply_to=in_reply_to
    )
    post.ap_id = f"{base_url}/p/{post.id}"
    await session.flush()
    await bus.publish(session, PostCreated(post.id, thread.id, category.id))
    return post


# Built once: the inbox worker appends thousands of received replies, and building these statements cost
# more than running them. The bound names differ from the columns', which SQLAlchemy keeps for itself.
_NEXT_POSITION = (
    update(Thread)
    .where(Thread.id == bindparam("the_thread"))
    .values(post_count=Thread.post_count + 1, version=Thread.version + 1, last_activity_at=bindparam("now"))
    .returning(Thread.post_count)
)
_LAST_POST = update(Thread).where(Thread.id == bindparam("the_thread")).values(last_post_id=bindparam("the_post"))
_CATEGORY_COUNTS = (
    update(Category)
    .where(Category.id == bindparam("the_category"))
    .values(post_count=Category.post_count + 1, last_activity_at=bindparam("now"))
)


async def append_post(
    session: AsyncSession,
    thread_id: int,
    category_id: int,
    author_id: int,
    *,
    source: str,
    html: str,
    in_reply_to: int | None = None,
    ap_id: str | None = None,
    created_at: datetime | None = None,
    remote_url: str | None = None,
) -> Post:
    """A post at the end of a thread, local or received; the thread's and category's counters follow."""
    now = utcnow()
    # One statement takes the next position and bumps the thread: concurrent replies cannot collide.
    position = await session.scalar(_NEXT_POSITION, {"the_thread": thread_id, "now": now})
    assert position is not None
    post = Post(
        thread_id=thread_id,
        position=position,
        author_id=author_id,
        in_reply_to_id=in_reply_to,
        source=source,
        html=html,
        created_at=created_at or now,
        local=ap_id is None,
        ap_id=ap_id,
        remote_url=remote_url,
    )
    session.add(post)
    await session.flush()
    await session.execute(_LAST_POST, {"the_thread": thread_id, "the_post": post.id})
    await session.execute(_CATEGORY_COUNTS, {"the_category": category_id, "now": now})
    return post


async def edit_post(
    session: AsyncSession, bus: EventBus, viewer: Viewer, post_id: int, *, body: str, title: str | None = None
) -> Post:
    """The author edits; the text before the edit is kept as a revision."""
    require_member(viewer)
    post, thread, category = await _editable_post(session, viewer, post_id)
    body = clean_body(body)
    new_title = clean_title(title) if title is not None and post.position == 1 else None
    if body == post.source and (new_title is None or new_title == thread.title):
        return post
    session.add(
        PostRevision(
            post_id=post.id,
            number=post.revision_count + 1,
            title=thread.title if post.position == 1 else None,
            source=post.source,
            html=post.html,
            editor_id=viewer.actor_id,
        )
    )
    post.revision_count += 1
    post.source = body
    post.html = markup.render(body).html
    post.edited_at = utcnow()
    if new_title is not None:
        thread.title = new_title
    thread.version += 1
    await session.flush()
    await bus.publish(session, PostEdited(post.id, thread.id, category.id))
    return post


async def delete_post(session: AsyncSession, bus: EventBus, viewer: Viewer, post_id: int) -> Post:
    """The author deletes; the post stays in place as a 'deleted' placeholder."""
    require_member(viewer)
    post, thread, category = await _editable_post(session, viewer, post_id)
    if post.deleted_at is None:
        post.deleted_at = utcnow()
        thread.version += 1
        await session.flush()
        await bus.publish(session, PostDeleted(post.id, thread.id, category.id))
    return post


async def _visible_thread(session: AsyncSession, viewer: Viewer, thread_id: int) -> tuple[Thread, Category]:
    row = (
        await session.execute(
            select(Thread, Category).join(Category, Category.id == Thread.category_id).where(Thread.id == thread_id)
        )
    ).first()
    if row is None or not can_see_category(viewer, row[1].id, row[1].private):
        raise NotFound(N_("No such thread."))
    return row[0], row[1]


async def _editable_post(session: AsyncSession, viewer: Viewer, post_id: int) -> tuple[Post, Thread, Category]:
    post = await session.get(Post, post_id)
    if post is None:
        raise NotFound(N_("No such post."))
    thread, category = await _visible_thread(session, viewer, post.thread_id)
    if not can_edit_post(viewer, post.author_id):
        raise Forbidden(N_("Only its author may change this post."))
    if post.deleted_at is not None or post.removed_at is not None:
        raise Forbidden(N_("This post was deleted."))
    return post, thread, category
