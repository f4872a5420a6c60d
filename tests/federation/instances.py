"""Real Jardin instances for federation tests: each a uvicorn server on its own loopback address, with
its own database and its background workers running, talking to the others over HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from forum.app import create_app
from forum.config import Settings
from forum.web.context import ForumContext
from tests.factories import make_category, make_member


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Instance:
    settings: Settings
    app: Starlette
    http: httpx.AsyncClient

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def forum(self) -> ForumContext:
        context: ForumContext = self.app.state.forum
        return context

    async def member(self, name: str) -> str:
        """A member and an API token for them."""
        from forum.services import accounts

        member = await make_member(self.settings, name)
        async with self.forum.write() as session:
            found = await session.get(type(member), member.id)
            assert found is not None
            _, token = await accounts.create_token(session, found, "tests")
        return token

    async def category(self, slug: str, name: str) -> None:
        await make_category(self.settings, slug, name)

    async def api(self, token: str, method: str, path: str, body: Any = None) -> httpx.Response:
        return await self.http.request(
            method, f"/api/v1{path}", json=body, headers={"Authorization": f"Bearer {token}"}
        )


@asynccontextmanager
async def running(
    host: str, database_url: str, data_dir: Path, *, run_worker: bool = True, **changes: Any
) -> AsyncIterator[Instance]:
    port = free_port(host)
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        base_url=f"http://{host}:{port}",
        secret_key=f"federation-test-{host}",
        federation_allow_private=True,
    ).with_changes(**changes)
    app = create_app(settings, run_worker=run_worker)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        if task.done():
            await task
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=settings.base_url, timeout=10) as http:
            yield Instance(settings, app, http)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0, every: float = 0.1) -> Any:
    """Wait until `check` returns something truthy (federation is asynchronous), or fail with its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"not true after {timeout} s; last value: {last!r}")
