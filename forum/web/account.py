"""Account pages: first-run setup, register, log in, log out, settings (language, theme, API tokens)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forum import i18n
from forum.cache import mark_stale
from forum.errors import ForumError, InvalidInput
from forum.i18n import gettext_ as _
from forum.models import Member
from forum.ratelimit import address_key
from forum.services import accounts, site
from forum.web.base import (
    PageState,
    address,
    check_csrf,
    page_state,
    parse_id,
    read_form,
    redirect,
    render,
    safe_next,
    session_cookie_value,
)
from forum.web.context import ForumContext, forum_context
from forum.web.security import LANGUAGE_COOKIE, SESSION_COOKIE

KEPT_FIELDS = ("username", "email", "next", "code")


def _kept(form: dict[str, str]) -> dict[str, str]:
    """What a refused form shows again: everything but the password."""
    return {key: form.get(key, "") for key in KEPT_FIELDS}


def _log_in(request: Request, response: Response, session_id: str) -> Response:
    forum = forum_context(request)
    response.set_cookie(
        SESSION_COOKIE, session_cookie_value(forum, session_id), httponly=True, samesite="lax",
        secure=forum.settings.secure_cookies, path="/", max_age=int(accounts.SESSION_LIFETIME.total_seconds()),
    )  # fmt: skip
    return response


async def register(request: Request) -> Response:
    state = await page_state(request)
    forum = forum_context(request)
    if request.method == "GET":
        return render(request, state, "register.html", {"form": {"next": request.query_params.get("next", "")}})
    form: dict[str, str] = {}
    try:
        form = await read_form(request)
        check_csrf(request, state, form)
        limits = forum.settings.rate_limits
        forum.limiter.hit(
            "register", f"address:{_address_key(request)}", limits.register_per_address, limits.register_window,
            _("Too many accounts were made from your address. Try again later."),
        )  # fmt: skip
        async with forum.write() as session:
            member = await accounts.register(
                session, forum.settings.base_url, username=form.get("username", ""), email=form.get("email", ""),
                password=form.get("password", ""), language=state.language,
            )  # fmt: skip
            session_id = await accounts.start_session(session, member, request.headers.get("user-agent", ""))
    except ForumError as error:
        return _refused(request, state, "register.html", form, error)
    return _log_in(request, redirect(safe_next(form.get("next"))), session_id)


async def login(request: Request) -> Response:
    state = await page_state(request)
    forum = forum_context(request)
    if request.method == "GET":
        if state.viewer.is_member:
            return redirect("/")
        return render(request, state, "login.html", {"form": {"next": request.query_params.get("next", "")}})
    form: dict[str, str] = {}
    try:
        form = await read_form(request)
        check_csrf(request, state, form)
        name = form.get("username", "").strip()
        limits = forum.settings.rate_limits
        message = _("Too many login attempts. Wait a few minutes and try again.")
        forum.limiter.hit(
            "login",
            f"address:{_address_key(request)}",
            limits.login_per_address,
            limits.login_window,
            message,
        )
        forum.limiter.hit(
            "login", f"account:{await _account_key(forum, name)}", limits.login_per_account, limits.login_window,
            message,
        )  # fmt: skip
        async with forum.write() as session:
            member = await accounts.authenticate(session, name, form.get("password", ""))
            if member is None:
                raise InvalidInput(_("That name and password do not match an account."), field="password")
            session_id = await accounts.start_session(session, member, request.headers.get("user-agent", ""))
    except ForumError as error:
        return _refused(request, state, "login.html", form, error)
    return _log_in(request, redirect(safe_next(form.get("next"))), session_id)


async def logout(request: Request) -> Response:
    state = await page_state(request)
    forum = forum_context(request)
    form = await read_form(request)
    check_csrf(request, state, form)
    if state.session_id is not None:
        async with forum.write() as session:
            await accounts.end_session(session, state.session_id)
            mark_stale(session, f"s:{state.session_id}")
    response = redirect("/")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def setup(request: Request) -> Response:
    """First run: create the admin account with the code `forum serve` printed."""
    state = await page_state(request)
    forum = forum_context(request)
    async with forum.read() as session:
        if not await site.needs_setup(session):
            return redirect("/")
    if request.method == "GET":
        return render(request, state, "setup.html", {"form": {}})
    form: dict[str, str] = {}
    try:
        form = await read_form(request)
        check_csrf(request, state, form)
        forum.limiter.hit("setup", f"address:{_address_key(request)}", 10, 3600, _("Too many attempts."))
        async with forum.write() as session:
            member = await site.complete_setup(
                session, forum.settings.base_url, code=form.get("code", ""), username=form.get("username", ""),
                email=form.get("email", ""), password=form.get("password", ""), language=state.language,
            )  # fmt: skip
            session_id = await accounts.start_session(session, member, request.headers.get("user-agent", ""))
    except ForumError as error:
        return _refused(request, state, "setup.html", form, error)
    return _log_in(request, redirect("/admin"), session_id)


async def settings_page(request: Request) -> Response:
    state = await page_state(request)
    forum = forum_context(request)
    if not state.viewer.is_member:
        return redirect("/login?next=/settings")
    assert state.viewer.member_id is not None
    context: dict[str, Any] = {"saved_notice": request.query_params.get("saved") == "1"}
    status = 200
    async with forum.write() as session:
        member = await session.get(Member, state.viewer.member_id)
        assert member is not None
        if request.method == "POST":
            try:
                form = await read_form(request)
                check_csrf(request, state, form)
                action = form.get("action")
                if action == "preferences":
                    theme = form.get("theme", "")
                    if theme and theme not in forum.templates.themes:
                        raise InvalidInput(_("Pick one of the installed themes."), field="theme")
                    await accounts.set_preferences(session, member, language=form.get("language"), theme=theme)
                    mark_stale(session, f"m:{member.id}")
                    context["saved"] = True
                elif action == "create_token":
                    _token, plain = await accounts.create_token(session, member, form.get("name", ""))
                    context["new_token"] = plain
                elif action == "revoke_token":
                    token_id = parse_id(form.get("token_id"))
                    if token_id is None:
                        raise InvalidInput(_("No such token."))
                    await accounts.revoke_token(session, member, token_id)
                else:
                    raise InvalidInput(_("Unknown action."))
            except ForumError as error:
                context.update(error=error.localized(_), error_field=error.field)
                status = error.status
        context["member"] = member
        context["tokens"] = await accounts.list_tokens(session, member)
    if context.get("saved"):
        return redirect("/settings?saved=1")
    return render(request, state, "settings.html", context, status)


async def choose_language(request: Request) -> Response:
    """`/lang/fr?next=/t/3`: a visitor's language, kept in a cookie (a member's is in settings)."""
    language = request.path_params["language"]
    if language not in i18n.LANGUAGES:
        language = i18n.DEFAULT_LANGUAGE
    response = redirect(safe_next(request.query_params.get("next")))
    response.set_cookie(LANGUAGE_COOKIE, language, max_age=60 * 60 * 24 * 365, samesite="lax", path="/")
    return response


def _refused(request: Request, state: PageState, template: str, form: dict[str, str], error: ForumError) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if hasattr(error, "retry_after") else {}
    response = render(
        request, state, template, {"form": _kept(form), "error": error.localized(_), "error_field": error.field},
        error.status,
    )  # fmt: skip
    response.headers.update(headers)
    return response


async def _account_key(forum: ForumContext, name: str) -> str:
    """One counter per account, whether it is named by username or by email address."""
    if "@" in name:
        async with forum.read() as session:
            member = await accounts.find_member(session, name)
        if member is not None:
            return member.actor.username_key
    return name.lower()


def _address_key(request: Request) -> str:
    return address_key(address(request))


routes = [
    Route("/setup", setup, methods=["GET", "POST"], name="setup"),
    Route("/register", register, methods=["GET", "POST"], name="register"),
    Route("/login", login, methods=["GET", "POST"], name="login"),
    Route("/logout", logout, methods=["POST"], name="logout"),
    Route("/settings", settings_page, methods=["GET", "POST"], name="settings"),
    Route("/lang/{language}", choose_language, name="language"),
]
