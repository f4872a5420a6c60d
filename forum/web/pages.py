"""Reading pages: home, category, thread, post permalink, revisions, profile.

Visitors (no session) get pages from the rendered-page cache, keyed by page, language and theme, and
revalidated with ETags; members get them rendered for them.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from forum.cache import CachedPage
from forum.errors import N_, NotFound
from forum.permissions import GUEST, can_see_category
from forum.services import categories as category_service
from forum.services import reading
from forum.services import site as site_service
from forum.web.base import (
    PageState,
    current_viewer,
    page_state,
    render,
    request_language,
    session_id_from,
    site_info,
)
from forum.web.context import forum_context
from forum.web.votes import viewer_votes
from forum.web.watching import ThreadWatch, category_watch, thread_watch


async def _cached_for_visitor(request: Request, key: tuple[object, ...]) -> tuple[Response | None, tuple[object, ...]]:
    """A cached page for a visitor, or None and the full cache key to store under."""
    if session_id_from(request) is not None:
        return None, ()
    forum = forum_context(request)
    site = await site_info(forum)
    full_key = (*key, request_language(request, GUEST), site.theme)
    cached = forum.pages.get(full_key)
    if cached is None:
        return None, full_key
    return _page_response(request, cached), full_key


def _page_response(request: Request, page: CachedPage) -> Response:
    headers = {"ETag": page.etag, "Cache-Control": "public, no-cache", "Vary": "Cookie, Accept-Language"}
    if request.headers.get("if-none-match") == page.etag:
        return Response(status_code=304, headers=headers)
    return Response(page.body, media_type=page.media_type, headers=headers)


def _store_for_visitor(
    request: Request, full_key: tuple[object, ...], response: Response, tags: tuple[str, ...]
) -> Response:
    if not full_key or response.status_code != 200:
        return response
    body = bytes(response.body)
    page = CachedPage(body, f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"', "text/html; charset=utf-8")
    forum_context(request).pages.put(full_key, page, (*tags, "site"))
    return _page_response(request, page)


async def home(request: Request) -> Response:
    if await _needs_setup(request):
        return RedirectResponse("/setup", status_code=303)
    cached, key = await _cached_for_visitor(request, ("home",))
    if cached is not None:
        return cached
    state = await page_state(request)
    async with forum_context(request).read() as session:
        visible = await category_service.list_categories(session, state.viewer)
        recent = await reading.recent_threads(session, state.viewer)
    response = render(request, state, "home.html", {"categories": visible, "recent": recent})
    return _store_for_visitor(request, key, response, ("home",))


async def category(request: Request) -> Response:
    slug = request.path_params["slug"]
    cursor = request.query_params.get("after")
    cached, key = await _cached_for_visitor(request, ("c", slug.lower(), cursor))
    if cached is not None:
        return cached
    state = await page_state(request)
    async with forum_context(request).read() as session:
        found = await category_service.get_category(session, state.viewer, slug)
        listing = await reading.category_threads(session, found, cursor)
        watch = await category_watch(session, state, found)
    response = render(request, state, "category.html", {"category": found, "listing": listing, "watch": watch})
    return _store_for_visitor(request, key, response, (f"c:{found.id}",))


async def _needs_setup(request: Request) -> bool:
    """An empty forum sends its first visitor to /setup; once it has a member, this costs nothing."""
    forum = forum_context(request)
    if forum.extra.get("setup_done") is True:
        return False
    async with forum.read() as session:
        if await site_service.needs_setup(session):
            return True
    forum.extra["setup_done"] = True
    return False


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        raise NotFound(N_("No such page."))
    return int(raw)


async def thread(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    page = _page_number(request)
    cached, key = await _cached_for_visitor(request, ("t", thread_id, page))
    if cached is not None:
        return cached
    state = await page_state(request)
    view = await cached_thread_page(request, state, thread_id, page)
    my_votes, watch = await viewer_votes(request, state, view), await thread_watch(request, state, view)
    response = thread_response(request, state, view, {}, my_votes=my_votes, watch=watch)
    return _store_for_visitor(request, key, response, (f"t:{thread_id}",))


async def cached_thread_page(request: Request, state: PageState, thread_id: int, page: int) -> reading.ThreadPage:
    """A thread page's posts, from the per-process cache when fresh, else from the database.

    The cached page is the same for every viewer; whether this viewer may see it is checked on
    every request. Entries go stale with the thread (`t:`) or its category (`c:`), across processes.
    """
    forum = forum_context(request)
    view = forum.threads.get((thread_id, page))
    if view is None:
        async with forum.read() as session:
            view = await reading.thread_page(session, state.viewer, thread_id, page)
        forum.threads.put((thread_id, page), view, (f"t:{thread_id}", f"c:{view.category.id}"))
    if not can_see_category(state.viewer, view.category.id, view.category.private):
        raise NotFound(N_("No such thread."))
    return view


def thread_response(
    request: Request,
    state: PageState,
    view: reading.ThreadPage,
    form: dict[str, object],
    status_code: int = 200,
    *,
    my_votes: dict[int, int] | None = None,
    watch: ThreadWatch | None = None,
) -> Response:
    # A refused reply carries its reason in `form`; the template shows `error` next to the reply box.
    context = {
        "view": view,
        "form": form,
        "error": form.get("error"),
        "error_field": form.get("error_field"),
        "my_votes": my_votes or {},
        "watch": watch,
    }
    return render(request, state, "thread.html", context, status_code)


async def post_permalink(request: Request) -> Response:
    post_id = request.path_params["post_id"]
    viewer, _ = await current_viewer(request)
    async with forum_context(request).read() as session:
        thread_id, page = await reading.post_location(session, viewer, post_id)
    suffix = f"?page={page}" if page > 1 else ""
    return RedirectResponse(f"/t/{thread_id}{suffix}#p{post_id}", status_code=302)


async def revisions(request: Request) -> Response:
    state = await page_state(request)
    async with forum_context(request).read() as session:
        post, history = await reading.revisions(session, state.viewer, request.path_params["post_id"])
    return render(request, state, "revisions.html", {"post": post, "revisions": history})


async def profile(request: Request) -> Response:
    state = await page_state(request)
    async with forum_context(request).read() as session:
        actor = await reading.find_actor(session, request.path_params["name"])
        posts = await reading.member_posts(session, state.viewer, actor.id)
    return render(request, state, "profile.html", {"actor": actor, "posts": posts})


routes = [
    Route("/", home, name="home"),
    Route("/c/{slug}", category, name="category"),
    Route("/t/{thread_id:id}", thread, name="thread"),
    Route("/p/{post_id:id}", post_permalink, name="post"),
    Route("/p/{post_id:id}/revisions", revisions, name="revisions"),
    Route("/u/{name}", profile, name="profile"),
]
