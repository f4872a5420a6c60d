"""The wrapper every API route runs in: rate limits, then the caller, then the handler; any domain
error becomes `application/problem+json` (with the field it names, `WWW-Authenticate` on 401 and
`Retry-After` on 429)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from forum.errors import ForumError, NotAuthenticated, RateLimited
from forum.web.api.auth import Caller, InvalidToken, authenticate
from forum.web.api.limits import limit_address, limit_token
from forum.web.misc import problem

Handler = Callable[[Request, Caller], Awaitable[Response]]
TITLES = {415: "Unsupported Media Type"}


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            limit_address(request)
            caller = await authenticate(request)
            limit_token(request, caller)
            return await handler(request, caller)
        except ForumError as error:
            return error_response(request, error)

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def error_response(request: Request, error: ForumError) -> Response:
    extra: dict[str, object] = {"field": error.field} if error.field else {}
    if error.status in TITLES:
        extra["title"] = TITLES[error.status]
    response = problem(error.status, error.message, request, **extra)
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after)
    elif isinstance(error, InvalidToken):
        response.headers["WWW-Authenticate"] = 'Bearer realm="api", error="invalid_token"'
    elif isinstance(error, NotAuthenticated):
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def json_response(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    response = JSONResponse(data, status_code=status_code, headers=headers)
    # Answers depend on the token; no shared cache may keep them.
    response.headers["Cache-Control"] = "private, no-store"
    return response
