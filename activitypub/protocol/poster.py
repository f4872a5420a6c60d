"""The deliveries' HTTP: a lean keep-alive HTTP/1.1 POST client on asyncio streams, guarded like `GuardedClient`.

Why not httpx here: a fan-out opens a connection to each of thousands of instances, and httpx with httpcore and
anyio spends several milliseconds of CPU on each such request (measured on this machine: 272 POSTs a second to
1,000 fresh connections, against 1,837 for bare asyncio streams; encode/httpx#3215). A delivery needs little of
what httpx offers: one method, no redirects (a POST is not followed), no cookies, no decoding, an excerpt of the
answer. The request head is written here (every field checked for line breaks); httptools, the C parser uvicorn
serves with, reads the answers (h11, pure Python, took a sixth of the event loop's time in a fan-out); everything
else is asyncio's.

The guard is the same as the fetching client's: every connection goes to an address `checked_addresses` let
through (resolved here, connected to as resolved: no DNS rebinding), `http://` only when private addresses are
allowed, TLS verified against the URL's host, and the whole exchange within a total deadline.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
import time
from collections import OrderedDict
from collections.abc import Mapping

import httptools
import httpx

from activitypub.protocol.addresses import FetchError, Resolver, checked_addresses, resolve_host
from activitypub.protocol.client import EXCERPT_BYTES, DeliveryResult, parse_retry_after

# An answer longer than this is not read to its end: the connection is closed instead of drained.
DRAIN_BYTES = 64_000
READ_CHUNK = 65_536
# A status line and headers longer than this are refused (h11's limit is 16 KiB).
HEAD_BYTES = 64_000
# An idle connection is not reused after this long: servers close theirs after a minute or so (nginx's
# default is 75 s), and one closed meanwhile only holds a file descriptor.
IDLE_SECONDS = 50.0
# Idle connections kept at most: a forum's fan-outs go to the same instances again and again, and a kept
# connection saves a TCP handshake on both sides (the event loop's time per delivery fell from 0.38-0.45 to
# 0.22-0.30 ms in process). Bounded by a quarter of the process's file descriptors (Lemmy keeps them all).
IDLE_MAX = 4096

Origin = tuple[str, str, int]


class _Connection:
    __slots__ = ("kept_at", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.kept_at = 0.0

    def usable(self, now: float) -> bool:
        return now - self.kept_at < IDLE_SECONDS and not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class _Answer:
    """httptools' callbacks for one answer: its status, Retry-After and the start of its body."""

    __slots__ = (
        "complete",
        "excerpt",
        "framed",
        "head_done",
        "keep_alive",
        "messages",
        "parser",
        "read",
        "retry_after",
        "status",
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.messages = 0
        self.head_done = False
        self.complete = False
        self.framed = False
        self.keep_alive = False
        self.status = 0
        self.excerpt = bytearray()
        self.read = 0
        self.retry_after: str | None = None

    def on_message_begin(self) -> None:
        self.messages += 1
        self.head_done = False
        self.framed = False
        self.retry_after = None
        self.excerpt.clear()
        self.read = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"retry-after":
            self.retry_after = value.decode("latin-1")
        elif name in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.read += len(body)
        if len(self.excerpt) < EXCERPT_BYTES:
            self.excerpt += body[: EXCERPT_BYTES - len(self.excerpt)]

    def on_message_complete(self) -> None:
        # An interim answer (100 Continue) is followed by the real one. The parser forgets the answer's
        # keep-alive once it is done with it: read here.
        if self.status >= 200:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()


class DeliveryPoster:
    """POSTs signed activities; keeps a bounded pool of idle keep-alive connections. `aclose()` at shutdown."""

    def __init__(
        self,
        *,
        allow_private: bool,
        user_agent: str,
        resolver: Resolver | None = None,
        deadline: float = 10.0,
        idle_per_origin: int = 2,
        idle_total: int | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._schemes = frozenset({"https", "http"} if allow_private else {"https"})
        self._resolver = resolver or resolve_host
        self._user_agent = user_agent
        self._deadline = deadline
        self._idle_per_origin = idle_per_origin
        self._idle_total = idle_total if idle_total is not None else idle_limit()
        self._idle: OrderedDict[Origin, list[_Connection]] = OrderedDict()
        self._idle_count = 0
        self._tls: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        """POST `body` as `application/activity+json` with `headers` (the signature's among them) to `url`."""
        origin, target, host = self._checked(url)
        fields = [
            ("Host", headers.get("Host") or host),
            ("User-Agent", self._user_agent),
            ("Content-Type", "application/activity+json"),
            ("Content-Length", str(len(body))),
            *((name, value) for name, value in headers.items() if name.lower() not in _SET_HERE),
        ]
        for name, value in fields:
            if _TOKEN.fullmatch(name) is None or _UNSAFE_VALUE.search(value) is not None or not value.isascii():
                raise FetchError(f"refused to send the header {name!r}: not a valid HTTP field")
        head = "".join([f"POST {target} HTTP/1.1\r\n", *(f"{name}: {value}\r\n" for name, value in fields), "\r\n"])
        request = head.encode("ascii") + body
        try:
            async with asyncio.timeout(self._deadline):
                connection = self._take(origin)
                if connection is not None:
                    try:
                        return await self._exchange(origin, connection, request)
                    except _Stale:
                        pass  # the peer closed a kept-alive connection before reading: try a fresh one
                connection = await self._connect(origin)
                try:
                    return await self._exchange(origin, connection, request)
                except _Stale as stale:
                    raise FetchError(f"connection closed: {stale}") from None
        except TimeoutError:
            raise FetchError(f"deadline of {self._deadline:g} s exceeded") from None
        except (OSError, ssl.SSLError, httptools.HttpParserError) as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        self._idle_count = 0

    def _checked(self, url: str) -> tuple[Origin, str, str]:
        parts = _url_parts(url)
        if parts is None:
            raise FetchError(f"invalid URL {url!r}")
        origin, target, host, has_userinfo = parts
        scheme = origin[0]
        if scheme not in self._schemes:
            allowed = " or ".join(f"{scheme}://" for scheme in sorted(self._schemes))
            raise FetchError(f"refused {scheme or 'relative'} URL {url!r}: only {allowed} is allowed")
        if not origin[1] or has_userinfo:
            raise FetchError(f"refused URL {url!r}: no host, or credentials in it")
        return origin, target, host

    def _take(self, origin: Origin) -> _Connection | None:
        connections = self._idle.get(origin)
        now = time.monotonic()
        while connections:
            connection = connections.pop()
            self._idle_count -= 1
            if connection.usable(now):
                return connection
            connection.close()
        return None

    def _keep(self, origin: Origin, connection: _Connection) -> None:
        connections = self._idle.setdefault(origin, [])
        self._idle.move_to_end(origin)
        if len(connections) >= self._idle_per_origin:
            connection.close()
            return
        now = time.monotonic()
        connection.kept_at = now
        connections.append(connection)
        self._idle_count += 1
        # The least recently used origins go first: over the bound, or idle for too long.
        while self._idle:
            oldest, kept = next(iter(self._idle.items()))
            if kept and (self._idle_count > self._idle_total or now - kept[0].kept_at >= IDLE_SECONDS):
                kept.pop(0).close()
                self._idle_count -= 1
            elif not kept:
                del self._idle[oldest]
            else:
                break

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        addresses = await checked_addresses(host, port, allow_private=self._allow_private, resolver=self._resolver)
        tls = self._tls_context() if scheme == "https" else None
        failure: OSError | None = None
        for address in addresses:
            try:
                reader, writer = await asyncio.open_connection(
                    address, port, ssl=tls, server_hostname=host if tls else None, limit=READ_CHUNK
                )
            except OSError as exc:
                failure = exc
                continue
            return _Connection(reader, writer)
        raise failure or OSError(f"no address for {host}")

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def _exchange(self, origin: Origin, connection: _Connection, request: bytes) -> DeliveryResult:
        answer = _Answer()
        received = 0
        try:
            connection.writer.write(request)
            await connection.writer.drain()
            while not answer.complete:
                data = await connection.reader.read(READ_CHUNK)
                if not data:
                    if not received:
                        raise _Stale("the peer closed the connection without answering")
                    if not answer.head_done or answer.framed:
                        raise ConnectionError("the peer closed the connection in the middle of its answer")
                    break  # an answer with neither a length nor chunks ends with its connection
                received += len(data)
                try:
                    answer.parser.feed_data(data)
                except httptools.HttpParserError:
                    if not answer.complete:
                        raise
                    answer.messages += 1  # bytes after the answer that are not one: the connection is not reused
                    break
                if not answer.head_done and received > HEAD_BYTES:
                    raise ConnectionError(f"the answer's head is longer than {HEAD_BYTES} bytes")
                if answer.read > DRAIN_BYTES:
                    break
        except ConnectionError as exc:
            connection.close()
            if not received:
                raise _Stale(str(exc) or type(exc).__name__) from None
            raise
        except BaseException:
            connection.close()
            raise
        if answer.complete and answer.messages == 1 and answer.keep_alive:
            self._keep(origin, connection)
        else:
            connection.close()
        retry_after = parse_retry_after(answer.retry_after) if answer.retry_after is not None else None
        return DeliveryResult(answer.status, retry_after, answer.excerpt.decode("utf-8", "replace"))


class _Stale(Exception):
    """The connection died before any answer: the request was not taken, so it may be sent again."""


_SET_HERE = frozenset({"host", "user-agent", "content-type", "content-length", "connection", "transfer-encoding"})


def idle_limit() -> int:
    """How many idle connections to keep: `IDLE_MAX`, or a quarter of the file descriptors this process may
    open when that is fewer (a soft limit of 1,024 is common)."""
    try:
        import resource
    except ImportError:  # not a Unix
        return 512
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return IDLE_MAX
    return max(16, min(IDLE_MAX, soft // 4))


# RFC 9110 field names are tokens; a value may hold neither a line break nor NUL (no header injection).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_VALUE = re.compile(r"[\r\n\x00]")


@functools.lru_cache(maxsize=8192)
def _url_parts(url: str) -> tuple[Origin, str, str, bool] | None:
    """(origin, request target, Host header as httpx writes it, whether the URL carries credentials), or None
    for a URL that cannot be read; cached, as a fan-out posts to the same inboxes again and again."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    # The Host header as httpx (and so `sign_request`) writes it: the port only when it is not the default.
    origin = (parsed.scheme, parsed.host, port)
    return origin, parsed.raw_path.decode("ascii"), parsed.netloc.decode("ascii"), bool(parsed.userinfo)
