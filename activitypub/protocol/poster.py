"""The deliveries' HTTP: a lean keep-alive HTTP/1.1 POST client on asyncio streams, guarded like `GuardedClient`.

Why not httpx here: a fan-out opens a connection to each of thousands of instances, and httpx with httpcore and
anyio spends several milliseconds of CPU on each such request (measured on this machine: 272 POSTs a second to
1,000 fresh connections, against 1,837 for bare asyncio streams; encode/httpx#3215). A delivery needs little of
what httpx offers: one method, no redirects (a POST is not followed), no cookies, no decoding, an excerpt of the
answer. h11, the HTTP/1.1 state machine httpcore itself uses, reads the answers; everything else is asyncio's.

The guard is the same as the fetching client's: every connection goes to an address `checked_addresses` let
through (resolved here, connected to as resolved: no DNS rebinding), `http://` only when private addresses are
allowed, TLS verified against the URL's host, and the whole exchange within a total deadline.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict
from collections.abc import Mapping

import h11
import httpx

from activitypub.protocol.addresses import FetchError, Resolver, checked_addresses, resolve_host
from activitypub.protocol.client import EXCERPT_BYTES, DeliveryResult, parse_retry_after

# An answer longer than this is not read to its end: the connection is closed instead of drained.
DRAIN_BYTES = 64_000
READ_CHUNK = 65_536

Origin = tuple[str, str, int]


class _Connection:
    __slots__ = ("http", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.http = h11.Connection(our_role=h11.CLIENT)

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof() and self.http.our_state is h11.IDLE

    def close(self) -> None:
        self.writer.close()


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
        idle_total: int = 512,
    ) -> None:
        self._allow_private = allow_private
        self._schemes = frozenset({"https", "http"} if allow_private else {"https"})
        self._resolver = resolver or resolve_host
        self._user_agent = user_agent
        self._deadline = deadline
        self._idle_per_origin = idle_per_origin
        self._idle_total = idle_total
        self._idle: OrderedDict[Origin, list[_Connection]] = OrderedDict()
        self._idle_count = 0
        self._tls: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        """POST `body` as `application/activity+json` with `headers` (the signature's among them) to `url`."""
        origin, target, host = self._checked(url)
        request = h11.Request(
            method="POST",
            target=target,
            headers=[
                ("Host", headers.get("Host") or host),
                ("User-Agent", self._user_agent),
                ("Content-Type", "application/activity+json"),
                ("Content-Length", str(len(body))),
                *((name, value) for name, value in headers.items() if name.lower() not in _SET_HERE),
            ],
        )
        try:
            async with asyncio.timeout(self._deadline):
                connection = self._take(origin)
                if connection is not None:
                    try:
                        return await self._exchange(origin, connection, request, body)
                    except _Stale:
                        pass  # the peer closed a kept-alive connection before reading: try a fresh one
                connection = await self._connect(origin)
                try:
                    return await self._exchange(origin, connection, request, body)
                except _Stale as stale:
                    raise FetchError(f"connection closed: {stale}") from None
        except TimeoutError:
            raise FetchError(f"deadline of {self._deadline:g} s exceeded") from None
        except (OSError, ssl.SSLError, h11.ProtocolError) as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        self._idle_count = 0

    def _checked(self, url: str) -> tuple[Origin, str, str]:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise FetchError(f"invalid URL {url!r}") from None
        if parsed.scheme not in self._schemes:
            allowed = " or ".join(f"{scheme}://" for scheme in sorted(self._schemes))
            raise FetchError(f"refused {parsed.scheme or 'relative'} URL {url!r}: only {allowed} is allowed")
        if not parsed.host or parsed.userinfo:
            raise FetchError(f"refused URL {url!r}: no host, or credentials in it")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        # The Host header as httpx (and so `sign_request`) writes it: the port only when it is not the default.
        return (parsed.scheme, parsed.host, port), parsed.raw_path.decode("ascii"), parsed.netloc.decode("ascii")

    def _take(self, origin: Origin) -> _Connection | None:
        connections = self._idle.get(origin)
        while connections:
            connection = connections.pop()
            self._idle_count -= 1
            if connection.usable():
                return connection
            connection.close()
        return None

    def _keep(self, origin: Origin, connection: _Connection) -> None:
        connections = self._idle.setdefault(origin, [])
        self._idle.move_to_end(origin)
        if len(connections) >= self._idle_per_origin:
            connection.close()
            return
        connections.append(connection)
        self._idle_count += 1
        while self._idle_count > self._idle_total:
            oldest, kept = next(iter(self._idle.items()))
            if kept:
                kept.pop(0).close()
                self._idle_count -= 1
            if not kept:
                del self._idle[oldest]

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

    async def _exchange(
        self, origin: Origin, connection: _Connection, request: h11.Request, body: bytes
    ) -> DeliveryResult:
        http = connection.http
        answered = False
        try:
            connection.writer.write(http.send(request) + http.send(h11.Data(data=body)) + http.send(h11.EndOfMessage()))
            await connection.writer.drain()
            response: h11.Response | None = None
            excerpt = bytearray()
            read = 0
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    data = await connection.reader.read(READ_CHUNK)
                    if not data and response is None:
                        raise _Stale("the peer closed the connection without answering")
                    http.receive_data(data)
                    continue
                if isinstance(event, h11.Response):
                    response, answered = event, True
                elif isinstance(event, h11.Data):
                    read += len(event.data)
                    if len(excerpt) < EXCERPT_BYTES:
                        excerpt += event.data[: EXCERPT_BYTES - len(excerpt)]
                    if read > DRAIN_BYTES:
                        break
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
        except (ConnectionError, h11.RemoteProtocolError) as exc:
            connection.close()
            if not answered:
                raise _Stale(str(exc) or type(exc).__name__) from None
            raise
        except BaseException:
            connection.close()
            raise
        assert response is not None
        if http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()
            self._keep(origin, connection)
        else:
            connection.close()
        retry_after = None
        for name, value in response.headers:
            if name == b"retry-after":
                retry_after = parse_retry_after(value.decode("latin-1"))
        return DeliveryResult(response.status_code, retry_after, excerpt.decode("utf-8", "replace"))


class _Stale(Exception):
    """The connection died before any answer: the request was not taken, so it may be sent again."""


_SET_HERE = frozenset({"host", "user-agent", "content-type", "content-length", "connection", "transfer-encoding"})
