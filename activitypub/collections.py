"""The collections of our actors and threads: outboxes, followers and following (counts only), a category's
featured threads and moderators, and a thread's context (FEP-7888 / FEP-f228 / FEP-11dd).

Paged collections answer the collection (`totalItems`, `first`) at their address and pages of 20 at
`?page=N`, each linking the `next`. Collections have no HTML page: a browser is sent to their owner's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from activitypub.negotiation import (
    JSON_FIRST,
    activity_response,
    activity_type,
    add_vary_accept,
    cache_document,
    cached_document,
    not_found,
    require_signed_fetch,
)
from activitypub.objects import (
    CONTEXT,
    PUBLIC,
    Document,
    PostSubject,
    collection_page,
    ordered_collection,
    post_document,
)
from activitypub.subjects import load_actor, load_post_subjects, with_mentions_of
from forum.cache import FOLLOWS
from forum.models import Actor, ActorKind, Category, Follow, FollowState, Member, Post, RoleGrant, Thread
from forum.permissions import DUTIES
from forum.web import base as _web_base  # noqa: F401  (registers the `{…:id}` path convertor used below)
from forum.web.context import forum_context

PAGE_SIZE = 20
MAX_PAGE_DIGITS = 6

Loader = Callable[[AsyncSession, int, int], Awaitable[list[Any]]]


async def group_outbox(request: Request) -> Response:
    """Lemmy-like: each local thread as the Group's `Announce` of its `Create(Page)`, newest first."""

    async def answer(session: AsyncSession, actor: Actor, category: Category | None) -> Document | None:
        assert category is not None and actor.outbox_url is not None
        where = _live_first_posts(Thread.category_id == category.id, Thread.local.is_(True))

        async def items(session: AsyncSession, offset: int, limit: int) -> list[Any]:
            newest = (Thread.created_at.desc(), Thread.id.desc())
            subjects = await load_post_subjects(session, *where, order_by=newest, limit=limit, offset=offset)
            return [_announce(subject) for subject in await with_mentions_of(session, subjects)]

        total = await _count(session, select(func.count(Post.id)).join(Thread, Thread.id == Post.thread_id), where)
        document = await _paged(request, session, actor.outbox_url, total, items)
        if document is not None and document["type"] == "OrderedCollection":
            # Lemmy reads a Group's latest posts from the collection's own `orderedItems`, not from its pages.
            document["orderedItems"] = await items(session, 0, PAGE_SIZE)
        return document

    return await _of_actor(request, ActorKind.GROUP, "slug", answer, _category_tags)


async def person_outbox(request: Request) -> Response:
    """The member's posts, each wrapped in the `Create` that published it, newest first."""

    async def answer(session: AsyncSession, actor: Actor, _category: Category | None) -> Document | None:
        assert actor.outbox_url is not None
        where = (Post.author_id == actor.id, Post.local.is_(True), Post.deleted_at.is_(None), Post.removed_at.is_(None))

        async def items(session: AsyncSession, offset: int, limit: int) -> list[Any]:
            subjects = await load_post_subjects(session, *where, order_by=Post.id.desc(), limit=limit, offset=offset)
            return [_create(subject) for subject in await with_mentions_of(session, subjects)]

        query = (
            select(func.count(Post.id))
            .join(Thread, Thread.id == Post.thread_id)
            .join(Category, Category.id == Thread.category_id)
            .where(Category.private.is_(False))
        )
        return await _paged(request, session, actor.outbox_url, await _count(session, query, where), items)

    # Any post's change marks "home" stale; a member's outbox goes with it.
    return await _of_actor(request, ActorKind.PERSON, "name", answer, lambda actor, _category: ["home"])


async def followers(request: Request) -> Response:
    """How many follow, never who: followers are private to the actor."""
    kind = ActorKind.GROUP if "slug" in request.path_params else ActorKind.PERSON

    async def answer(session: AsyncSession, actor: Actor, _category: Category | None) -> Document:
        where = (Follow.target_id == actor.id, Follow.state == FollowState.ACCEPTED)
        total = await _count(session, select(func.count(Follow.id)), where)
        document: Document = {"@context": CONTEXT, "id": actor.followers_url, "totalItems": total}
        # A Group's is shaped as Lemmy reads it (a `Collection` with `items`), a Person's as Mastodon hides one.
        document.update(
            {"type": "Collection", "items": []} if kind == ActorKind.GROUP else {"type": "OrderedCollection"}
        )
        return document

    return await _of_actor(request, kind, "slug" if kind == ActorKind.GROUP else "name", answer, _follows_tags)


