"""`/admin`: the instance's name, description, rules and theme; creating, editing and ordering categories."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forum.errors import ForumError, InvalidInput
from forum.i18n import gettext_ as _
from forum.permissions import Viewer, require_admin
from forum.services import categories as category_service
from forum.services import site
from forum.web.base import check_csrf, page_state, parse_id, read_form, redirect, render
from forum.web.context import forum_context


async def admin(request: Request) -> Response:
    state = await page_state(request)
    forum = forum_context(request)
    if not state.viewer.is_member:
        return redirect("/login?next=/admin")
    require_admin(state.viewer)
    context: dict[str, Any] = {"form": {}, "saved_notice": request.query_params.get("saved") == "1"}
    status = 200
    if request.method == "POST":
        form: dict[str, str] = {}
        try:
            form = await read_form(request)
            context["form"] = form
            check_csrf(request, state, form)
            async with forum.write() as session:
                await _apply(session, forum, form)
            return redirect("/admin?saved=1")
        except ForumError as error:
            context.update(error=error.localized(_), error_field=error.field, failed_action=form.get("action"))
            status = error.status
    async with forum.read() as session:
        context["categories"] = await category_service.list_categories(session, state.viewer)
        context["settings"] = await site.load_site(session, forum.settings.theme)
    return render(request, state, "admin.html", context, status)


async def _apply(session: Any, forum: Any, form: dict[str, str]) -> None:
    action = form.get("action")
    if action == "site":
        await site.save_site(
            session, forum.bus, name=form.get("name", ""), description=form.get("description", ""),
            rules=form.get("rules", ""), theme=form.get("theme", "default"), themes=list(forum.templates.themes),
        )  # fmt: skip
    elif action == "create_category":
        await category_service.create_category(
            session, forum.bus, forum.settings.base_url, slug=form.get("slug", ""), name=form.get("name", ""),
            description=form.get("description", ""), private=form.get("private") == "on",
            approve_followers=form.get("approve_followers") == "on",
        )  # fmt: skip
    elif action in ("update_category", "move_up", "move_down"):
        category_id = str(parse_id(form.get("category_id")) or "")
        if not category_id:
            raise InvalidInput(_("No such category."))
        if action == "update_category":
            category = await category_service.get_category(session, _admin_viewer(), int(category_id))
            await category_service.update_category(
                session, forum.bus, category, name=form.get("name", ""), description=form.get("description", ""),
                private=form.get("private") == "on", approve_followers=form.get("approve_followers") == "on",
            )  # fmt: skip
        else:
            await category_service.move_category(session, forum.bus, int(category_id), -1 if action == "move_up" else 1)
    else:
        raise InvalidInput(_("Unknown action."))


def _admin_viewer() -> Viewer:
    return Viewer(member_id=0, is_admin=True)


routes = [Route("/admin", admin, methods=["GET", "POST"], name="admin")]
