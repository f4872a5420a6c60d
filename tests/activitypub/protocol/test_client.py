"""The guarded client against real HTTP servers on 127.0.0.1 and 127.0.0.2.

No test may reach an address outside 127.0.0.0/8: an autouse tripwire in front of the socket layer records every
connection attempt and refuses any other address, so a broken guard fails a test instead of sending a packet.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from activitypub.protocol.client import (
    ACTIVITY_ACCEPT,
    JSON_ACCEPT,
    JSON_TYPES,
    AddressRefused,
    FetchError,
    GuardedClient,
    parse_json_object,
    parse_retry_after,
)

AS = "application/activity+json"
REFUSED = [
    "127.0.0.1",
    "::1",
    "::ffff:127.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::",
    "10.1.2.3",
    "100.64.0.1",
    "169.254.1.1",
    "fe80::1",
    "fc00::1",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "ff02::1",
    "2001:db8::1",
    "198.18.0.1",
    "192.0.2.1",
]


# --- the fake peer: one Starlette app served on 127.0.0.1 and on 127.0.0.2 ---------------------------------------


def activity(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(document), status_code=status, media_type=AS, headers=headers)


def echo(request: Request, **extra: Any) -> dict[str, Any]:
    """A Note whose id is the URL asked, telling what the request carried."""
    seen = {name: request.headers.get(name) for name in ("host", "accept", "user-agent", "signature", "cookie")}
    return {"id": str(request.url), "type": "Note", **seen, **extra}


async def note(request: Request) -> Response:
    return activity(echo(request))


async def note_then_close(request: Request) -> Response:
    return activity(echo(request), headers={"Connection": "close"})


async def set_cookie(request: Request) -> Response:
    return activity(echo(request), headers={"Set-Cookie": "session=peer-state; Path=/"})


async def typed(request: Request) -> Response:
    return Response(json.dumps(echo(request)), headers={"Content-Type": request.query_params["type"]})


async def sized(request: Request) -> Response:
    return Response(b" " * int(request.query_params["n"]), media_type=AS)


async def streamed(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(int(request.query_params["n"]) // 65536):
            yield b" " * 65536

    return StreamingResponse(chunks(), media_type=AS)


async def gzipped(request: Request) -> Response:
    body = gzip.compress(json.dumps(echo(request)).encode())
    return Response(body, media_type=AS, headers={"Content-Encoding": "gzip"})


GZIP_BOMB = gzip.compress(b" " * 20_000_000)  # 20 MB that travel as 20 kB


async def gzip_bomb(request: Request) -> Response:
    return Response(GZIP_BOMB, media_type=AS, headers={"Content-Encoding": "gzip"})


async def drip(request: Request) -> Response:
    async def bytes_slowly() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" "
            await asyncio.sleep(0.2)

    return StreamingResponse(bytes_slowly(), media_type=AS)


async def redirect_chain(request: Request) -> Response:
    left = int(request.path_params["left"])
    if left == 0:
        return activity(echo(request))
    return RedirectResponse(f"/redirect/{left - 1}", status_code=302)


async def redirect_to(request: Request) -> Response:
    return RedirectResponse(request.query_params["location"], status_code=302)


async def claims(request: Request) -> Response:
    return activity({"id": request.query_params["id"], "type": "Note", "content": "served by " + request.url.netloc})


async def deep(request: Request) -> Response:
    levels = int(request.query_params["levels"])
    return Response('{"a":' * levels + "1" + "}" * levels, media_type=AS)


async def status(request: Request) -> Response:
    return activity({}, status=int(request.path_params["code"]))


@dataclass
class Inbox:
    received: list[tuple[str, bytes]] = field(default_factory=list)

    async def post(self, request: Request) -> Response:
        self.received.append((request.headers.get("content-type", ""), await request.body()))
        headers = {"Retry-After": request.query_params["retry_after"]} if "retry_after" in request.query_params else {}
        return Response("thanks", status_code=int(request.query_params.get("status", "202")), headers=headers)


async def endless_answer(request: Request) -> Response:
    async def forever() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 1024
            await asyncio.sleep(0)

    return StreamingResponse(forever(), status_code=202)


async def inbox_redirect(request: Request) -> Response:
    return RedirectResponse("/inbox", status_code=307)


@dataclass
class Peer:
    a: str  # http://127.0.0.1:PORT
    b: str  # http://127.0.0.2:PORT
    a_port: int
    inbox: Inbox


async def start(app: Starlette, host: str) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    config = uvicorn.Config(
        app, host=host, port=0, log_level="warning", lifespan="off", ws="none", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port: int = server.servers[0].sockets[0].getsockname()[1]
    return server, task, port


@pytest.fixture(scope="module")
async def peer() -> AsyncIterator[Peer]:
    inbox = Inbox()
    routes = [
        Route("/note", note),
        Route("/note-close", note_then_close),
        Route("/set-cookie", set_cookie),
        Route("/typed", typed),
        Route("/sized", sized),
        Route("/streamed", streamed),
        Route("/gzip", gzipped),
        Route("/gzip-bomb", gzip_bomb),
        Route("/drip", drip),
        Route("/redirect/{left:int}", redirect_chain),
        Route("/redirect-to", redirect_to),
        Route("/claims", claims),
        Route("/deep", deep),
        Route("/status/{code:int}", status),
        Route("/inbox", inbox.post, methods=["POST"]),
        Route("/endless", endless_answer, methods=["POST"]),
        Route("/inbox-redirect", inbox_redirect, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    server_a, task_a, port_a = await start(app, "127.0.0.1")
    server_b, task_b, port_b = await start(app, "127.0.0.2")
    yield Peer(f"http://127.0.0.1:{port_a}", f"http://127.0.0.2:{port_b}", port_a, inbox)
    server_a.should_exit = server_b.should_exit = True
    await asyncio.gather(task_a, task_b)


@dataclass
class Listener:
    """A bare TCP server that only counts the connections it accepts."""

    port: int = 0
    accepted: int = 0


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    counted = Listener()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counted.accepted += 1
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    counted.port = server.sockets[0].getsockname()[1]
    async with server:
        yield counted


@pytest.fixture(autouse=True)
def attempts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Every TCP connection the client tries, as (address, port); only 127.0.0.0/8 is really connected."""
    tried: list[tuple[str, int]] = []
    connect = anyio.connect_tcp

    async def tripwire(remote_host: Any, remote_port: int, **options: Any) -> Any:
        tried.append((str(remote_host), remote_port))
        address = ipaddress.ip_address(str(remote_host))
        if not (isinstance(address, ipaddress.IPv4Address) and address in ipaddress.IPv4Network("127.0.0.0/8")):
            raise OSError(f"the tests forbid connecting to {remote_host}")
        return await connect(remote_host, remote_port, **options)

    monkeypatch.setattr(anyio, "connect_tcp", tripwire)
    yield tried


