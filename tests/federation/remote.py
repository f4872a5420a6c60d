"""A scriptable remote ActivityPub server for inbox tests: a real uvicorn + Starlette server on a loopback
address and a random port, that serves remote actors (RSA keys made with `cryptography`) and whatever
documents a test tells it to serve (at once, slowly, or never), records every request it gets, and signs and
POSTs arbitrary bytes to a Jardin inbox.

Signing comes in two kinds. `Remote.deliver` signs as a well-behaved peer does, with the production signer
(`sign_request`), in either form. `cavage_headers` and `rfc9421_headers` build signatures by hand, with every
part under the test's control (what is covered, the Date or `created`, the digest or none, the key id), so
that an attack can send exactly the malformed signature it needs; they share no code with the verifier but
the raw RSA signing. `ld_sign` makes a Mastodon-style `RsaSignature2017` with pyld and URDNA2015, again
without the production payload code, so that a forwarded activity can carry its author's own proof.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hashlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any, Self

import httpx
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pyld import jsonld as pyld_jsonld
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from activitypub.protocol.contexts import OfflineLoader
from activitypub.protocol.signatures import SignatureForm, SigningKey, sign_request
from tests.federation.instances import free_port

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
SECURITY_CONTEXT = "https://w3id.org/security/v1"
AS_MEDIA_TYPE = "application/activity+json"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
CAVAGE_FULL = ("(request-target)", "host", "date", "digest")
RFC9421_FULL = ("@method", "@target-uri", "content-digest", "date")
START_TIMEOUT = 10.0
LONGEST_STALL = 60.0  # a stalled answer ends by itself after this, whatever the test does


class Default(enum.Enum):
    """Marks an argument left to its honest value (the digest of the body, the current time)."""

    HONEST = "honest"


HONEST = Default.HONEST


@dataclass(frozen=True)
class Recorded:
    """One request the remote server received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    at: float  # time.monotonic()


@dataclass
class Served:
    """What the server answers at one path: a document and a status, with optional stalling.

    `hold`: seconds before the answer's headers are sent. `drip`: the headers are sent at once, then the
    body one byte every `drip` seconds (whitespace first, so the JSON stays valid if it ever ends).
    """

    document: Any
    status: int = 200
    media_type: str = AS_MEDIA_TYPE
    hold: float = 0.0
    drip: float | None = None


@dataclass
class RemoteActor:
    """A remote Person (or Group) with its RSA key, as its server publishes it."""

    base_url: str
    name: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    kind: str = "Person"
    # The key published as a document of its own (at /keys/NAME, naming its owner) rather than in the actor's.
    separate_key: bool = False

    @property
    def ap_id(self) -> str:
        return f"{self.base_url}/users/{self.name}"

    @property
    def key_id(self) -> str:
        return f"{self.base_url}/keys/{self.name}" if self.separate_key else f"{self.ap_id}#main-key"

    def key_document(self) -> dict[str, Any]:
        return {
            "@context": SECURITY_CONTEXT,
            "id": self.key_id,
            "type": "Key",
            "owner": self.ap_id,
            "publicKeyPem": self.public_pem,
        }

    @property
    def private_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    @property
    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.key_id, self.private_pem)

    def document(self) -> dict[str, Any]:
        return {
            "@context": [AS_CONTEXT, SECURITY_CONTEXT],
            "id": self.ap_id,
            "type": self.kind,
            "preferredUsername": self.name,
            "name": self.name.title(),
            "inbox": f"{self.ap_id}/inbox",
            "outbox": f"{self.ap_id}/outbox",
            "followers": f"{self.ap_id}/followers",
            "endpoints": {"sharedInbox": f"{self.base_url}/inbox"},
            "publicKey": {"id": self.key_id, "owner": self.ap_id, "publicKeyPem": self.public_pem},
        }


