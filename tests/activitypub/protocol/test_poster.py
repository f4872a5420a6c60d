"""The deliveries' HTTP client (`DeliveryPoster`) against real HTTP servers on 127.0.0.1.

As in test_client, a tripwire in front of `asyncio.open_connection` records every connection the poster tries
and refuses any address outside 127.0.0.0/8, so a broken guard fails a test instead of sending a packet.
"""

from __future__ import annotations

import asyncio
import ipaddress
import resource
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from activitypub.protocol import poster as poster_module
from activitypub.protocol.client import AddressRefused, FetchError
from activitypub.protocol.poster import DeliveryPoster
from activitypub.protocol.signatures import SigningKey, sign_request, verify_request
from tests.activitypub.protocol.test_client import REFUSED, Inbox, Resolver, drip, endless_answer, inbox_redirect


class Peer:
    def __init__(self, origin: str, inbox: Inbox, headers: list[dict[str, str]]) -> None:
        self.origin = origin
        self.inbox = inbox
        self.headers = headers


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    inbox = Inbox()
    seen: list[dict[str, str]] = []

    async def record(request: Request) -> Response:
        seen.append(dict(request.headers))
        return await inbox.post(request)

    app = Starlette(
        routes=[
            Route("/inbox", record, methods=["POST"]),
            Route("/endless", endless_answer, methods=["POST"]),
            Route("/inbox-redirect", inbox_redirect, methods=["POST"]),
            Route("/drip", drip, methods=["POST"]),
        ]
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", timeout_keep_alive=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Peer(f"http://127.0.0.1:{port}", inbox, seen)
    server.should_exit = True
    await task


@pytest.fixture(autouse=True)
def attempts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    tried: list[tuple[str, int]] = []
    connect = asyncio.open_connection

    async def tripwire(host: Any, port: int, **options: Any) -> Any:
        tried.append((str(host), port))
        address = ipaddress.ip_address(str(host))
        if not (isinstance(address, ipaddress.IPv4Address) and address in ipaddress.IPv4Network("127.0.0.0/8")):
            raise OSError(f"the tests forbid connecting to {host}")
        return await connect(host, port, **options)

    monkeypatch.setattr(asyncio, "open_connection", tripwire)
    yield tried


@pytest.fixture
async def poster() -> AsyncIterator[DeliveryPoster]:
    lab = DeliveryPoster(allow_private=True, user_agent="Jardin-test/1.0", deadline=3.0)
    yield lab
    await lab.aclose()


async def test_signed_post_arrives_verifiable(poster: DeliveryPoster, peer: Peer) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    key = SigningKey("https://forum.example/c/general#main-key", pem)
    body = b'{"type": "Follow"}'
    for form in ("cavage", "rfc9421"):
        url = f"{peer.origin}/inbox"
        result = await poster.post(url, body, sign_request("POST", url, {}, body, key, form=form))
        assert (result.status, result.retry_after, result.body_excerpt) == (202, None, "thanks")
        received = peer.headers[-1]
        assert received["content-type"] == "application/activity+json"
        assert received["user-agent"] == "Jardin-test/1.0"
        verified = verify_request("POST", "/inbox", received, body, public, scheme="http")
        assert verified.key_id == key.key_id
    assert peer.inbox.received[-1] == ("application/activity+json", body)


async def test_connection_kept_alive_and_renewed_when_the_peer_closed_it(
    poster: DeliveryPoster, peer: Peer, attempts: list[tuple[str, int]]
) -> None:
    for _ in range(3):
        assert (await poster.post(f"{peer.origin}/inbox", b"{}", {})).status == 202
    assert len(attempts) == 1
    await asyncio.sleep(1.5)  # past the peer's keep-alive timeout: it closes the idle connection
    assert (await poster.post(f"{peer.origin}/inbox", b"{}", {})).status == 202
    assert len(attempts) == 2


async def test_status_and_retry_after_reported(poster: DeliveryPoster, peer: Peer) -> None:
    result = await poster.post(f"{peer.origin}/inbox?status=429&retry_after=120", b"{}", {})
    assert (result.status, result.retry_after) == (429, 120.0)
    result = await poster.post(f"{peer.origin}/inbox?status=410", b"{}", {})
    assert result.status == 410


async def test_redirect_not_followed(poster: DeliveryPoster, peer: Peer) -> None:
    peer.inbox.received.clear()
    result = await poster.post(f"{peer.origin}/inbox-redirect", b"{}", {})
    assert result.status == 307
    assert peer.inbox.received == []


async def test_endless_answer_cut_to_an_excerpt(poster: DeliveryPoster, peer: Peer) -> None:
    started = time.monotonic()
    result = await poster.post(f"{peer.origin}/endless", b"{}", {})
    assert result.status == 202
    assert 0 < len(result.body_excerpt) <= 4096
    assert time.monotonic() - started < 2.0


async def test_dripping_answer_cut_at_the_deadline(peer: Peer) -> None:
    slow = DeliveryPoster(allow_private=True, user_agent="t", deadline=0.5)
    started = time.monotonic()
    with pytest.raises(FetchError, match="deadline"):
        await slow.post(f"{peer.origin}/drip", b"{}", {})
    assert time.monotonic() - started < 1.5
    await slow.aclose()


@pytest.mark.parametrize("address", REFUSED)
async def test_refused_addresses_never_connected(address: str, attempts: list[tuple[str, int]]) -> None:
    resolver = Resolver({"evil.example": [[address]]})
    guarded = DeliveryPoster(allow_private=False, user_agent="t", resolver=resolver)
    with pytest.raises(AddressRefused, match=r"evil\.example"):
        await guarded.post("https://evil.example/inbox", b"{}", {})
    assert resolver.calls == ["evil.example"]
    assert attempts == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/inbox", "https://[::ffff:127.0.0.1]/inbox", "https://[64:ff9b::7f00:1]/inbox"]
)
async def test_private_urls_refused_outside_labs(url: str, attempts: list[tuple[str, int]]) -> None:
    guarded = DeliveryPoster(allow_private=False, user_agent="t", resolver=Resolver({}))
    with pytest.raises(FetchError):
        await guarded.post(url, b"{}", {})
    assert attempts == []