class Resolver:
    """A resolver answering from a table; each name's answers are used in turn, the last one repeating."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answers = self.table.get(host)
        if answers is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[min(len(self.calls) - 1, len(answers) - 1)]


@pytest.fixture
async def lab() -> AsyncIterator[GuardedClient]:
    async with GuardedClient(allow_private=True, user_agent="Jardin-test/1.0", deadline=5.0) as client:
        yield client


# --- refused before any connection -------------------------------------------------------------------------------


@pytest.mark.parametrize("address", REFUSED)
async def test_name_resolving_to_refused_address_is_never_connected(
    address: str, listener: Listener, attempts: list[tuple[str, int]]
) -> None:
    resolver = Resolver({"evil.example": [[address]]})
    async with GuardedClient(allow_private=False, user_agent="t", resolver=resolver) as client:
        with pytest.raises(AddressRefused, match=r"evil\.example"):
            await client.fetch_object(f"https://evil.example:{listener.port}/x")
    assert resolver.calls == ["evil.example"]
    assert attempts == []
    assert listener.accepted == 0


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1:{port}/", "https://[::ffff:127.0.0.1]:{port}/", "https://[::1]:{port}/"]
)
async def test_ip_literals_checked_without_resolving(url: str, listener: Listener, attempts: list[Any]) -> None:
    resolver = Resolver({})
    async with GuardedClient(allow_private=False, user_agent="t", resolver=resolver) as client:
        with pytest.raises(AddressRefused, match="refused address"):
            await client.get(url.format(port=listener.port))
    assert resolver.calls == []
    assert attempts == []
    assert listener.accepted == 0


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:{port}/", "http://[::ffff:127.0.0.1]:{port}/", "http://peer.example/"]
)
async def test_plain_http_refused_outside_labs(url: str, listener: Listener, attempts: list[Any]) -> None:
    resolver = Resolver({"peer.example": [["1.1.1.1"]]})
    async with GuardedClient(allow_private=False, user_agent="t", resolver=resolver) as client:
        with pytest.raises(AddressRefused, match=r"only https:// is allowed"):
            await client.get(url.format(port=listener.port))
        with pytest.raises(AddressRefused):
            await client.post(url.format(port=listener.port), b"{}")
    assert resolver.calls == []
    assert attempts == []
    assert listener.accepted == 0


async def test_name_mixing_public_and_private_addresses_refused(listener: Listener, attempts: list[Any]) -> None:
    resolver = Resolver({"mixed.example": [["1.1.1.1", "127.0.0.1"]]})
    async with GuardedClient(allow_private=False, user_agent="t", resolver=resolver) as client:
        with pytest.raises(AddressRefused, match=r"mixed\.example: refused address 127\.0\.0\.1 \(loopback\)"):
            await client.post(f"https://mixed.example:{listener.port}/inbox", b"{}")
    assert resolver.calls == ["mixed.example"]
    assert attempts == []
    assert listener.accepted == 0


async def test_default_resolver_is_guarded_too(listener: Listener, attempts: list[Any]) -> None:
    async with GuardedClient(allow_private=False, user_agent="t") as client:
        with pytest.raises(AddressRefused, match="localhost"):
            await client.get(f"https://localhost:{listener.port}/")
    assert attempts == []
    assert listener.accepted == 0


async def test_connection_goes_to_the_checked_address(peer: Peer, attempts: list[tuple[str, int]]) -> None:
    """DNS rebinding: the second answer for the name would be refused; the socket never resolves it again."""
    resolver = Resolver({"rebind.example": [["127.0.0.1"], ["0.0.0.0"]]})
    async with GuardedClient(allow_private=True, user_agent="t", resolver=resolver) as client:
        fetched = await client.get_json(f"http://rebind.example:{peer.a_port}/note-close")
        assert fetched.document["host"] == f"rebind.example:{peer.a_port}"
        assert attempts == [("127.0.0.1", peer.a_port)]
        # The server closed that connection, so the next request resolves again, and is refused.
        with pytest.raises(AddressRefused, match=r"0\.0\.0\.0 \(unspecified\)"):
            await client.get_json(f"http://rebind.example:{peer.a_port}/note")
    assert resolver.calls == ["rebind.example", "rebind.example"]
    assert attempts == [("127.0.0.1", peer.a_port)]


async def test_redirect_to_refused_address_or_scheme(peer: Peer, listener: Listener, attempts: list[Any]) -> None:
    resolver = Resolver({"trap.example": [["0.0.0.0"]]})
    async with GuardedClient(allow_private=True, user_agent="t", resolver=resolver) as client:
        for target, refusal in [
            (f"http://trap.example:{listener.port}/x", r"0\.0\.0\.0"),
            (f"http://[ff02::1]:{listener.port}/x", "multicast"),
            ("file:///etc/passwd", "refused file URL"),
            ("gopher://127.0.0.1:70/", "refused gopher URL"),
        ]:
            url = str(httpx.URL(f"{peer.a}/redirect-to", params={"location": target}))
            with pytest.raises(AddressRefused, match=refusal):
                await client.get(url)
    assert resolver.calls == ["trap.example"]
    assert {address for address, _ in attempts} == {"127.0.0.1"}
    assert listener.accepted == 0


# --- fetching ----------------------------------------------------------------------------------------------------


async def test_fetch_object(lab: GuardedClient, peer: Peer) -> None:
    fetched = await lab.fetch_object(f"{peer.a}/note")
    assert fetched.url == f"{peer.a}/note"
    assert fetched.document["id"] == f"{peer.a}/note"
    assert fetched.document["user-agent"] == "Jardin-test/1.0"
    assert fetched.document["accept"] == ACTIVITY_ACCEPT


async def test_connections_are_kept_alive(lab: GuardedClient, peer: Peer, attempts: list[Any]) -> None:
    for _ in range(3):
        await lab.fetch_object(f"{peer.a}/note")
    assert len(attempts) == 1


async def test_fan_out_shares_a_bounded_pool(peer: Peer, attempts: list[Any]) -> None:
    peer.inbox.received.clear()
    async with GuardedClient(allow_private=True, user_agent="t", max_connections=4) as client:
        results = await asyncio.gather(*(client.post(f"{peer.a}/inbox", b"{}") for _ in range(60)))
    assert {result.status for result in results} == {202}
    assert len(peer.inbox.received) == 60
    assert 1 <= len(attempts) <= 4


async def test_no_cookie_travels_between_requests(lab: GuardedClient, peer: Peer) -> None:
    await lab.fetch_object(f"{peer.a}/set-cookie")
    assert (await lab.fetch_object(f"{peer.a}/note")).document["cookie"] is None


@pytest.mark.parametrize(
    "content_type",
    [
        "application/activity+json",
        "application/activity+json; charset=utf-8",
        'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
        'Application/LD+JSON;profile="https://www.w3.org/ns/activitystreams https://example.org/p"',
        "application/ld+json",
    ],
)
async def test_activitystreams_media_types_accepted(lab: GuardedClient, peer: Peer, content_type: str) -> None:
    url = str(httpx.URL(f"{peer.a}/typed", params={"type": content_type}))
    assert (await lab.fetch_object(url)).document["type"] == "Note"


@pytest.mark.parametrize(
    "content_type",
    ["text/html", "application/json", "application/jrd+json", 'application/ld+json; profile="https://example.org/p"'],
)
async def test_other_media_types_refused(lab: GuardedClient, peer: Peer, content_type: str) -> None:
    url = str(httpx.URL(f"{peer.a}/typed", params={"type": content_type}))
    with pytest.raises(FetchError, match="unexpected media type"):
        await lab.fetch_object(url)


async def test_webfinger_media_types_when_asked(lab: GuardedClient, peer: Peer) -> None:
    for content_type in ("application/jrd+json", "application/json; charset=utf-8"):
        url = str(httpx.URL(f"{peer.a}/typed", params={"type": content_type}))
        fetched = await lab.get_json(url, accept=JSON_ACCEPT, accept_types=JSON_TYPES)
        assert fetched.document["type"] == "Note"


async def test_error_status_carried(lab: GuardedClient, peer: Peer) -> None:
    for code in (404, 410, 500):
        with pytest.raises(FetchError) as failed:
            await lab.fetch_object(f"{peer.a}/status/{code}")
        assert failed.value.status == code


async def test_closed_port_is_a_fetch_error(lab: GuardedClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchError) as failed:
        await lab.get(f"http://127.0.0.1:{port}/")
    assert not isinstance(failed.value, AddressRefused)


# --- size and time -----------------------------------------------------------------------------------------------


async def test_body_cap(lab: GuardedClient, peer: Peer) -> None:
    assert len((await lab.get(f"{peer.a}/sized?n=1000000")).body) == 1_000_000
    with pytest.raises(FetchError, match="answer of 2000000 bytes is over the 1000000-byte cap"):
        await lab.get(f"{peer.a}/sized?n=2000000")
    with pytest.raises(FetchError, match="answer is over the 1000000-byte cap"):
        await lab.get(f"{peer.a}/streamed?n=2000000")


async def test_small_cap_boundary(peer: Peer) -> None:
    async with GuardedClient(allow_private=True, user_agent="t", max_bytes=1000) as client:
        assert len((await client.get(f"{peer.a}/sized?n=1000")).body) == 1000
        with pytest.raises(FetchError, match="cap"):
            await client.get(f"{peer.a}/sized?n=1001")


async def test_gzip_decoded_within_the_cap(lab: GuardedClient, peer: Peer) -> None:
    assert (await lab.fetch_object(f"{peer.a}/gzip")).document["id"] == f"{peer.a}/gzip"
    tracemalloc.start()
    try:
        with pytest.raises(FetchError, match="answer is over the 1000000-byte cap"):
            await lab.get(f"{peer.a}/gzip-bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000, "the bomb was decompressed past the cap"


async def test_dripping_server_cut_at_the_deadline(peer: Peer) -> None:
    async with GuardedClient(allow_private=True, user_agent="t", deadline=1.0) as client:
        started = time.monotonic()
        with pytest.raises(FetchError, match="deadline of 1 s exceeded"):
            await client.get(f"{peer.a}/drip")
        assert time.monotonic() - started < 2.0
        # The cut-off connection is gone from the pool; the client goes on working.
        assert (await client.fetch_object(f"{peer.a}/note")).document["type"] == "Note"


async def test_deadline_covers_name_resolution() -> None:
    async def silent(host: str, port: int) -> list[str]:
        await asyncio.sleep(60)
        return []

    async with GuardedClient(allow_private=False, user_agent="t", resolver=silent, deadline=0.3) as client:
        started = time.monotonic()
        with pytest.raises(FetchError, match="deadline"):
            await client.post("https://slow.example/inbox", b"{}")
        assert time.monotonic() - started < 1.0


async def test_unknown_name_is_a_fetch_error() -> None:
    async with GuardedClient(allow_private=False, user_agent="t", resolver=Resolver({})) as client:
        with pytest.raises(FetchError, match=r"cannot resolve nowhere\.example"):
            await client.get("https://nowhere.example/")


# --- redirects and signatures ------------------------------------------------------------------------------------


async def test_three_redirects_followed_four_refused(lab: GuardedClient, peer: Peer) -> None:
    fetched = await lab.fetch_object(f"{peer.a}/redirect/3")
    assert fetched.url == f"{peer.a}/redirect/0"
    with pytest.raises(FetchError, match="more than 3 redirects"):
        await lab.fetch_object(f"{peer.a}/redirect/4")


class PathAuth(httpx.Auth):
    """Signs each request with its own path, as an HTTP signature covers the request target."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Signature"] = f"path={request.url.path}"
        yield request