class Remote:
    """The remote server, as an async context manager: `async with Remote("127.0.0.2") as remote: …`."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.host = host
        self.port = free_port(host)
        self.base_url = f"http://{host}:{self.port}"
        self.requests: list[Recorded] = []
        self._served: dict[str, Served] = {}
        self._closing = asyncio.Event()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        app = Starlette(routes=[Route("/{path:path}", self._answer, methods=["GET", "HEAD", "POST"])])
        self._config = uvicorn.Config(
            app, host=host, port=self.port, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )

    async def __aenter__(self) -> Self:
        self._server = uvicorn.Server(self._config)
        self._task = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if self._task.done():
                await self._task
            if time.monotonic() > deadline:
                raise RuntimeError(f"the remote server on {self.base_url} did not start")
            await asyncio.sleep(0.01)
        self._http = httpx.AsyncClient(timeout=30, trust_env=False)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._closing.set()
        if self._http is not None:
            await self._http.aclose()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, 10)

    # -- what it serves ------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def serve(self, path: str, document: Any, **how: Any) -> str:
        """Serve `document` at `path` (see `Served` for status and stalling); returns its URL."""
        self._served["/" + path.lstrip("/")] = Served(document, **how)
        return self.url(path)

    def actor(
        self, name: str, *, bits: int = 2048, kind: str = "Person", separate_key: bool = False, **how: Any
    ) -> RemoteActor:
        """A new actor with a fresh key, served at /users/NAME (slowly, with `hold` or `drip`); with
        `separate_key`, its key is also served, at once, as a document of its own at /keys/NAME."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        actor = RemoteActor(self.base_url, name, key, kind, separate_key)
        self.serve(f"/users/{name}", actor.document(), **how)
        if separate_key:
            self.serve(f"/keys/{name}", actor.key_document())
        return actor

    def requests_for(self, path: str) -> list[Recorded]:
        path = "/" + path.lstrip("/")
        return [request for request in self.requests if request.path == path]

    async def _answer(self, request: Request) -> Response:
        path = request.url.path
        self.requests.append(Recorded(request.method, path, request.url.query, dict(request.headers), time.monotonic()))
        if request.method == "POST":
            await request.body()
            return Response(status_code=202)
        served = self._served.get(path)
        if served is None:
            return Response(status_code=404)
        body = json.dumps(served.document).encode()
        if served.hold:
            await self._stall(served.hold)
        if served.drip is not None:
            return StreamingResponse(self._dripping(body, served.drip), served.status, media_type=served.media_type)
        return Response(body, served.status, media_type=served.media_type)

    async def _dripping(self, body: bytes, every: float) -> AsyncIterator[bytes]:
        started = time.monotonic()
        while not self._closing.is_set() and time.monotonic() - started < LONGEST_STALL:
            yield b" "
            await self._stall(every)
        yield body

    async def _stall(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), min(seconds, LONGEST_STALL))

    # -- what it sends -------------------------------------------------------------------------------

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST exactly these bytes and headers (httpx adds Content-Length, and Host unless given)."""
        assert self._http is not None, "the remote server is not started"
        return await self._http.post(url, content=body, headers={"Content-Type": AS_MEDIA_TYPE, **headers})

    async def get(self, url: str, headers: dict[str, str]) -> httpx.Response:
        assert self._http is not None, "the remote server is not started"
        return await self._http.get(url, headers=headers)

    async def post_raw(self, url: str, headers: dict[str, str], body: bytes, *, chunked: bool) -> RawAnswer:
        """POST `body` over a plain socket, with its Content-Length or in chunks, reading the answer while
        still sending: returns the status and how many body bytes had gone out when the answer came."""
        return await post_raw(url, {"Content-Type": AS_MEDIA_TYPE, **headers}, body, chunked=chunked)

    async def deliver(
        self,
        actor: RemoteActor,
        inbox: str,
        activity: dict[str, Any],
        *,
        form: SignatureForm = "cavage",
        now: datetime | None = None,
    ) -> httpx.Response:
        """Deliver as an honest peer would: the production signer, over the whole request."""
        body = json.dumps(activity).encode()
        return await self.post(
            inbox, body, sign_request("POST", inbox, {}, body, actor.signing_key, form=form, now=now)
        )


@dataclass(frozen=True)
class RawAnswer:
    """The answer to a raw POST: its status, its body, and how many body bytes had been handed to the socket
    when its status line arrived (a server that answers before reading a body makes this small)."""

    status: int
    body: bytes
    sent: int


async def post_raw(url: str, headers: dict[str, str], body: bytes, *, chunked: bool) -> RawAnswer:
    """POST over a plain socket, writing the body in 64 kB pieces while watching for the answer, and stopping
    as soon as it comes: what httpx cannot do, as it reads no answer before it has sent the whole body. The
    answer is kept even when the server resets the connection right after it (as it does when it leaves a
    body unread), which a stream reader would lose."""
    parsed = httpx.URL(url)
    loop = asyncio.get_running_loop()
    transport, answer = await loop.create_connection(_Answer, parsed.host, parsed.port or 80)
    given = {name.lower(): value for name, value in headers.items()}
    lines = [f"POST {parsed.raw_path.decode('ascii')} HTTP/1.1", f"Host: {given.pop('host', parsed.netloc.decode())}"]
    lines += [f"{name}: {value}" for name, value in given.items()]
    lines += ["Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}", "Connection: close"]
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    sent = 0
    try:
        for start in range(0, len(body), 65536):
            if answer.head_seen or answer.closed.is_set():
                break
            piece = body[start : start + 65536]
            transport.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
            await answer.writable()
        else:
            if chunked:
                transport.write(b"0\r\n\r\n")
        sent_then = sent if answer.head_seen else len(body)
        await asyncio.wait_for(answer.closed.wait(), 30)
    finally:
        transport.close()
    head, _, rest = bytes(answer.data).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return RawAnswer(status, rest, sent_then)


class _Answer(asyncio.Protocol):
    """Collects every byte the server sends until it closes, and paces the writer by the socket's buffer."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = asyncio.Event()
        self._paused = False
        self._changed = asyncio.Event()

    @property
    def head_seen(self) -> bool:
        return b"\r\n" in self.data

    def data_received(self, data: bytes) -> None:
        self.data += data
        self._changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self._changed.set()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._changed.set()

    async def writable(self) -> None:
        """Wait until the socket takes more, or the answer came, or the connection is gone."""
        while self._paused and not (self.head_seen or self.closed.is_set()):
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), 30)


