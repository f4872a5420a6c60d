"""The handlers and routes of JSON API v1: reading categories, threads and posts; writing threads,
replies, edits and deletions; who am I; resolving a handle or address; following.

Each handler reads its input strictly (forum.web.api.bodies), calls the same services as the pages
with the caller's Viewer, and renders with forum.web.api.serializers. Writes go through
`forum.write()`, so the services' events invalidate the page caches.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forum.config import Settings
from forum.errors import InvalidInput, NotFound
from forum.models import Actor, Category, Member
from forum.permissions import GUEST
from forum.ports import RemoteResolver
from forum.services import categories as category_service
from forum.services import follows, posting, reading, votes
from forum.web.api import openapi, records, serializers
from forum.web.api import watching as watching_api
from forum.web.api.auth import Caller
from forum.web.api.bodies import (
    checked_reference,
    choice_field,
    json_object,
    optional_id_field,
    optional_text_field,
    path_id,
    query_int,
    reference_field,
    text_field,
)
from forum.web.api.endpoint import endpoint, json_response
from forum.web.api.limits import limit_posting, limit_voting
from forum.web.api.resolve import RemoteUnavailable, actor_record, resolve
from forum.web.context import forum_context

PREFIX = "/api/v1"
MAX_PAGE = 100_000
MAX_THREADS = 100


@endpoint
async def list_categories(request: Request, caller: Caller) -> Response:
    forum = forum_context(request)
    async with forum.read() as session:
        visible = await category_service.list_categories(session, caller.viewer)
    settings = forum.settings
    return json_response([serializers.category(c, settings.base_url, settings.host) for c in visible])


@endpoint
async def get_category(request: Request, caller: Caller) -> Response:
    forum = forum_context(request)
    reference = checked_reference(request.path_params["ref"], "category")
    async with forum.read() as session:
        found = await category_service.get_category(session, caller.viewer, reference)
    return json_response(serializers.category(found, forum.settings.base_url, forum.settings.host))


@endpoint
async def category_threads(request: Request, caller: Caller) -> Response:
    """Pinned threads first (on the first page), then by latest activity; `next` is the cursor for `after`."""
    forum = forum_context(request)
    reference = checked_reference(request.path_params["ref"], "category")
    cursor = records.checked_cursor(request.query_params.get("after"))
    limit = query_int(request, "limit", reading.THREADS_PER_PAGE, 1, MAX_THREADS)
    base_url = forum.settings.base_url
    async with forum.read() as session:
        found = await category_service.get_category(session, caller.viewer, reference)
        listing = await reading.category_threads(session, found, cursor, limit)
        summaries = [*listing.pinned, *listing.threads]
        starters = await records.thread_starters(session, [s.id for s in summaries])
    threads = [
        serializers.thread_summary(s, starters[s.id][0], serializers.author(starters[s.id][1]), base_url)
        for s in summaries
    ]
    return json_response(
        {"category": serializers.category_ref(found, base_url), "threads": threads, "next": listing.next_cursor}
    )


@endpoint
async def create_thread(request: Request, caller: Caller) -> Response:
    caller.require_member()
    forum = forum_context(request)
    data = await json_object(request, ("category", "title", "body"))
    reference = _local_category(reference_field(data, "category"), forum.settings.host)
    title, body = text_field(data, "title"), text_field(data, "body")
    limit_posting(request, caller)
    async with forum.write() as session:
        try:
            found = await category_service.get_category(session, caller.viewer, reference)
        except NotFound as error:
            found = await _remote_category(session, forum.settings, forum.resolver, reference, error)
        thread, _post = await posting.create_thread(
            session, forum.bus, forum.settings.base_url, caller.viewer, found, title=title, body=body
        )
    return await _thread_response(request, caller, thread.id, 1, status_code=201)


@endpoint
async def get_thread(request: Request, caller: Caller) -> Response:
    thread_id = path_id(request, "thread_id", "thread")
    return await _thread_response(request, caller, thread_id, query_int(request, "page", 1, 1, MAX_PAGE))


@endpoint
async def create_post(request: Request, caller: Caller) -> Response:
    caller.require_member()
    forum = forum_context(request)
    thread_id = path_id(request, "thread_id", "thread")
    data = await json_object(request, ("body", "in_reply_to"))
    body, in_reply_to = text_field(data, "body"), optional_id_field(data, "in_reply_to")
    limit_posting(request, caller)
    async with forum.write() as session:
        created = await posting.reply(
            session, forum.bus, forum.settings.base_url, caller.viewer, thread_id, body=body, in_reply_to=in_reply_to
        )
    return await _post_response(request, caller, created.id, status_code=201)


@endpoint
async def get_post(request: Request, caller: Caller) -> Response:
    return await _post_response(request, caller, path_id(request, "post_id", "post"))


@endpoint
async def edit_post(request: Request, caller: Caller) -> Response:
    """The author edits; `title` renames the thread and is taken only on its opening post."""
    caller.require_member()
    forum = forum_context(request)
    post_id = path_id(request, "post_id", "post")
    data = await json_object(request, ("body", "title"))
    body, title = text_field(data, "body"), optional_text_field(data, "title")
    async with forum.write() as session:
        edited = await posting.edit_post(session, forum.bus, caller.viewer, post_id, body=body, title=title)
        if title is not None and edited.position != 1:
            raise InvalidInput("Only the opening post of a thread has a title; leave “title” out.", field="title")
    return await _post_response(request, caller, post_id)


@endpoint
async def delete_post(request: Request, caller: Caller) -> Response:
    caller.require_member()
    forum = forum_context(request)
    post_id = path_id(request, "post_id", "post")
    async with forum.write() as session:
        await posting.delete_post(session, forum.bus, caller.viewer, post_id)
    return Response(status_code=204)


@endpoint
async def vote_on_post(request: Request, caller: Caller) -> Response:
    """`{"value": 1 | -1 | 0}`: up, down, or none; DELETE withdraws. Answers the post's counts and your vote."""
    caller.require_member()
    forum = forum_context(request)
    post_id = path_id(request, "post_id", "post")
    value = 0
    if request.method == "PUT":
        value = choice_field(await json_object(request, ("value",)), "value", votes.VALUES)
    limit_voting(request, caller)
    async with forum.write() as session:
        tally = await votes.vote(session, forum.bus, caller.viewer, post_id, value)
    return json_response(serializers.tally(tally))


