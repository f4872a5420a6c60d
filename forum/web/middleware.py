"""Pure ASGI middleware: a request id and an access log line for every request, the body size limit,
the Origin check on state-changing requests, and the last-resort error page."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from html import escape

from babel.numbers import format_decimal
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forum.errors import N_
from forum.i18n import LANGUAGES, negotiate
from forum.web.security import LANGUAGE_COOKIE, origin_allowed

log = logging.getLogger("forum.access")
error_log = logging.getLogger("forum.errors")

SAFE_METHODS = {b"GET", b"HEAD", b"OPTIONS", "GET", "HEAD", "OPTIONS"}
_READ_HEADERS = (b"content-length", b"origin", b"host", b"accept", b"accept-language", b"cookie")

_BAD_LENGTH = N_("Content-Length is not a number.")
_TOO_LARGE = N_("The request is larger than this forum accepts (%(count)s bytes at most).")
_CROSS_SITE = N_("This request came from another site's page; it was refused.")
_FAILED = N_("Something went wrong on our side. If you tell the operator, give them this id: %(id)s")


class BodyTooLarge(Exception):
    pass


class ForumMiddleware:
    """Request id, access log, body limit, Origin check and the 500 page, in one layer."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        own_origin: str,
        origin_exempt: Callable[[str], bool],
        translate: Callable[[str, str], str],
    ) -> None:
        self.app = app
        self.translate = translate
        self.max_body_bytes = max_body_bytes
        self.own_origin = own_origin
        self.origin_exempt = origin_exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(6)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 0
        headers = {k: v for k, v in scope["headers"] if k in _READ_HEADERS}
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                status_code, detail, params = refusal
                await self._send_problem(send_with_id, status_code, detail, params, request_id, headers)
                return
            await self.app(scope, self._limited(receive), send_with_id)
        except BodyTooLarge:
            if not response_started:
                await self._send_problem(
                    send_with_id, 413, _TOO_LARGE, {"count": self.max_body_bytes}, request_id, headers
                )
        except Exception:
            error_log.exception("request %s failed: %s %s", request_id, scope["method"], scope["path"])
            if not response_started:
                await self._send_problem(send_with_id, 500, _FAILED, {"id": request_id}, request_id, headers)
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %s %d %.1fms", request_id, scope["method"], scope["path"], status,
                    (time.perf_counter() - started) * 1000,
                )  # fmt: skip

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[int, str, dict[str, object]] | None:
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return 400, _BAD_LENGTH, {}
            if int(length) > self.max_body_bytes:
                return 413, _TOO_LARGE, {"count": self.max_body_bytes}
        if scope["method"] not in SAFE_METHODS and not self.origin_exempt(scope["path"]):
            origin = headers.get(b"origin")
            host = headers.get(b"host")
            if not origin_allowed(
                origin.decode("latin-1") if origin is not None else None,
                self.own_origin,
                host.decode("latin-1") if host is not None else None,
            ):
                return 403, _CROSS_SITE, {}
        return None

    def _limited(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        return limited_receive

    async def _send_problem(
        self, send: Send, status: int, template: str, params: dict[str, object], request_id: str,
        headers: dict[bytes, bytes],
    ) -> None:  # fmt: skip
        """A minimal answer for refusals made before routing: problem+json, or a plain page for browsers.

        Browsers get it in their language (the language cookie, else Accept-Language): a member's
        saved choice is not known this early.
        """
        if b"text/html" not in headers.get(b"accept", b""):
            detail = template % _numbers(params, "en")
            await _send(send, status, _problem_json(status, detail, request_id), b"application/problem+json")
            return
        language = _cookie(headers.get(b"cookie", b""), LANGUAGE_COOKIE) or negotiate(
            headers.get(b"accept-language", b"").decode("latin-1")
        )
        detail = self.translate(language, template) % _numbers(params, language)
        body = (
            f'<!doctype html><html lang="{escape(language)}"><head><meta charset=utf-8><title>{status}</title>'
            f"</head><body><h1>{status}</h1><p>{escape(detail)}</p><p><small>{request_id}</small></p></body></html>"
        ).encode()
        await _send(send, status, body, b"text/html; charset=utf-8")


def _problem_json(status: int, detail: str, request_id: str) -> bytes:
    return json.dumps(
            {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status, "detail": detail,
         "request_id": request_id}
    ).encode()  # fmt: skip


def _numbers(params: dict[str, object], language: str) -> dict[str, object]:
    """Numbers written the reader's way: 1,000,000 in English, 1 000 000 in French."""
    return {
        key: format_decimal(value, locale=language if language in LANGUAGES else "en")
        if isinstance(value, int)
        else value
        for key, value in params.items()
    }


def _cookie(header: bytes, name: str) -> str | None:
    for part in header.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _send(send: Send, status: int, body: bytes, media_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", media_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


_TITLES = {400: "Bad Request", 403: "Forbidden", 413: "Content Too Large", 500: "Internal Server Error"}
