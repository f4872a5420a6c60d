"""The member's Watch buttons (threads and categories), the /watching page, and following a community
elsewhere by its handle or address. Every form works without script and answers with a redirect back.

The thread page knows whether its member watches it from a per-process cache of each member's watched
threads (with how far they read them), dropped across processes when they watch or stop watching, so
reading a thread costs no query, and one UPDATE only when it shows posts the member had not seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forum.cache import TaggedCache
from forum.errors import N_, ForumError, InvalidInput
from forum.i18n import gettext_ as _
from forum.models import Category, FollowState
from forum.services import categories as category_service
from forum.services import reading
from forum.services import watching as service
from forum.web.base import PageState, check_csrf, page_state, read_form, redirect, render, safe_next
from forum.web.context import ForumContext, forum_context

CACHE_KEY = "watches"


@dataclass(frozen=True)
class ThreadWatch:
    """What the thread page shows of the member's watch: the button's state, and where new posts begin."""

    watching: bool
    # The position of the first post the member had not seen, when it is on this page.
    first_new: int | None = None


def watch_cache() -> TaggedCache[dict[int, int]]:
    """Each member's watched threads (thread id -> posts read), tagged `w:<actor id>`."""
    return TaggedCache(10_000)


async def thread_watch(request: Request, state: PageState, view: reading.ThreadPage) -> ThreadWatch | None:
    """The member's watch of the thread shown (None for guests), marking what the page shows as read."""
    actor_id = state.viewer.actor_id
    if actor_id is None:
        return None
    forum = forum_context(request)
    positions = await _read_positions(forum, actor_id)
    thread_id = view.thread.id
    read = positions.get(thread_id)
    if read is None:
        return ThreadWatch(False)
    shown = [post.position for post in view.posts]
    if not shown or shown[-1] <= read:
        return ThreadWatch(True)
    async with forum.write() as session:
        await service.mark_read(session, actor_id, thread_id, shown[-1])
    positions[thread_id] = shown[-1]
    return ThreadWatch(True, read + 1 if read >= 1 and read + 1 >= shown[0] else None)


async def category_watch(session: AsyncSession, state: PageState, category: Category) -> FollowState | None:
    return await service.category_state(session, state.viewer, category)


async def watch_thread(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    state, form = await _member_form(request)
    if state is None:
        return redirect(f"/login?next=/t/{thread_id}")
    forum = forum_context(request)
    try:
        async with forum.write() as session:
            if form.get("watch") == "0":
                await service.unwatch_thread(session, forum.bus, state.viewer, thread_id)
            else:
                await service.watch_thread(session, forum.bus, state.viewer, thread_id)
    except IntegrityError:
        pass  # a double click: the other request made the same watch first
    return redirect(safe_next(form.get("next") or f"/t/{thread_id}"))


async def watch_category(request: Request) -> Response:
    slug = request.path_params["slug"]
    state, form = await _member_form(request)
    if state is None:
        return redirect(f"/login?next=/c/{slug}")
    forum = forum_context(request)
    try:
        async with forum.write() as session:
            category = await category_service.get_category(session, state.viewer, slug)
            if form.get("watch") == "0":
                await service.unwatch_category(session, forum.bus, state.viewer, category)
            else:
                await service.watch_category(session, forum.bus, state.viewer, category)
    except IntegrityError:
        pass  # a double click: the other request made the same follow first
    return redirect(safe_next(form.get("next") or f"/c/{slug}"))


async def watching_page(request: Request) -> Response:
    """GET: what the member watches. POST: follow a community elsewhere, then back here (or the form again,
    with what was typed and why it did not work)."""
    state = await page_state(request)
    if not state.viewer.is_member:
        return redirect("/login?next=/watching")
    forum = forum_context(request)
    form: dict[str, Any] = {"target": ""}
    status = 200
    if request.method == "POST":
        try:
            form = await read_form(request)
            check_csrf(request, state, form)
            _limit_lookups(request, state)
            async with forum.write() as session:
                found = await service.follow_elsewhere(
                    session, forum.bus, forum.resolver, state.viewer, form.get("target", ""),
                    origin=forum.settings.origin,
                )  # fmt: skip
        except ForumError as error:
            form.update(error=error.localized(_), error_field=error.field or "target")
            status = error.status
        except IntegrityError:  # sent twice at once: the other request followed it
            return redirect("/watching")
        else:
            followed = f"c{found.category.id}" if found.category is not None else f"t{found.thread_id}"
            return redirect(f"/watching?followed={followed}")
    async with forum.read() as session:
        watched = await service.watching(session, state.viewer)
    context = {
        "watched": watched,
        "form": form,
        "error": form.get("error"),
        "error_field": form.get("error_field"),
        "followed": _followed(watched, request.query_params.get("followed", "")),
    }
    return render(request, state, "watching.html", context, status)


async def _member_form(request: Request) -> tuple[PageState | None, dict[str, str]]:
    state = await page_state(request)
    if not state.viewer.is_member:
        return None, {}
    form = await read_form(request)
    check_csrf(request, state, form)
    if form.get("watch", "1") not in ("0", "1"):
        raise InvalidInput(N_("Watch is 1 (watch) or 0 (stop watching)."), field="watch")
    return state, form


def _limit_lookups(request: Request, state: PageState) -> None:
    # Each attempt may make the forum fetch from another server.
    forum = forum_context(request)
    limits = forum.settings.rate_limits
    message = _("You are looking up too many communities. Wait a little and try again.")
    forum.limiter.hit("follow-elsewhere", f"member:{state.viewer.username}", limits.post_per_account,
                      limits.post_window, message)  # fmt: skip


def _followed(watched: service.Watching, key: str) -> service.WatchedCategory | service.WatchedThread | None:
    """What the member just followed, to confirm it on the page they come back to."""
    if key[:1] == "c":
        return next((w for w in watched.categories if f"c{w.category.id}" == key), None)
    if key[:1] == "t":
        return next((t for t in watched.threads if f"t{t.id}" == key), None)
    return None


async def _read_positions(forum: ForumContext, actor_id: int) -> dict[int, int]:
    cache: TaggedCache[dict[int, int]] | None = forum.extra.get(CACHE_KEY)
    positions = cache.get(actor_id) if cache is not None else None
    if positions is None:
        async with forum.read() as session:
            positions = await service.read_positions(session, actor_id)
        if cache is not None:
            cache.put(actor_id, positions, (f"w:{actor_id}",))
    return positions


routes = [
    Route("/watching", watching_page, methods=["GET", "POST"], name="watching"),
    Route("/t/{thread_id:id}/watch", watch_thread, methods=["POST"], name="watch_thread"),
    Route("/c/{slug}/watch", watch_category, methods=["POST"], name="watch_category"),
]
