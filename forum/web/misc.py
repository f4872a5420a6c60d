"""Small routes: theme static files, `/healthz`, and the error pages for domain errors."""

from __future__ import annotations

from sqlalchemy import text
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from forum.errors import N_, ForumError, RateLimited
from forum.i18n import gettext_ as _
from forum.web.base import page_state, render
from forum.web.context import forum_context


async def static(request: Request) -> Response:
    forum = forum_context(request)
    found = forum.templates.static_file(request.path_params["theme"], request.path_params["path"])
    if found is None:
        return PlainTextResponse("Not found", status_code=404)
    return FileResponse(found, headers={"Cache-Control": "public, max-age=31536000, immutable"})


async def healthz(request: Request) -> Response:
    try:
        async with forum_context(request).read() as session:
            await session.execute(text("SELECT 1"))
    except Exception:
        return PlainTextResponse("database unavailable", status_code=503)
    return PlainTextResponse("ok")


def wants_problem_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", "text/html")


def problem(status: int, detail: str, request: Request, **extra: object) -> JSONResponse:
    titles = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
              413: "Content Too Large", 422: "Unprocessable Content", 429: "Too Many Requests"}  # fmt: skip
    body = {"type": "about:blank", "title": titles.get(status, "Error"), "status": status, "detail": detail,
            "request_id": getattr(request.state, "request_id", None), **extra}  # fmt: skip
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


async def forum_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ForumError)
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, RateLimited) else {}
    if wants_problem_json(request):
        response: Response = problem(error.status, error.message, request)
    else:
        state = await page_state(request)
        response = render(request, state, "error.html", {"status": error.status, "message": error.localized(_)},
                          error.status)  # fmt: skip
    response.headers.update(headers)
    return response


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    # Marked here, translated below: the reader's language is known only after page_state.
    messages = {
        404: N_("There is nothing at this address."),
        405: N_("This address does not take that method."),
    }
    message = messages.get(error.status_code, str(error.detail))
    response: Response
    if wants_problem_json(request):
        response = problem(error.status_code, message, request)
    else:
        state = await page_state(request)
        response = render(request, state, "error.html", {"status": error.status_code, "message": _(message)},
                          error.status_code)  # fmt: skip
    # A 405 names the methods the address takes (RFC 9110).
    response.headers.update(error.headers or {})
    return response


routes = [
    Route("/static/{theme}/{path:path}", static, name="static"),
    Route("/healthz", healthz, name="healthz"),
]
