"""The ActivityPub GET endpoints: actors (`/c/…` Group, `/u/…` Person, `/actor` Application), objects (`/t/…`
Page, `/p/…` Note) and stored activities, negotiated against the forum's HTML pages at the same addresses;
with the collections and discovery routes, the list `forum.app` mounts before the pages.

Peers fetch actors and posts all day: a document costs one query the first time, then comes from the
page cache until a change marks it stale.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from activitypub import collections, discovery
from activitypub.actors import actor_document, key_document
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
from activitypub.objects import PostSubject, post_document
from activitypub.subjects import (
    get_instance_actor,
    load_actor,
    may_mention_others,
    read_post_subject,
    read_thread_subject,
    with_mentions,
)
from forum.errors import ForumError
from forum.models import ActorKind, OutgoingActivity
from forum.web import misc, pages
from forum.web.context import forum_context

__all__ = ["require_signed_fetch", "routes"]

Endpoint = Callable[[Request], Awaitable[Response]]


async def group(request: Request) -> Response:
    return await _actor(request, ActorKind.GROUP, request.path_params["slug"], pages.category)


async def person(request: Request) -> Response:
    return await _actor(request, ActorKind.PERSON, request.path_params["name"], pages.profile)


async def instance(request: Request) -> Response:
    """The instance's `Application`. Never behind authorized fetch: its key is what verifies our signed fetches."""
    media = activity_type(request, JSON_FIRST)
    if media is None:
        return redirect("/")
    cached = cached_document(request, media)
    if cached is not None:
        return cached
    actor = await get_instance_actor(forum_context(request))
    return cache_document(request, media, actor_document(actor), [f"actor:{actor.id}"])


async def thread(request: Request) -> Response:
    media = activity_type(request)
    if media is None:
        return await html(request, pages.thread)
    await require_signed_fetch(request)
    cached = cached_document(request, media)
    if cached is not None:
        return cached
    async with forum_context(request).read_rows() as connection:
        subject = await read_thread_subject(connection, request.path_params["thread_id"])
    if subject is None:
        return not_found(request, "No such thread.")
    subject = await _with_mentions(request, subject)
    if not subject.thread.local:
        return _elsewhere(request, subject.thread.ap_id)
    return _post_response(request, subject, media)


async def post(request: Request) -> Response:
    media = activity_type(request)
    if media is None:
        return await html(request, pages.post_permalink)
    await require_signed_fetch(request)
    cached = cached_document(request, media)
    if cached is not None:
        return cached
    async with forum_context(request).read_rows() as connection:
        subject = await read_post_subject(connection, request.path_params["post_id"])
    if subject is not None:
        subject = await _with_mentions(request, subject)
    if subject is None:
        return not_found(request, "No such post.")
    if subject.post.position == 1 and subject.thread.ap_id:
        # A thread's first post is the thread's Page, whose id is `/t/ID`: a peer checks that a document's id
        # is the address it fetched, so it is sent where the id points rather than given a mismatching one.
        return redirect(subject.thread.ap_id)
    if not subject.post.local or subject.post.ap_id is None:
        return _elsewhere(request, subject.post.ap_id)
    return _post_response(request, subject, media)


async def activity(request: Request) -> Response:
    """An activity one of our actors sent, as it was sent; activities have no page, so JSON whatever is asked."""
    media = activity_type(request, JSON_FIRST) or JSON_FIRST[0]
    await require_signed_fetch(request)
    forum = forum_context(request)
    ap_id = f"{forum.settings.base_url}/activities/{request.path_params['key']}"
    async with forum.read() as session:
        document = await session.scalar(select(OutgoingActivity.document).where(OutgoingActivity.ap_id == ap_id))
    if document is None:
        return not_found(request, "No such activity.")
    return activity_response(document, media, request=request)


async def html(request: Request, endpoint: Endpoint) -> Response:
    """The forum's own page for this address, its errors included, marked as varying with Accept."""
    try:
        response = await endpoint(request)
    except ForumError as error:
        response = await misc.forum_error(request, error)
    except HTTPException as error:
        response = await misc.http_error(request, error)
    return add_vary_accept(response)


def redirect(url: str) -> Response:
    return add_vary_accept(RedirectResponse(url, status_code=302))


async def _actor(request: Request, kind: ActorKind, handle: str, page: Endpoint) -> Response:
    media = activity_type(request)
    if media is None:
        return await html(request, page)
    try:
        await require_signed_fetch(request)
        signed = True
    except HTTPException as refusal:
        if refusal.status_code != 401:
            raise
        signed = False
    cached = cached_document(request, media) if signed else None
    if cached is not None:
        return cached
    async with forum_context(request).read() as session:
        found = await load_actor(session, handle, kind)
    if found is None:
        return not_found(request, "No such actor.")
    actor, category = found
    if not actor.local:
        return redirect(actor.ap_id)
    if kind == ActorKind.GROUP and (category is None or category.private):
        return not_found(request, "No such actor.")  # a private category never federates
    if not signed:
        # Under authorized fetch an unsigned peer still gets the key: without it, it could verify
        # nothing this actor signs (the GoToSocial way; the key names its owner).
        return activity_response(key_document(actor), media, request=request)
    # A local actor's row changes only with a change that marks `actor:ID` (and a category's `c:ID`) stale.
    tags = [f"actor:{actor.id}", *([f"c:{category.id}"] if category is not None else [])]
    return cache_document(request, media, actor_document(actor, category=category), tags)


async def _with_mentions(request: Request, subject: PostSubject) -> PostSubject:
    """The subject with its `Mention` tags: a session only for the rare text that names someone elsewhere."""
    if not may_mention_others(subject):
        return subject
    async with forum_context(request).read() as session:
        return await with_mentions(session, subject)


def _post_response(request: Request, subject: PostSubject, media: str) -> Response:
    document = post_document(subject)
    if document["type"] == "Tombstone":
        return activity_response(document, media, 410, request=request)
    # Whatever changes a thread page (edits, deletions, moves, pins, locks) marks `t:ID` stale; a category
    # turned private marks `c:ID`.
    return cache_document(request, media, document, [f"t:{subject.thread.id}", f"c:{subject.thread.category_id}"])


def _elsewhere(request: Request, ap_id: str | None) -> Response:
    """A remote object: we do not republish others' objects, we point at them."""
    return redirect(ap_id) if ap_id else not_found(request)


routes: list[BaseRoute] = [
    Route("/actor", instance, name="ap_instance_actor"),
    Route("/activities/{key}", activity, name="ap_activity"),
    Route("/c/{slug}", group, name="ap_group"),
    Route("/u/{name}", person, name="ap_person"),
    Route("/t/{thread_id:id}", thread, name="ap_thread"),
    Route("/p/{post_id:id}", post, name="ap_post"),
    *collections.routes,
    *discovery.routes,
]