async def test_each_redirect_is_signed_again(lab: GuardedClient, peer: Peer) -> None:
    fetched = await lab.fetch_object(f"{peer.a}/redirect/2", auth=PathAuth())
    assert fetched.document["signature"] == "path=/redirect/0"


# --- whose id is it ----------------------------------------------------------------------------------------------


def claiming(base: str, claimed_id: str) -> str:
    return str(httpx.URL(f"{base}/claims", params={"id": claimed_id}))


async def test_same_origin_id_accepted_as_served(lab: GuardedClient, peer: Peer) -> None:
    url = claiming(peer.a, f"{peer.a}/canonical")
    fetched = await lab.fetch_object(url)
    assert (fetched.url, fetched.document["id"]) == (url, f"{peer.a}/canonical")


async def test_foreign_id_refetched_from_its_origin(lab: GuardedClient, peer: Peer) -> None:
    fetched = await lab.fetch_object(claiming(peer.a, f"{peer.b}/note"))
    assert fetched.url == f"{peer.b}/note"
    assert fetched.document["id"] == f"{peer.b}/note"
    assert fetched.document["host"] == peer.b.removeprefix("http://")


async def test_forged_copy_replaced_by_the_origin_s_own(lab: GuardedClient, peer: Peer) -> None:
    """127.0.0.2 serves a document claiming an id of 127.0.0.1: what comes back is 127.0.0.1's document."""
    genuine_id = f"{peer.a}/note"
    fetched = await lab.fetch_object(claiming(peer.b, genuine_id))
    assert fetched.url == genuine_id
    assert "content" not in fetched.document  # the forger's "served by 127.0.0.2" is gone


