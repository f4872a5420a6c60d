"""Pure ASGI middleware: a request id and an access log line for every request, the body size limit,
the Origin check on state-changing requests, and the last-resort error page."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from html import escape

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forum.web.security import origin_allowed

log = logging.getLogger("forum.access")
error_log = logging.getLogger("forum.errors")

SAFE_METHODS = {b"GET", b"HEAD", b"OPTIONS", "GET", "HEAD", "OPTIONS"}


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
    ) -> None:
        self.app = app
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
        headers = {k: v for k, v in scope["headers"] if k in (b"content-length", b"origin", b"host", b"accept")}
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
                status_code, detail = refusal
                await _send_problem(send_with_id, status_code, detail, request_id, headers.get(b"accept", b""))
                return
            await self.app(scope, self._limited(receive), send_with_id)
        except BodyTooLarge:
            if not response_started:
                await _send_problem(
                    send_with_id, 413, self._too_large_message(), request_id, headers.get(b"accept", b"")
                )
        except Exception:
            error_log.exception("request %s failed: %s %s", request_id, scope["method"], scope["path"])
            if not response_started:
                await _send_problem(
                    send_with_id, 500,
                    f"Something went wrong on our side. If you tell the operator, give them this id: {request_id}",
                    request_id, headers.get(b"accept", b""),
                )  # fmt: skip
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %s %d %.1fms", request_id, scope["method"], scope["path"], status,
                    (time.perf_counter() - started) * 1000,
                )  # fmt: skip

    def _too_large_message(self) -> str:
        return f"The request is larger than this forum accepts ({self.max_body_bytes:,} bytes at most)."

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return 400, "Content-Length is not a number."
            if int(length) > self.max_body_bytes:
                return 413, self._too_large_message()
        if scope["method"] not in SAFE_METHODS and not self.origin_exempt(scope["path"]):
            origin = headers.get(b"origin")
            host = headers.get(b"host")
            if not origin_allowed(
                origin.decode("latin-1") if origin is not None else None,
                self.own_origin,
                host.decode("latin-1") if host is not None else None,
            ):
                return 403, "This request came from another site's page; it was refused."
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


async def _send_problem(send: Send, status: int, detail: str, request_id: str, accept: bytes) -> None:
    """A minimal answer for refusals made before routing: problem+json, or plain HTML for browsers."""
    if b"text/html" in accept:
        body = (
            f"<!doctype html><html><head><meta charset=utf-8><title>{status}</title></head>"
            f"<body><h1>{status}</h1><p>{escape(detail)}</p><p><small>{request_id}</small></p></body></html>"
        ).encode()
        media_type = b"text/html; charset=utf-8"
    else:
        body = json.dumps(
            {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status, "detail": detail,
             "request_id": request_id}
        ).encode()  # fmt: skip
        media_type = b"application/problem+json"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", media_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


_TITLES = {400: "Bad Request", 403: "Forbidden", 413: "Content Too Large", 500: "Internal Server Error"}