async def following(request: Request) -> Response:
    async def answer(session: AsyncSession, actor: Actor, _category: Category | None) -> Document:
        where = (Follow.follower_id == actor.id, Follow.state == FollowState.ACCEPTED)
        total = await _count(session, select(func.count(Follow.id)), where)
        return {"@context": CONTEXT, "id": f"{actor.ap_id}/following", "type": "OrderedCollection", "totalItems": total}

    return await _of_actor(request, ActorKind.PERSON, "name", answer, _follows_tags)


async def featured(request: Request) -> Response:
    """The pinned threads' `Page`s, embedded in the collection itself, as Mastodon and Lemmy serve it."""

    async def answer(session: AsyncSession, actor: Actor, category: Category | None) -> Document:
        assert category is not None
        where = _live_first_posts(Thread.category_id == category.id, Thread.pinned.is_(True))
        latest = (Thread.last_activity_at.desc(), Thread.id.desc())
        subjects = await load_post_subjects(session, *where, order_by=latest, limit=100)
        subjects = await with_mentions_of(session, subjects)
        items = [post_document(subject, with_context=False) for subject in subjects]
        return _embedded(f"{actor.ap_id}/featured", items)

    return await _of_actor(request, ActorKind.GROUP, "slug", answer, _category_tags)


async def moderators(request: Request) -> Response:
    """Who moderates the category: gardeners and concierges, of it or instance-wide, and the admins."""

    async def answer(session: AsyncSession, actor: Actor, category: Category | None) -> Document:
        assert category is not None
        duty = select(RoleGrant.member_id).where(
            RoleGrant.role.in_(DUTIES), or_(RoleGrant.category_id == category.id, RoleGrant.category_id.is_(None))
        )
        query = (
            select(Actor.ap_id)
            .join(Member, Member.actor_id == Actor.id)
            .where(or_(Member.role == "admin", Member.id.in_(duty)))
            .order_by(Member.id)
        )
        return _embedded(f"{actor.ap_id}/moderators", list(await session.scalars(query)))

    return await _of_actor(request, ActorKind.GROUP, "slug", answer)


async def context(request: Request) -> Response:
    """A thread's posts in order (ids of its Page and Notes; a deleted one's id answers a Tombstone),
    owned (`attributedTo`, FEP-11dd) by the category's Group."""
    thread_id = request.path_params["thread_id"]
    media = activity_type(request, JSON_FIRST)
    if media is None:
        return add_vary_accept(RedirectResponse(f"/t/{thread_id}", status_code=302))
    await require_signed_fetch(request)
    cached = cached_document(request, media)
    if cached is not None:
        return cached
    async with forum_context(request).read() as session:
        row = (
            await session.execute(
                select(Thread, Actor.ap_id)
                .join(Category, Category.id == Thread.category_id)
                .join(Actor, Actor.id == Category.actor_id)
                .where(Thread.id == thread_id, Category.private.is_(False))
            )
        ).first()
        if row is None or row[0].context_id is None:
            return not_found(request, "No such thread.")
        thread, group, context_id = row[0], row[1], row[0].context_id
        if not thread.local:
            return add_vary_accept(RedirectResponse(context_id, status_code=302))

        async def items(session: AsyncSession, offset: int, limit: int) -> list[Any]:
            rows = await session.execute(
                select(Post.position, Post.ap_id)
                .where(Post.thread_id == thread.id)
                .order_by(Post.position)
                .offset(offset)
                .limit(limit)
            )
            return [thread.ap_id if position == 1 else ap_id for position, ap_id in rows]

        document = await _paged(request, session, context_id, thread.post_count, items, attributed_to=group)
    if document is None:
        return not_found(request, "No such page.")
    return cache_document(request, media, document, [f"t:{thread.id}", f"c:{thread.category_id}"])


