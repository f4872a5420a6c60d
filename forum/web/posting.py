"""Writing forms: new thread, reply (with reply-to and quote), edit, delete.

A refused form comes back with what the member typed and the reason, never lost.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forum.errors import ForumError, InvalidInput, NotFound, RateLimited
from forum.i18n import gettext_ as _
from forum.services import categories as category_service
from forum.services import posting, reading
from forum.web.base import check_csrf, page_state, parse_id, read_form, redirect, render
from forum.web.context import forum_context
from forum.web.pages import thread_response


def _limit_posting(request: Request, username: str | None) -> None:
    forum = forum_context(request)
    limits = forum.settings.rate_limits
    message = _("You are posting too fast. Wait a little and try again.")
    forum.limiter.hit("post", f"member:{username}", limits.post_per_account, limits.post_window, message)


async def new_thread(request: Request) -> Response:
    state = await page_state(request)
    forum = forum_context(request)
    if not state.viewer.is_member:
        return redirect(f"/login?next={request.url.path}")
    async with forum.read() as session:
        category = await category_service.get_category(session, state.viewer, request.path_params["slug"])
    form: dict[str, Any] = {"title": "", "body": ""}
    if request.method == "GET":
        return render(request, state, "new_thread.html", {"category": category, "form": form})
    try:
        form = await read_form(request)
        check_csrf(request, state, form)
        _limit_posting(request, state.viewer.username)
        async with forum.write() as session:
            thread, _post = await posting.create_thread(
                session, forum.bus, forum.settings.base_url, state.viewer, category,
                title=form.get("title", ""), body=form.get("body", ""),
            )  # fmt: skip
    except ForumError as error:
        return _with_retry_after(render(
            request, state, "new_thread.html",
            {"category": category, "form": form, "error": error.localized(_), "error_field": error.field},
            error.status,
        ), error)  # fmt: skip
    return redirect(f"/t/{thread.id}")


async def reply(request: Request) -> Response:
    state = await page_state(request)
    forum = forum_context(request)
    thread_id = request.path_params["thread_id"]
    if not state.viewer.is_member:
        return redirect(f"/login?next=/t/{thread_id}")
    form: dict[str, Any] = {}
    try:
        form = await read_form(request)
        check_csrf(request, state, form)
        in_reply_to = _optional_id(form.get("in_reply_to"))
        _limit_posting(request, state.viewer.username)
        async with forum.write() as session:
            post = await posting.reply(
                session, forum.bus, forum.settings.base_url, state.viewer, thread_id,
                body=form.get("body", ""), in_reply_to=in_reply_to,
            )  # fmt: skip
    except ForumError as error:
        async with forum.read() as session:
            last_page = await reading.thread_page(session, state.viewer, thread_id, page=None)
        form.update(error=error.localized(_), error_field=error.field)
        return _with_retry_after(thread_response(request, state, last_page, form, error.status), error)
    return redirect(f"/p/{post.id}")


def _with_retry_after(response: Response, error: ForumError) -> Response:
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _optional_id(raw: str | None) -> int | None:
    if not raw:
        return None
    post_id = parse_id(raw)
    if post_id is None:
        raise InvalidInput(_("That reply points at no post."), field="in_reply_to")
    return post_id


async def reply_form(request: Request) -> Response:
    """A page to answer or quote one post (the links under each post; they work without JavaScript)."""
    state = await page_state(request)
    forum = forum_context(request)
    post_id = request.path_params["post_id"]
    if not state.viewer.is_member:
        return redirect(f"/login?next=/p/{post_id}/reply")
    async with forum.read() as session:
        thread_id, page = await reading.post_location(session, state.viewer, post_id)
        view = await reading.thread_page(session, state.viewer, thread_id, page)
    target = next((p for p in view.posts if p.id == post_id), None)
    if target is None or target.deleted or target.removed:
        raise NotFound(_("No such post."))
    body = ""
    if request.query_params.get("quote"):
        quoted = "\n".join(f"> {line}" if line else ">" for line in target.source.splitlines())
        body = _("@%(name)s wrote:") % {"name": target.author.handle} + f"\n{quoted}\n\n"
    return render(request, state, "reply.html", {"view": view, "target": target, "form": {"body": body}})


async def edit(request: Request) -> Response:
    state = await page_state(request)
    forum = forum_context(request)
    post_id = request.path_params["post_id"]
    if not state.viewer.is_member:
        return redirect(f"/login?next=/p/{post_id}/edit")
    async with forum.read() as session:
        thread_id, page = await reading.post_location(session, state.viewer, post_id)
        view = await reading.thread_page(session, state.viewer, thread_id, page)
    target = next(p for p in view.posts if p.id == post_id)
    form: dict[str, Any] = {"body": target.source, "title": view.thread.title}
    context = {"view": view, "target": target, "form": form}
    if request.method == "GET":
        if target.author.id != state.viewer.actor_id:
            raise NotFound(_("No such post."))
        return render(request, state, "edit.html", context)
    try:
        form = await read_form(request)
        context["form"] = form
        check_csrf(request, state, form)
        async with forum.write() as session:
            await posting.edit_post(
                session, forum.bus, state.viewer, post_id, body=form.get("body", ""),
                title=form.get("title") if target.position == 1 else None,
            )  # fmt: skip
    except ForumError as error:
        return render(
            request,
            state,
            "edit.html",
            {**context, "error": error.localized(_), "error_field": error.field},
            error.status,
        )
    return redirect(f"/p/{post_id}")


async def delete(request: Request) -> Response:
    state = await page_state(request)
    forum = forum_context(request)
    post_id = request.path_params["post_id"]
    form = await read_form(request)
    check_csrf(request, state, form)
    async with forum.write() as session:
        await posting.delete_post(session, forum.bus, state.viewer, post_id)
    return redirect(f"/p/{post_id}")


routes = [
    Route("/c/{slug}/new", new_thread, methods=["GET", "POST"], name="new_thread"),
    Route("/t/{thread_id:id}/reply", reply, methods=["POST"], name="reply"),
    Route("/p/{post_id:id}/reply", reply_form, name="reply_form"),
    Route("/p/{post_id:id}/edit", edit, methods=["GET", "POST"], name="edit"),
    Route("/p/{post_id:id}/delete", delete, methods=["POST"], name="delete"),
]
