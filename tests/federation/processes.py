"""Processes and servers for fault tests: `forum serve` and `forum worker` started from the installed command
with FORUM_* environment, stopped gently or killed with SIGKILL; any ASGI app served by uvicorn on a port the
test chooses (so a server can stop and start again at the same address); a slow front for a Jardin's inboxes;
and a small remote ActivityPub server of our own that signs what it posts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activitypub.protocol.signatures import SigningKey, sign_request
from forum.config import PROJECT_ROOT, Settings
from forum.keys import generate_key_pair
from forum.models.base import utcnow

FORUM_COMMAND = PROJECT_ROOT / ".venv" / "bin" / "forum"
START_TIMEOUT = 20.0
AS_PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
AS_CONTEXT = ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"]


def forum_environment(settings: Settings) -> dict[str, str]:
    """The environment that makes `forum` read these settings (CONTRACT.md's variables)."""
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith("FORUM_")},
        "FORUM_DATA_DIR": str(settings.data_dir),
        "FORUM_DATABASE_URL": settings.database_url,
        "FORUM_BASE_URL": settings.base_url,
        "FORUM_SECRET_KEY": settings.secret_key,
        "FORUM_FEDERATION_ALLOW_PRIVATE": "1" if settings.federation_allow_private else "0",
        "FORUM_LOG_LEVEL": "WARNING",
    }