async def test_id_its_origin_does_not_confirm_refused(lab: GuardedClient, peer: Peer) -> None:
    elsewhere = claiming(peer.b, f"{peer.b}/note")  # B's document at this URL names another id
    with pytest.raises(FetchError, match="does not confirm"):
        await lab.fetch_object(claiming(peer.a, elsewhere))
    with pytest.raises(FetchError) as missing:
        await lab.fetch_object(claiming(peer.a, f"{peer.b}/status/404"))
    assert missing.value.status == 404


async def test_document_served_after_a_cross_origin_redirect(lab: GuardedClient, peer: Peer) -> None:
    """A redirects to B, which serves a document claiming A's id: only A's own copy is accepted."""
    redirect = str(httpx.URL(f"{peer.a}/redirect-to", params={"location": claiming(peer.b, f"{peer.a}/note")}))
    fetched = await lab.fetch_object(redirect)
    assert fetched.url == f"{peer.a}/note"
    assert "content" not in fetched.document


async def test_document_without_id_refused(lab: GuardedClient, peer: Peer) -> None:
    with pytest.raises(FetchError, match="has no id"):
        await lab.fetch_object(claiming(peer.a, ""))


# --- JSON --------------------------------------------------------------------------------------------------------


async def test_nesting_limit(lab: GuardedClient, peer: Peer) -> None:
    assert (await lab.get_json(f"{peer.a}/deep?levels=64")).document["a"]["a"]
    for levels in (65, 1000, 100_000):
        with pytest.raises(FetchError, match="nested deeper than 64 levels"):
            await lab.get_json(f"{peer.a}/deep?levels={levels}")