class Listener:
    """A TCP port that records every connection made to it and closes it at once: a tripwire for fetches
    that must never be attempted (over https, which the HTTP server would not even see as a request)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self.connections: list[tuple[str, int]] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(writer.get_extra_info("peername"))
        writer.close()


# -- signatures by hand -------------------------------------------------------------------------------------


def cavage_headers(
    method: str,
    url: str,
    body: bytes,
    key: SigningKey,
    *,
    covered: Sequence[str] = CAVAGE_FULL,
    date: datetime | None = None,
    digest: str | Default | None = HONEST,
    key_id: str | None = None,
    algorithm: str = "rsa-sha256",
) -> dict[str, str]:
    """A draft-cavage signature over exactly `covered`, with a `Date` of `date` (now by default) and a
    `Digest` of `digest` (the body's by default; None sends no Digest header even if it is covered)."""
    parsed = httpx.URL(url)
    headers = {"Host": parsed.netloc.decode("ascii"), "Date": format_datetime(date or datetime.now(UTC), usegmt=True)}
    if digest is HONEST:
        headers["Digest"] = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    elif digest is not None:
        headers["Digest"] = digest
    lines = []
    for name in covered:
        if name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {parsed.raw_path.decode('ascii')}")
        else:
            lines.append(f"{name}: {headers.get(name.title(), '')}")
    signature = base64.b64encode(key.sign("\n".join(lines).encode())).decode()
    headers["Signature"] = (
        f'keyId="{key_id or key.key_id}",algorithm="{algorithm}",headers="{" ".join(covered)}",signature="{signature}"'
    )
    return headers


def rfc9421_headers(
    method: str,
    url: str,
    body: bytes,
    key: SigningKey,
    *,
    covered: Sequence[str] = RFC9421_FULL,
    created: datetime | Default | None = HONEST,
    content_digest: str | Default | None = HONEST,
    key_id: str | None = None,
) -> dict[str, str]:
    """An RFC 9421 signature (`sig1`, rsa-v1_5-sha256) over exactly `covered`, created at `created` (now by
    default, which is also the `Date`; None: no `created` parameter), with a `Content-Digest` of
    `content_digest` (the body's by default; None: no such header)."""
    parsed = httpx.URL(url)
    moment = created if isinstance(created, datetime) else datetime.now(UTC)
    headers = {"Host": parsed.netloc.decode("ascii"), "Date": format_datetime(moment, usegmt=True)}
    if content_digest is HONEST:
        headers["Content-Digest"] = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    elif content_digest is not None:
        headers["Content-Digest"] = content_digest
    components = {
        "@method": method.upper(),
        "@target-uri": str(parsed),
        "@authority": parsed.netloc.decode("ascii"),
        "@path": parsed.path,
    }
    lines = [f'"{name}": {components.get(name) or headers.get(name.title(), "")}\n' for name in covered]
    inner = " ".join(f'"{name}"' for name in covered)
    when = "" if created is None else f";created={int(moment.timestamp())}"
    params = f'({inner}){when};keyid="{key_id or key.key_id}";alg="rsa-v1_5-sha256"'
    base = "".join(lines) + f'"@signature-params": {params}'
    headers["Signature-Input"] = f"sig1={params}"
    headers["Signature"] = "sig1=:" + base64.b64encode(key.sign(base.encode())).decode() + ":"
    return headers


def ld_sign(document: dict[str, Any], actor: RemoteActor, *, created: str = "2025-01-01T00:00:00Z") -> dict[str, Any]:
    """`document` with a Mastodon-style RsaSignature2017 by `actor` (ActivityPub::LinkedDataSignature#sign!):
    RSA-SHA256 over hex SHA-256 of the URDNA2015 options (identity/v1 context) + that of the document."""
    loader = OfflineLoader()  # bundled contexts only: signing never touches the network either

    def canonical_hash(value: dict[str, Any]) -> str:
        options = {"algorithm": "URDNA2015", "format": "application/n-quads", "documentLoader": loader}
        return hashlib.sha256(pyld_jsonld.normalize(value, options).encode()).hexdigest()

    options = {"@context": "https://w3id.org/identity/v1", "creator": actor.key_id, "created": created}
    signed = (canonical_hash(options) + canonical_hash(document)).encode()
    value = base64.b64encode(actor.private_key.sign(signed, padding.PKCS1v15(), hashes.SHA256())).decode()
    signature = {"type": "RsaSignature2017", "creator": actor.key_id, "created": created, "signatureValue": value}
    return {**document, "signature": signature}
