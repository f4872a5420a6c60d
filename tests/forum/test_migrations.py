"""The Alembic history on fresh databases: up, down to base, up again, and the models agree with the result.

Each test makes its own database (a new SQLite file, or a throwaway PostgreSQL database on the test
server), never the fixtures' pre-migrated one, so the whole history runs every time.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from forum import migrate
from forum.db import SQLITE_BUSY_TIMEOUT_MS, create_engine
from forum.models import Base
from tests.conftest import PG_URL


@pytest.fixture(params=["sqlite", *(["postgresql"] if PG_URL else [])])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database that exists only for this test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"jardin_mig_{secrets.token_hex(6)}"
    asyncio.run(admin_execute(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def admin_execute(statement: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    engine = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


def _differences(url: str) -> list[Any]:
    async def compare() -> list[Any]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as connection:

                def run(sync: Connection) -> list[Any]:
                    context = MigrationContext.configure(sync, opts={"compare_type": True})
                    return list(compare_metadata(context, Base.metadata))

                return await connection.run_sync(run)
        finally:
            await engine.dispose()

    return asyncio.run(compare())


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as connection:
                return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _current(url: str) -> str | None:
    async def read() -> str | None:
        engine = create_engine(url, pool_size=1)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_upgrade_downgrade_upgrade_matches_the_models(fresh_database: str) -> None:
    model_tables = set(Base.metadata.tables)
    head = migrate.head_revision(fresh_database)
    assert head is not None

    migrate.upgrade(fresh_database)
    assert _current(fresh_database) == head
    assert model_tables <= _tables(fresh_database)
    assert _differences(fresh_database) == []

    migrate.downgrade(fresh_database, "base")
    assert _current(fresh_database) is None
    assert _tables(fresh_database) - {"alembic_version"} == set()

    migrate.upgrade(fresh_database)
    assert _current(fresh_database) == head
    assert _differences(fresh_database) == []


def test_upgrade_is_idempotent(fresh_database: str) -> None:
    migrate.upgrade(fresh_database)
    migrate.upgrade(fresh_database)
    assert _current(fresh_database) == migrate.head_revision(fresh_database)


def test_sqlite_pragmas(tmp_path: Path) -> None:
    async def read() -> dict[str, object]:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'pragmas.db'}", pool_size=1)
        try:
            async with engine.connect() as connection:
                return {
                    name: await connection.scalar(text(f"PRAGMA {name}"))
                    for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
                }
        finally:
            await engine.dispose()

    pragmas = asyncio.run(read())
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL: safe with WAL, one fsync per checkpoint instead of per commit
        "foreign_keys": 1,
        "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
    }
    assert SQLITE_BUSY_TIMEOUT_MS == 5000


def test_sqlite_enforces_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fk.db'}"
    migrate.upgrade(url)

    async def orphan_post() -> str:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    text(
                        "INSERT INTO posts (thread_id, position, author_id, local, source, html, created_at,"
                        " revision_count) VALUES (999, 1, 999, 1, 'x', 'x', '2024-01-01', 0)"
                    )
                )
        except Exception as error:  # the driver's IntegrityError, wrapped by SQLAlchemy
            return type(error).__name__
        finally:
            await engine.dispose()
        return "accepted"

    assert asyncio.run(orphan_post()) == "IntegrityError"
