"""Loading the records ActivityStreams documents are made of, one query each: a post's `PostSubject` (for one
post or a page of them) and an actor with its category.

The object documents peers fetch (`/t/ID`, `/p/ID`) read the same query's rows on a bare connection and make
transient records of them (`read_thread_subject`, `read_post_subject`): no session, no identity map. On
SQLite that took a cache-miss thread Page from about 2.6 to 1.4 ms of database work in process.

The GET endpoints, the collections and the outbox all build `Page`s and `Note`s from these, so a
document served on fetch is the document delivered. Posts in private categories are never loaded:
they never federate.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, Select, bindparam, func, inspect, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased, raiseload

from activitypub.actors import instance_actor
from activitypub.objects import PostSubject
from forum import markup
from forum.models import Actor, ActorKind, Category, Post, Thread
from forum.web.context import ForumContext

# What a mention of someone elsewhere looks like before Markdown has its say (forum.markup decides).
_MAYBE_REMOTE_MENTION = re.compile(r"@[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}@[A-Za-z0-9.-]")
_Author = aliased(Actor, name="author")
_Group = aliased(Actor, name="group_actor")
_Parent = aliased(Post, name="parent")
# Whose post a reply answers: its parent's author, or the thread's author for a reply to the thread.
_Answered = aliased(Actor, name="answered")


async def load_post_subject(session: AsyncSession, post_id: int) -> PostSubject | None:
    """The post with its thread, author, Group and answered post; None if unknown or in a private category."""
    rows = await session.execute(_POST_SUBJECT, {"post_id": post_id})
    subjects = [_subject(*row) for row in rows]
    return subjects[0] if subjects else None


async def read_post_subject(connection: AsyncConnection, post_id: int) -> PostSubject | None:
    """`load_post_subject` as rows on a connection, made into transient records (for documents only)."""
    row = (await connection.execute(_POST_ROWS, {"post_id": post_id})).mappings().first()
    return None if row is None else _subject_of_row(row)


async def read_thread_subject(connection: AsyncConnection, thread_id: int) -> PostSubject | None:
    """`load_thread_subject` as rows on a connection, made into transient records (for documents only)."""
    row = (await connection.execute(_THREAD_ROWS, {"thread_id": thread_id})).mappings().first()
    return None if row is None else _subject_of_row(row)


def may_mention_others(subject: PostSubject) -> bool:
    """Whether `with_mentions` could add anything: one of our posts whose text may name someone elsewhere."""
    return subject.post.local and bool(_remote_handles(subject.post.source))


def _remote_handles(source: str) -> list[tuple[str, str]]:
    """The `name@host` mentions of a Markdown text, lower-cased, in order; rendered only if it may hold one (a
    text that names only members here, `@name`, is not rendered again: that costs milliseconds)."""
    if "@" not in source or _MAYBE_REMOTE_MENTION.search(source) is None:
        return []
    return sorted({(m.username.lower(), m.host.lower()) for m in markup.render(source).mentions if m.host})


async def _known_remote(session: AsyncSession, handles: list[tuple[str, str]]) -> dict[tuple[str, str], Actor]:
    if not handles:
        return {}
    actors = await session.scalars(
        select(Actor).where(tuple_(Actor.username_key, Actor.domain).in_(handles), Actor.local.is_(False))
    )
    return {(actor.username_key, actor.domain.lower()): actor for actor in actors}


async def mentioned_actors(session: AsyncSession, source: str) -> list[Actor]:
    """Remote actors the text mentions and the forum already knows (unknown ones are not fetched mid-write)."""
    handles = _remote_handles(source)
    known = await _known_remote(session, handles)
    return [known[handle] for handle in handles if handle in known]


async def with_mentions(session: AsyncSession, subject: PostSubject) -> PostSubject:
    """The subject with the remote actors its text mentions: as `Mention` tags, and addressed."""
    return (await with_mentions_of(session, [subject]))[0]


async def with_mentions_of(session: AsyncSession, subjects: list[PostSubject]) -> list[PostSubject]:
    """`with_mentions` for a page of our posts (a collection embeds them): one query for all their mentions.
    Received posts are left as they are: their tags are their origin's to give."""
    handles = [_remote_handles(subject.post.source) if subject.post.local else [] for subject in subjects]
    known = await _known_remote(session, sorted({handle for found in handles for handle in found}))
    if not known:
        return subjects
    return [
        mentioning(subject, [known[handle] for handle in found if handle in known])
        for subject, found in zip(subjects, handles, strict=True)
    ]


def mentioning(subject: PostSubject, mentioned: list[Actor]) -> PostSubject:
    if not mentioned:
        return subject
    return dataclasses.replace(
        subject,
        also_to=tuple(dict.fromkeys([*subject.also_to, *(actor.ap_id for actor in mentioned)])),
        mentions=tuple((actor.ap_id, f"@{actor.username}@{actor.domain}") for actor in mentioned),
    )


async def load_thread_subject(session: AsyncSession, thread_id: int) -> PostSubject | None:
    """The thread's first post (its `Page`), as `load_post_subject` loads a post."""
    rows = await session.execute(_THREAD_SUBJECT, {"thread_id": thread_id})
    subjects = [_subject(*row) for row in rows]
    return subjects[0] if subjects else None