async def test_closed_port_is_a_fetch_error(poster: DeliveryPoster) -> None:
    with pytest.raises(FetchError):
        await poster.post("http://127.0.0.1:9/inbox", b"{}", {})


async def test_unknown_name_is_a_fetch_error() -> None:
    guarded = DeliveryPoster(allow_private=False, user_agent="t", resolver=Resolver({}))
    with pytest.raises(FetchError, match=r"nowhere\.example"):
        await guarded.post("https://nowhere.example/inbox", b"{}", {})


async def test_header_with_a_line_break_refused_before_connecting(
    poster: DeliveryPoster, peer: Peer, attempts: list[tuple[str, int]]
) -> None:
    for headers in (
        {"Signature": 'keyId="k"\r\nX-Injected: yes'},
        {"Bad Name": "x"},
        {"Date": "Mon\x00"},
        {"Date": "lundi é"},
    ):
        with pytest.raises(FetchError, match="not a valid HTTP field"):
            await poster.post(f"{peer.origin}/inbox", b"{}", headers)
    assert attempts == []
    assert peer.headers == []


class RawPeer:
    """A peer that answers each request with the bytes it was given, then closes or keeps the connection."""

    def __init__(self, answer: bytes, close: bool) -> None:
        self.answer = answer
        self.close = close
        self.requests: list[bytes] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
                             .partition(b":")[2])  # fmt: skip
                self.requests.append(head + await reader.readexactly(length))
                writer.write(self.answer)
                await writer.drain()
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


