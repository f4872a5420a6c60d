"""A small real peer for backfill tests: a uvicorn + Starlette server on a loopback address that serves
actors with real RSA keys and whatever documents a test gives it, keyed by path *and* query (NodeBB pages
its topic collections with `?page=N`), at once, slowly, or as a raw body; it records every request.

`NodeBBTopic` and `lemmy_thread` shape documents the way those servers do (see activitypub.backfill)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.federation.instances import free_port

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
SECURITY_CONTEXT = "https://w3id.org/security/v1"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
AS_MEDIA_TYPE = "application/activity+json"


@dataclass
class Answer:
    document: Any = None
    status: int = 200
    hold: float = 0.0
    raw: bytes | None = None


class Peer:
    """`async with Peer("127.0.0.2") as peer: peer.serve("/topic/1?page=2", {...})`."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = free_port(host)
        self.base_url = f"http://{host}:{self.port}"
        self.requests: list[str] = []
        self._answers: dict[str, Answer] = {}
        self._closing = asyncio.Event()
        app = Starlette(routes=[Route("/{path:path}", self._answer, methods=["GET", "POST"])])
        config = uvicorn.Config(
            app, host=host, port=self.port, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + 10
        while not self._server.started:
            if self._task.done():
                await self._task
            if time.monotonic() > deadline:
                raise RuntimeError(f"the peer on {self.base_url} did not start")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._closing.set()
        self._server.should_exit = True
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def serve(self, path: str, document: Any = None, **how: Any) -> str:
        """Answer `document` (or `raw` bytes, after `hold` seconds, with `status`) at `path` (with its query)."""
        self._answers["/" + path.lstrip("/")] = Answer(document, **how)
        return self.url(path)

    def actor(self, path: str, name: str, kind: str = "Person") -> str:
        """An actor with a fresh RSA key, served at `path`; returns its id."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        ap_id = self.url(path)
        self.serve(
            path,
            {
                "@context": [AS_CONTEXT, SECURITY_CONTEXT],
                "id": ap_id,
                "type": kind,
                "preferredUsername": name,
                "name": name.title(),
                "inbox": f"{ap_id}/inbox",
                "outbox": f"{ap_id}/outbox",
                "followers": f"{ap_id}/followers",
                "endpoints": {"sharedInbox": self.url("/inbox")},
                "publicKey": {"id": f"{ap_id}#main-key", "owner": ap_id, "publicKeyPem": pem},
            },
        )
        return ap_id

    @property
    def served(self) -> set[str]:
        return set(self._answers)

    def served_answer(self, path: str) -> Answer:
        return self._answers["/" + path.lstrip("/")]

    def fetched(self, path: str) -> int:
        """How many times `path` (with its query) was asked for."""
        return self.requests.count("/" + path.lstrip("/"))

    async def _answer(self, request: Request) -> Response:
        key = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        self.requests.append(key)
        answer = self._answers.get(key)
        if answer is None:
            return Response(status_code=404)
        if answer.hold:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), answer.hold)
        body = answer.raw if answer.raw is not None else json.dumps(answer.document).encode()
        return Response(body, answer.status, media_type=AS_MEDIA_TYPE)


@dataclass
class NodeBBTopic:
    """A NodeBB topic: its collection at `/topic/ID` (OrderedCollection, `first`/`last`, pages of `per_page`
    post ids with `partOf`/`next`/`prev`, the main post first, `attributedTo` the category), posts at
    `/post/PID` (`context` the topic, `audience` the category), people at `/uid/N`, the category at
    `/category/CID`."""

    peer: Peer
    tid: int = 7
    cid: int = 3
    per_page: int = 20
    posts: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.category = self._actor(f"/category/{self.cid}", "bees", "Group")
        self.people = [self._actor(f"/uid/{n}", name, "Person") for n, name in ((1, "julian"), (2, "baris"))]

    def _actor(self, path: str, name: str, kind: str) -> str:
        # Topics of one peer share its people and categories.
        return self.peer.url(path) if path in self.peer.served else self.peer.actor(path, name, kind)

    @property
    def context(self) -> str:
        return self.peer.url(f"/topic/{self.tid}")

    def post(self, pid: int, *, reply_to: int | None = None, author: int = 0, **changes: Any) -> dict[str, Any]:
        """A post, served at /post/PID; the first one made is the main post (an `Article` with a title)."""
        ap_id = self.peer.url(f"/post/{pid}")
        main = not self.posts
        document: dict[str, Any] = {
            "@context": AS_CONTEXT,
            "id": ap_id,
            "type": "Article" if main else "Note",
            "attributedTo": self.people[author % len(self.people)],
            "to": [PUBLIC],
            "cc": [self.category, f"{self.people[0]}/followers"],
            "audience": self.category,
            "context": self.context,
            "content": f"<p>Post {pid} about bees</p>",
            "published": f"2025-03-01T10:{len(self.posts) // 60:02d}:{len(self.posts) % 60:02d}Z",
            "url": ap_id,
        }
        if main:
            document["name"] = "How do bees keep warm?"
        else:
            document["inReplyTo"] = self.peer.url(f"/post/{reply_to}") if reply_to else self.posts[0]["id"]
        document.update(changes)
        self.posts.append(document)
        self.peer.serve(f"/post/{pid}", document)
        return document

    def publish(self, items: list[Any] | None = None) -> None:
        """Serve the collection and its pages, listing `items` (the posts' ids by default)."""
        listed = items if items is not None else [post["id"] for post in self.posts]
        pages = [listed[i : i + self.per_page] for i in range(0, len(listed), self.per_page)] or [[]]
        base = f"/topic/{self.tid}"
        self.peer.serve(
            base,
            {
                "@context": AS_CONTEXT,
                "id": self.context,
                "type": "OrderedCollection",
                "totalItems": len(listed),
                "first": f"{self.context}?page=1",
                "last": f"{self.context}?page={len(pages)}",
                "name": "How do bees keep warm?",
                "attributedTo": self.category,
                "audience": self.category,
            },
        )
        for number, page in enumerate(pages, start=1):
            self.peer.serve(
                f"{base}?page={number}",
                {
                    "@context": AS_CONTEXT,
                    "id": f"{self.context}?page={number}",
                    "type": "OrderedCollectionPage",
                    "totalItems": len(listed),
                    "partOf": self.context,
                    "orderedItems": page,
                    "next": f"{self.context}?page={number + 1}" if number < len(pages) else None,
                    "prev": f"{self.context}?page={number - 1}" if number > 1 else None,
                },
            )


def lemmy_thread(peer: Peer, number: int, *, context: str | None = None) -> tuple[str, str]:
    """A Lemmy 0.19 post (/post/NUMBER) and a comment answering it (/comment/NUMBER), with no `context`
    unless given; returns their ids."""
    community, author = peer.url("/c/beekeeping"), peer.url("/u/picard")
    if "/c/beekeeping" not in peer.served:
        peer.actor("/c/beekeeping", "beekeeping", kind="Group")
        peer.actor("/u/picard", "picard")
    post, comment = peer.url(f"/post/{number}"), peer.url(f"/comment/{number}")
    page: dict[str, Any] = {
        "@context": [AS_CONTEXT, "https://join-lemmy.org/context.json"],
        "id": post,
        "type": "Page",
        "attributedTo": author,
        "to": [community, PUBLIC],
        "audience": community,
        "name": f"Winter bees {number}",
        "content": "<p>They cluster</p>",
        "mediaType": "text/html",
        "published": "2025-02-26T12:35:34Z",
    }
    note: dict[str, Any] = {
        "@context": [AS_CONTEXT, "https://join-lemmy.org/context.json"],
        "id": comment,
        "type": "Note",
        "attributedTo": author,
        "to": [community, PUBLIC],
        "audience": community,
        "inReplyTo": post,
        "content": "<p>first comment!</p>",
        "published": "2025-03-01T13:42:43Z",
    }
    if context is not None:
        page["context"] = context
        note["context"] = context
    peer.serve(f"/post/{number}", page)
    peer.serve(f"/comment/{number}", note)
    return post, comment