def test_json_parsing_never_recurses_on_hostile_input() -> None:
    for hostile in (b"[" * 200_000, b'{"a":' * 200_000, b"[{" * 100_000 + b"}]" * 100_000):
        with pytest.raises(ValueError, match="nested deeper"):
            parse_json_object(hostile)


def test_brackets_inside_strings_do_not_count() -> None:
    text = '{"a": "' + "[{" * 1000 + '", "b": "\\"[[[[", "c": ["\\\\"]}'
    assert parse_json_object(text.encode())["c"] == ["\\"]


@pytest.mark.parametrize("body", [b"[1]", b'"id"', b"null", b"{", b'{"a": NaN}', b"\xff{}", b""])
def test_only_json_objects_accepted(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_json_object(body)


# --- delivery ----------------------------------------------------------------------------------------------------


async def test_post_delivers_and_reports(lab: GuardedClient, peer: Peer) -> None:
    peer.inbox.received.clear()
    result = await lab.post(f"{peer.a}/inbox", b'{"type": "Follow"}')
    assert (result.status, result.retry_after, result.body_excerpt) == (202, None, "thanks")
    assert peer.inbox.received == [("application/activity+json", b'{"type": "Follow"}')]
    ld = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
    await lab.post(f"{peer.a}/inbox", b"{}", headers={"content-type": ld})
    assert peer.inbox.received[-1] == (ld, b"{}")


async def test_post_retry_after(lab: GuardedClient, peer: Peer) -> None:
    result = await lab.post(f"{peer.a}/inbox?status=429&retry_after=120", b"{}")
    assert (result.status, result.retry_after) == (429, 120.0)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    result = await lab.post(str(httpx.URL(f"{peer.a}/inbox", params={"status": 503, "retry_after": later})), b"{}")
    assert result.status == 503
    assert result.retry_after is not None and 28 <= result.retry_after <= 30


async def test_post_does_not_follow_redirects(lab: GuardedClient, peer: Peer) -> None:
    peer.inbox.received.clear()
    result = await lab.post(f"{peer.a}/inbox-redirect", b"{}")
    assert result.status == 307
    assert peer.inbox.received == []


async def test_post_reads_only_an_excerpt(lab: GuardedClient, peer: Peer) -> None:
    started = time.monotonic()
    result = await lab.post(f"{peer.a}/endless", b"{}")
    assert (result.status, len(result.body_excerpt)) == (202, 4096)
    assert time.monotonic() - started < 1.0


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("3600", now=now) == 3600.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:01:30 GMT", now=now) == 90.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    for invalid in (None, "", "-5", "1.5", "soon", "Thu, 99 Foo 2026"):
        assert parse_retry_after(invalid, now=now) is None