async def _raw_peer(answer: bytes, *, close: bool) -> tuple[RawPeer, asyncio.Server]:
    raw = RawPeer(answer, close)
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    raw.port = server.sockets[0].getsockname()[1]
    return raw, server


@pytest.mark.parametrize(
    ("answer", "close", "status", "excerpt", "connections"),
    [
        # No length: the answer ends with its connection, which is not kept.
        (b"HTTP/1.1 202 Accepted\r\n\r\nqueued", True, 202, "queued", 2),
        # An interim 100 Continue, then the answer.
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", False, 201, "ok", 2),
        # HTTP/1.0 without keep-alive: closed after it.
        (b"HTTP/1.0 202 Accepted\r\nContent-Length: 0\r\n\r\n", True, 202, "", 2),
        # Chunked, kept alive: one connection for both requests.
        (b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", False, 202, "ok", 1),
    ],
)
async def test_answers_read_whatever_their_framing(
    poster: DeliveryPoster,
    attempts: list[tuple[str, int]],
    answer: bytes,
    close: bool,
    status: int,
    excerpt: str,
    connections: int,
) -> None:
    raw, server = await _raw_peer(answer, close=close)
    async with server:
        for _ in range(2):
            result = await poster.post(f"http://127.0.0.1:{raw.port}/inbox", b'{"a":1}', {"Date": "today"})
            assert (result.status, result.body_excerpt) == (status, excerpt)
    assert len(attempts) == connections
    assert raw.requests[0].startswith(b"POST /inbox HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nDate: today\r\n" in raw.requests[0]
    assert raw.requests[0].endswith(b'\r\n\r\n{"a":1}')


@pytest.mark.parametrize(
    "answer",
    [b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nshort", b"HTTP/1.1 2"],
)
async def test_broken_answers_are_fetch_errors(poster: DeliveryPoster, answer: bytes) -> None:
    raw, server = await _raw_peer(answer, close=True)
    async with server:
        with pytest.raises(FetchError):
            await poster.post(f"http://127.0.0.1:{raw.port}/inbox", b"{}", {})


async def test_endless_head_refused(poster: DeliveryPoster) -> None:
    raw, server = await _raw_peer(b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * 100_000 + b"\r\n\r\n", close=True)
    async with server:
        with pytest.raises(FetchError, match="head is longer"):
            await poster.post(f"http://127.0.0.1:{raw.port}/inbox", b"{}", {})


KEPT_ALIVE = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"


async def test_idle_connections_kept_within_their_bound_least_recently_used_first(
    attempts: list[tuple[str, int]],
) -> None:
    first, first_server = await _raw_peer(KEPT_ALIVE, close=False)
    second, second_server = await _raw_peer(KEPT_ALIVE, close=False)
    poster = DeliveryPoster(allow_private=True, user_agent="t", idle_total=1)
    async with first_server, second_server:
        for port in (first.port, first.port, second.port, second.port, first.port):
            assert (await poster.post(f"http://127.0.0.1:{port}/inbox", b"{}", {})).status == 202
    await poster.aclose()
    # Kept for its next request; then the second peer's connection took the only place, so the first peer's
    # third request needed a new one.
    assert [port for _host, port in attempts] == [first.port, second.port, first.port]


async def test_idle_connections_not_reused_after_a_while(
    attempts: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(poster_module, "IDLE_SECONDS", 0.2)
    peer, server = await _raw_peer(KEPT_ALIVE, close=False)
    poster = DeliveryPoster(allow_private=True, user_agent="t")
    async with server:
        for pause in (0.0, 0.0, 0.3):
            await asyncio.sleep(pause)
            assert (await poster.post(f"http://127.0.0.1:{peer.port}/inbox", b"{}", {})).status == 202
    await poster.aclose()
    assert len(attempts) == 2


def test_idle_connections_bounded_by_the_file_descriptors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, 4096))
    assert poster_module.idle_limit() == 256
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1_000_000, 1_000_000))
    assert poster_module.idle_limit() == poster_module.IDLE_MAX