async def _of_actor(
    request: Request,
    kind: ActorKind,
    param: str,
    answer: Callable[[AsyncSession, Actor, Category | None], Awaitable[Document | None]],
    tags: Callable[[Actor, Category | None], list[str]] | None = None,
) -> Response:
    """A collection of a local actor (a public category's Group for groups), answered by `answer`.

    With `tags`, the answer is kept in the page cache until one of them is marked stale; without, it is read
    every time.
    """
    handle = request.path_params[param]
    media = activity_type(request, JSON_FIRST)
    if media is None:
        return add_vary_accept(RedirectResponse(f"/{'c' if kind == ActorKind.GROUP else 'u'}/{handle}", 302))
    await require_signed_fetch(request)
    cached = cached_document(request, media) if tags is not None else None
    if cached is not None:
        return cached
    async with forum_context(request).read() as session:
        found = await load_actor(session, handle, kind)
        if found is None or not found[0].local:
            return not_found(request, "No such actor.")
        actor, category = found
        if kind == ActorKind.GROUP and (category is None or category.private):
            return not_found(request, "No such actor.")
        document = await answer(session, actor, category)
    if document is None:
        return not_found(request, "No such page.")
    if tags is not None:
        return cache_document(request, media, document, tags(actor, category))
    return activity_response(document, media, request=request)


def _follows_tags(actor: Actor, category: Category | None) -> list[str]:
    # Any write to `follows` marks FOLLOWS stale (forum.cache): a count is read again after each follow.
    return [FOLLOWS, *_category_tags(actor, category)]


def _category_tags(actor: Actor, category: Category | None) -> list[str]:
    return [f"actor:{actor.id}", *([f"c:{category.id}"] if category is not None else [])]


async def _paged(
    request: Request,
    session: AsyncSession,
    collection_id: str,
    total: int,
    items: Loader,
    *,
    attributed_to: str | None = None,
) -> Document | None:
    """The collection, or its page `?page=N` (None when N is not a page number)."""
    raw = request.query_params.get("page")
    if raw is None:
        document = ordered_collection(collection_id, total, f"{collection_id}?page=1")
        if attributed_to is not None:
            document["attributedTo"] = attributed_to
        return document
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_PAGE_DIGITS or int(raw) < 1:
        return None
    number = int(raw)
    found = await items(session, (number - 1) * PAGE_SIZE, PAGE_SIZE + 1)
    next_page = f"{collection_id}?page={number + 1}" if len(found) > PAGE_SIZE else None
    page_id = f"{collection_id}?page={number}"
    return collection_page(page_id, collection_id, found[:PAGE_SIZE], next_page, attributed_to=attributed_to)


def _embedded(collection_id: str, items: list[Any]) -> Document:
    return {"@context": CONTEXT, "id": collection_id, "type": "OrderedCollection", "totalItems": len(items),
            "orderedItems": items}  # fmt: skip


def _live_first_posts(*where: ColumnElement[bool]) -> tuple[ColumnElement[bool], ...]:
    return (*where, Post.position == 1, Post.deleted_at.is_(None), Post.removed_at.is_(None))


async def _count(session: AsyncSession, query: Any, where: tuple[ColumnElement[bool], ...]) -> int:
    return int(await session.scalar(query.where(*where)) or 0)


def _create(subject: PostSubject) -> Document:
    """The `Create` that published a post. Its id is the object's with `#create`: it dereferences to the object."""
    document = post_document(subject, with_context=False)
    return {
        "id": f"{document['id']}#create",
        "type": "Create",
        "actor": subject.author.ap_id,
        "to": document["to"],
        "cc": document["cc"],
        "audience": subject.group.ap_id,
        "published": document["published"],
        "object": document,
    }


def _announce(subject: PostSubject) -> Document:
    create = _create(subject)
    return {
        "id": f"{create['object']['id']}#announce",
        "type": "Announce",
        "actor": subject.group.ap_id,
        "to": [PUBLIC],
        "cc": [subject.group.followers_url],
        "audience": subject.group.ap_id,
        "published": create["published"],
        "object": create,
    }


routes = [
    Route("/c/{slug}/outbox", group_outbox, name="ap_group_outbox"),
    Route("/c/{slug}/followers", followers, name="ap_group_followers"),
    Route("/c/{slug}/featured", featured, name="ap_group_featured"),
    Route("/c/{slug}/moderators", moderators, name="ap_group_moderators"),
    Route("/u/{name}/outbox", person_outbox, name="ap_person_outbox"),
    Route("/u/{name}/followers", followers, name="ap_person_followers"),
    Route("/u/{name}/following", following, name="ap_person_following"),
    Route("/t/{thread_id:id}/context", context, name="ap_thread_context"),
]