@endpoint
async def post_revisions(request: Request, caller: Caller) -> Response:
    """Earlier versions, newest first; a deleted or removed post shows none."""
    forum = forum_context(request)
    post_id = path_id(request, "post_id", "post")
    async with forum.read() as session:
        current, thread_id = await records.visible_post(session, caller.viewer, post_id)
        _post, history = await reading.revisions(session, caller.viewer, post_id)
    gone = current.deleted or current.removed
    return json_response(
        {
            "post": serializers.post(current, thread_id, forum.settings.base_url),
            "revisions": [] if gone else [serializers.revision(r) for r in history],
        }
    )


@endpoint
async def me(request: Request, caller: Caller) -> Response:
    caller.require_member()
    assert caller.token is not None
    forum = forum_context(request)
    async with forum.read() as session:
        member = await session.get(Member, caller.viewer.member_id)
        assert member is not None
    duties = sorted(caller.viewer.grants, key=lambda grant: (grant[0], grant[1] or 0))
    token = caller.token
    return json_response(
        {
            **serializers.member(member.actor),
            "email": member.email,
            "role": member.role,
            "admin": member.is_admin,
            "duties": [{"duty": duty, "category": category} for duty, category in duties],
            "language": member.language,
            "theme": member.theme,
            "created_at": serializers.timestamp(member.created_at),
            "token": {
                "id": token.id,
                "name": token.name,
                "prefix": token.prefix,
                "created_at": serializers.timestamp(token.created_at),
                "last_used_at": serializers.timestamp(token.last_used_at),
            },
        }
    )


@endpoint
async def resolve_handle(request: Request, caller: Caller) -> Response:
    forum = forum_context(request)
    async with forum.read() as session:
        # A remote name is fetched and stored: a write, though the network comes first.
        found = await resolve(session, forum.settings, caller.viewer, request.query_params.get("q", ""), forum.resolver)
    return json_response(found)


@endpoint
async def create_follow(request: Request, caller: Caller) -> Response:
    """Follow a category or member, here or elsewhere: `accepted` at once here, `pending` until a peer answers."""
    caller.require_member()
    forum = forum_context(request)
    data = await json_object(request, ("target",))
    target = text_field(data, "target")
    for attempt in (1, 2):
        try:
            async with forum.write() as session:
                actor = await _actor_for(session, forum.settings, forum.resolver, target)
                follow = await follows.follow(session, forum.bus, caller.viewer, actor)
                record = await actor_record(session, forum.settings, caller.viewer, actor)
            break
        except IntegrityError:
            if attempt == 2:
                raise
            # Two requests at once: the other made the same follow first; the second try finds and answers it.
    return json_response({"id": follow.id, "state": follow.state.value, "target": record}, 201)