class ForumProcess:
    """One `forum …` command running in the background; its output goes to a log file kept for failures."""

    def __init__(self, settings: Settings, *args: str, log: Path) -> None:
        self.args = args
        self.log = log
        self._output: IO[bytes] = log.open("ab")
        self._process = subprocess.Popen(
            [str(FORUM_COMMAND), *args],
            env=forum_environment(settings),
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    def output(self) -> str:
        if not self._output.closed:
            self._output.flush()
        return self.log.read_text(errors="replace")

    async def kill(self) -> int:
        """SIGKILL: no clean-up, no finally blocks, transactions cut where they stand."""
        return await self.stop(signal.SIGKILL)

    async def stop(self, how: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self._process.poll() is None:
            self._process.send_signal(how)
        try:
            code = await asyncio.wait_for(asyncio.to_thread(self._process.wait), timeout)
        except TimeoutError:
            self._process.kill()
            code = await asyncio.to_thread(self._process.wait)
        self._output.close()
        return code


@asynccontextmanager
async def forum_worker(settings: Settings, log: Path) -> AsyncIterator[ForumProcess]:
    """`forum worker`, killed on the way out if the test has not stopped it."""
    process = ForumProcess(settings, "worker", log=log)
    try:
        yield process
    finally:
        await process.stop(signal.SIGKILL)


async def start_serve(settings: Settings, host: str, port: int, log: Path) -> ForumProcess:
    """`forum serve` (with its worker) on host:port, once `/healthz` answers."""
    process = ForumProcess(settings, "serve", "--host", host, "--port", str(port), log=log)
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT
    async with httpx.AsyncClient(timeout=2) as http:
        while asyncio.get_running_loop().time() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"forum serve exited with {process.returncode}:\n{process.output()}")
            try:
                if (await http.get(f"http://{host}:{port}/healthz")).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    await process.stop(signal.SIGKILL)
    raise RuntimeError(f"forum serve did not answer within {START_TIMEOUT} s:\n{process.output()}")


@asynccontextmanager
async def serving(app: ASGIApp, host: str, port: int) -> AsyncIterator[None]:
    """Serve an ASGI app (its lifespan included) on exactly host:port until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT
    while not server.started:
        if task.done():
            await task
            raise RuntimeError(f"uvicorn stopped before serving on {host}:{port}")
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@dataclass
class SignedRequest:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class RemotePeer:
    """A small ActivityPub server on a loopback address: one Person (carol) with a real RSA key, the objects
    the test gives it, answering fetches after `fetch_delay` seconds; it signs the activities it posts."""

    host: str
    port: int
    fetch_delay: float = 0.0
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Fetches of notes wait while the gate is closed; `fetches` lists every note asked for.
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    fetches: list[str] = field(default_factory=list)
    counter: int = 0

    def __post_init__(self) -> None:
        self.gate.set()
        private_pem, public_pem = generate_key_pair()
        self.base_url = f"http://{self.host}:{self.port}"
        self.actor_id = f"{self.base_url}/users/carol"
        self.key = SigningKey(f"{self.actor_id}#main-key", private_pem)
        self.documents["/users/carol"] = {
            "@context": AS_CONTEXT,
            "id": self.actor_id,
            "type": "Person",
            "preferredUsername": "carol",
            "inbox": f"{self.actor_id}/inbox",
            "outbox": f"{self.actor_id}/outbox",
            "followers": f"{self.actor_id}/followers",
            "endpoints": {"sharedInbox": f"{self.base_url}/inbox"},
            "publicKey": {"id": self.key.key_id, "owner": self.actor_id, "publicKeyPem": public_pem},
        }
        self.app = Starlette(
            routes=[
                Route("/{path:path}", self._get, methods=["GET"]),
                Route("/{path:path}", self._inbox, methods=["POST"]),
            ]
        )

    def note(self, slug: str, text: str, *, audience: str, in_reply_to: str | None = None) -> dict[str, Any]:
        note: dict[str, Any] = {
            "id": f"{self.base_url}/notes/{slug}",
            "type": "Note" if in_reply_to else "Page",
            "attributedTo": self.actor_id,
            "content": f"<p>{text}</p>",
            "to": [AS_PUBLIC],
            "cc": [audience],
            "audience": audience,
            "published": utcnow().isoformat(),
        }
        if in_reply_to:
            note["inReplyTo"] = in_reply_to
        else:
            note["name"] = text
        self.documents[f"/notes/{slug}"] = {"@context": AS_CONTEXT, **note}
        return note

    def create(self, note: dict[str, Any], *, embed: bool = True) -> dict[str, Any]:
        self.counter += 1
        return {
            "@context": AS_CONTEXT,
            "id": f"{self.base_url}/activities/{self.counter}-{note['id'].rsplit('/', 1)[-1]}",
            "type": "Create",
            "actor": self.actor_id,
            "to": note["to"],
            "cc": note["cc"],
            "audience": note["audience"],
            "object": note if embed else note["id"],
        }

    def signed(self, url: str, activity: dict[str, Any]) -> SignedRequest:
        body = json.dumps(activity).encode()
        headers = {"Content-Type": "application/activity+json"}
        headers.update(sign_request("POST", url, headers, body, self.key))
        return SignedRequest(url, body, headers)

    async def post(self, http: httpx.AsyncClient, url: str, activity: dict[str, Any]) -> httpx.Response:
        request = self.signed(url, activity)
        return await http.post(request.url, content=request.body, headers=request.headers)

    async def fetching(self, object_id: str, count: int) -> bool:
        return self.fetches.count(object_id) >= count

    async def _get(self, request: Request) -> Response:
        document = self.documents.get(request.url.path)
        if document is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        if request.url.path.startswith("/notes/"):
            self.fetches.append(document["id"])
            await self.gate.wait()
            await asyncio.sleep(self.fetch_delay)
        return JSONResponse(document, media_type="application/activity+json")

    async def _inbox(self, request: Request) -> Response:
        await request.body()
        return Response(status_code=202)


class SlowInbox:
    """An ASGI front for a Jardin that holds each inbox POST for `delay` seconds before passing it on, and
    notes the id of every activity its Jardin answered with a 2xx (repeats included)."""

    def __init__(self, app: ASGIApp, delay: float) -> None:
        self.app = app
        self.delay = delay
        self.answered: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/inbox"):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        await asyncio.sleep(self.delay)
        status = 0

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, replay, capture)
        if 200 <= status < 300:
            self.answered.append(str(json.loads(body).get("id")))

    async def heard_at_least(self, count: int) -> bool:
        return len(self.answered) >= count

    async def heard(self, ap_id: str) -> bool:
        return ap_id in self.answered