async def load_post_subjects(
    session: AsyncSession,
    *where: ColumnElement[bool],
    order_by: Any = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[PostSubject]:
    """Posts matching `where` (in public categories), in `order_by` order, one query whatever their number."""
    query = _SUBJECTS.where(*where)
    if order_by is not None:
        query = query.order_by(*(order_by if isinstance(order_by, tuple | list) else (order_by,)))
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return [_subject(*row) for row in await session.execute(query)]


async def load_actor(session: AsyncSession, handle: str, kind: ActorKind) -> tuple[Actor, Category | None] | None:
    """The actor named `name` (local) or `name@domain` (remote) of this kind, with its category if it has one."""
    name, _, domain = handle.partition("@")
    row = (
        await session.execute(_ACTOR_BY_HANDLE, {"name": name.lower(), "domain": domain.lower(), "kind": kind})
    ).first()
    return None if row is None else (row[0], row[1])


async def get_instance_actor(forum: ForumContext) -> Actor:
    """The instance's `Application` actor, made in a write transaction the first time it is needed."""
    ap_id = f"{forum.settings.base_url}/actor"
    async with forum.read() as session:
        actor = await session.scalar(select(Actor).where(Actor.ap_id == ap_id))
    if actor is not None:
        return actor
    try:
        async with forum.write() as session:
            return await instance_actor(session, forum.settings.base_url, forum.settings.host)
    except IntegrityError:  # another request made it first
        async with forum.read() as session:
            made = await session.scalar(select(Actor).where(Actor.ap_id == ap_id))
        assert made is not None
        return made


def _subject_query(*columns: Any) -> Select[*tuple[Any, ...]]:
    return (
        select(*columns)
        .select_from(Post)
        .join(Thread, Thread.id == Post.thread_id)
        .join(Category, Category.id == Thread.category_id)
        .join(_Group, _Group.id == Category.actor_id)
        .join(_Author, _Author.id == Post.author_id)
        .outerjoin(_Parent, _Parent.id == Post.in_reply_to_id)
        .outerjoin(_Answered, _Answered.id == func.coalesce(_Parent.author_id, Thread.author_id))
        .where(Category.private.is_(False))
    )


def _subject(
    post: Post,
    thread: Thread,
    author: Actor,
    group: Actor,
    parent_ap_id: str | None,
    parent_position: int | None,
    answered_ap_id: str | None,
    answered_local: bool | None,
) -> PostSubject:
    # A reply to the first post answers the thread's Page, whose id is the thread's.
    if parent_position == 1 and thread.ap_id:
        parent_ap_id = thread.ap_id
    also_to: tuple[str, ...] = ()
    if post.position > 1 and answered_ap_id is not None and answered_local is False and answered_ap_id != author.ap_id:
        also_to = (answered_ap_id,)
    return PostSubject(post, thread, author, group, parent_ap_id, also_to)


def _subject_of_row(row: RowMapping) -> PostSubject:
    post = Post(**{key: row[f"post_{key}"] for key in _POST_KEYS})
    thread = Thread(**{key: row[f"thread_{key}"] for key in _THREAD_KEYS})
    author = Actor(**{key: row[f"author_{key}"] for key in _ACTOR_KEYS})
    group = Actor(**{key: row[f"group_{key}"] for key in _ACTOR_KEYS})
    return _subject(
        post, thread, author, group, row["parent_ap_id"], row["parent_position"], row["answered_ap_id"],
        row["answered_local"],
    )  # fmt: skip


_POST_KEYS = [attribute.key for attribute in inspect(Post).column_attrs]
_THREAD_KEYS = [attribute.key for attribute in inspect(Thread).column_attrs]
# A document names actors by their ids: their keys (kilobytes of PEM each) are not read.
_ACTOR_KEYS = [
    attribute.key
    for attribute in inspect(Actor).column_attrs
    if attribute.key not in ("private_key_pem", "public_key_pem", "summary")
]
_ROW_COLUMNS = [
    *(getattr(Post, key).label(f"post_{key}") for key in _POST_KEYS),
    *(getattr(Thread, key).label(f"thread_{key}") for key in _THREAD_KEYS),
    *(getattr(_Author, key).label(f"author_{key}") for key in _ACTOR_KEYS),
    *(getattr(_Group, key).label(f"group_{key}") for key in _ACTOR_KEYS),
    _Parent.ap_id.label("parent_ap_id"),
    _Parent.position.label("parent_position"),
    _Answered.ap_id.label("answered_ap_id"),
    _Answered.local.label("answered_local"),
]

# Built once: every document served on a cache miss runs one of these, and building them cost more than
# running them (0.2-0.3 ms each, against 17 us for adding a WHERE to the built one).
_SUBJECTS = _subject_query(
    Post, Thread, _Author, _Group, _Parent.ap_id, _Parent.position, _Answered.ap_id, _Answered.local
)
_POST_SUBJECT = _SUBJECTS.where(Post.id == bindparam("post_id"))
_THREAD_SUBJECT = _SUBJECTS.where(Post.thread_id == bindparam("thread_id"), Post.position == 1)
_ROWS = _subject_query(*_ROW_COLUMNS)
_POST_ROWS = _ROWS.where(Post.id == bindparam("post_id"))
_THREAD_ROWS = _ROWS.where(Post.thread_id == bindparam("thread_id"), Post.position == 1)
_ACTOR_BY_HANDLE = (
    select(Actor, Category)
    .outerjoin(Category, Category.actor_id == Actor.id)
    .where(
        Actor.username_key == bindparam("name"), Actor.domain == bindparam("domain"), Actor.kind == bindparam("kind")
    )
    .options(raiseload(Category.actor))
)