@endpoint
async def delete_follow(request: Request, caller: Caller) -> Response:
    caller.require_member()
    forum = forum_context(request)
    data = await json_object(request, ("target",))
    target = text_field(data, "target")
    async with forum.write() as session:
        actor = await _actor_for(session, forum.settings, forum.resolver, target)
        if not await follows.unfollow(session, forum.bus, caller.viewer, actor):
            raise NotFound("You do not follow this.", field="target")
    return Response(status_code=204)


async def _actor_for(session: AsyncSession, settings: Settings, remote: RemoteResolver, target: str) -> Actor:
    found = await resolve(session, settings, GUEST, target, remote)
    if found.get("type") not in ("category", "member"):
        raise InvalidInput("Follow a category or a member (a name, name@host, or an address).", field="target")
    actor = await session.scalar(select(Actor).where(Actor.ap_id == found["ap_id"]))
    if actor is None:
        raise NotFound("Nothing to follow there.", field="target")
    return actor


@endpoint
async def openapi_document(request: Request, caller: Caller) -> Response:
    forum = forum_context(request)
    return json_response(openapi.document(forum.settings.base_url, openapi.sections_of(forum)))


async def _thread_response(
    request: Request, caller: Caller, thread_id: int, page: int, status_code: int = 200
) -> Response:
    forum = forum_context(request)
    async with forum.read() as session:
        view, starter = await records.thread_with_posts(session, caller.viewer, thread_id, page)
    headers = {"Location": f"{forum.settings.base_url}{PREFIX}/threads/{thread_id}"} if status_code == 201 else None
    return json_response(serializers.thread_page(view, starter, forum.settings.base_url), status_code, headers)


async def _post_response(request: Request, caller: Caller, post_id: int, status_code: int = 200) -> Response:
    forum = forum_context(request)
    async with forum.read() as session:
        view, thread_id = await records.visible_post(session, caller.viewer, post_id)
    headers = {"Location": f"{forum.settings.base_url}{PREFIX}/posts/{post_id}"} if status_code == 201 else None
    return json_response(serializers.post(view, thread_id, forum.settings.base_url), status_code, headers)


def _local_category(reference: str, host: str) -> str:
    """A category id, slug, `slug@our-host`, or a remote category's handle (its slug here)."""
    name, at, domain = reference.removeprefix("acct:").removeprefix("@").partition("@")
    if at and domain.lower() == host.lower():
        return checked_reference(name, "category")
    return checked_reference(reference.removeprefix("acct:").removeprefix("@"), "category")


async def _remote_category(
    session: AsyncSession, settings: Settings, remote: RemoteResolver, reference: str, error: NotFound
) -> Category:
    """A remote category met for the first time: resolved through federation, then used like a local one."""
    if "@" not in reference:
        raise NotFound(error.message, field="category") from error
    actor = await remote.resolve_actor(session, reference)
    category = await session.scalar(select(Category).where(Category.actor_id == actor.id)) if actor else None
    if category is None:
        raise RemoteUnavailable(reference, field="category")
    category.actor = actor  # type: ignore[assignment]
    return category


routes = [
    Route(f"{PREFIX}/openapi.json", openapi_document, methods=["GET"]),
    Route(f"{PREFIX}/me", me, methods=["GET"]),
    Route(f"{PREFIX}/resolve", resolve_handle, methods=["GET"]),
    Route(f"{PREFIX}/follows", create_follow, methods=["POST"]),
    Route(f"{PREFIX}/follows", delete_follow, methods=["DELETE"]),
    Route(f"{PREFIX}/categories", list_categories, methods=["GET"]),
    Route(f"{PREFIX}/categories/{{ref}}", get_category, methods=["GET"]),
    Route(f"{PREFIX}/categories/{{ref}}/threads", category_threads, methods=["GET"]),
    Route(f"{PREFIX}/threads", create_thread, methods=["POST"]),
    Route(f"{PREFIX}/threads/{{thread_id}}", get_thread, methods=["GET"]),
    Route(f"{PREFIX}/threads/{{thread_id}}/posts", create_post, methods=["POST"]),
    Route(f"{PREFIX}/posts/{{post_id}}", get_post, methods=["GET"]),
    Route(f"{PREFIX}/posts/{{post_id}}", edit_post, methods=["PATCH"]),
    Route(f"{PREFIX}/posts/{{post_id}}", delete_post, methods=["DELETE"]),
    Route(f"{PREFIX}/posts/{{post_id}}/revisions", post_revisions, methods=["GET"]),
    Route(f"{PREFIX}/posts/{{post_id}}/vote", vote_on_post, methods=["PUT", "DELETE"]),
    *watching_api.routes,
]
