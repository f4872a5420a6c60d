"""Shared fixtures: a migrated database per test (SQLite always, PostgreSQL when
FORUM_TEST_DATABASE_URL is set), the real ASGI app, and an HTTP client that fills forms like a browser."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import make_url, text
from starlette.applications import Starlette

from forum import migrate
from forum.app import create_app
from forum.config import Settings
from forum.db import create_engine
from forum.models import Base
from forum.web.context import ForumContext

BASE_URL = "http://127.0.0.1:8000"
PG_URL = os.environ.get("FORUM_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite", *(["postgresql"] if PG_URL else [])]
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


_SYSTEM_GETADDRINFO = socket.getaddrinfo


def _lab_getaddrinfo(host: str | bytes | None, *args: object, **kwargs: object) -> object:
    """`socket.getaddrinfo` for tests: an address literal or `localhost` as the system reads it; any other
    name unknown, as on a machine with no network. The suite sends nothing beyond 127.0.0.0/8, not even a DNS
    query: tests that need a name resolved pass the guarded clients a resolver of their own."""
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name.lower() == "localhost" or _is_address(name):
        return _SYSTEM_GETADDRINFO(host, *args, **kwargs)  # type: ignore[arg-type]
    raise socket.gaierror(socket.EAI_NONAME, f"tests resolve no names ({name!r})")


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


@pytest.fixture(scope="session", autouse=True)
def no_name_resolution() -> Iterator[None]:
    patch = pytest.MonkeyPatch()
    patch.setattr(socket, "getaddrinfo", _lab_getaddrinfo)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (migrating takes a second, copying a millisecond)."""
    path = tmp_path_factory.mktemp("template") / "forum.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> Iterator[str]:
    """A PostgreSQL database of this test run's own, made beside FORUM_TEST_DATABASE_URL's and dropped after.

    Two runs sharing one database truncate each other's rows; a database per run cannot.
    """
    given = make_url(PG_URL)
    name = f"{given.database}_{os.getpid()}_{secrets.token_hex(3)}"
    admin_dsn = given.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(admin_dsn)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = given.set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "forum.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgres_migrated")
    asyncio.run(truncate(url))
    yield url


def module_database(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory, label: str
) -> Iterator[str]:
    """For a module-scoped fixture parametrized over BACKENDS: a copy of the migrated SQLite file, or the
    run's PostgreSQL database emptied, shared by the module's tests (one long-running Jardin per module)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp(label) / "forum.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgres_migrated")
    asyncio.run(truncate(url))
    yield url


async def truncate(url: str) -> None:
    engine = create_engine(url, pool_size=1)
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        base_url=BASE_URL,
        secret_key="test-secret-key-not-for-production",
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    application = create_app(settings, run_worker=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url=BASE_URL) as http:
        yield http


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No request in any test may end in the 500 page: input from people and peers gets a clear 4xx."""
    caplog.set_level(logging.ERROR, logger="forum.errors")
    yield
    errors = [r.getMessage() for r in caplog.records if r.name == "forum.errors" and r.levelno >= logging.ERROR]
    assert errors == []


def forum_of(client: AsyncClient) -> ForumContext:
    """The ForumContext of the app behind an ASGI test client."""
    app: Starlette = client._transport.app  # type: ignore[attr-defined]
    context: ForumContext = app.state.forum
    return context


def csrf_from(page: Response) -> str:
    match = CSRF_FIELD.search(page.text)
    assert match is not None, "the page has no form with a CSRF token"
    return match.group(1)


async def submit(client: AsyncClient, form_url: str, data: dict[str, str], action: str | None = None) -> Response:
    """Fill in the form at `form_url` as a browser would: fetch it, then post with its CSRF token."""
    page = await client.get(form_url)
    return await client.post(
        action or form_url, data={**data, "csrf_token": csrf_from(page)}, headers={"Origin": BASE_URL}
    )


async def register(client: AsyncClient, name: str, password: str = "correct horse battery") -> Response:
    response = await submit(
        client, "/register", {"username": name, "email": f"{name.lower()}@example.org", "password": password}
    )
    assert response.status_code == 303, response.text
    return response
