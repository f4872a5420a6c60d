"""The SQLite adapter (`forum.sqlite_driver`): one call to aiosqlite's thread per statement, with the
DB-API behaviour SQLAlchemy relies on kept: ids of inserted rows, counts of updated rows, errors, transactions."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from forum.db import create_engine, sessionmaker
from forum.models import Instance
from forum.sqlite_driver import OneCallConnection, write_committed


@pytest.fixture
async def engine(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[AsyncEngine]:
    path = tmp_path / "forum.db"
    shutil.copy(sqlite_template, path)
    made = create_engine(f"sqlite+aiosqlite:///{path}")
    yield made
    await made.dispose()


def count_calls(patch: pytest.MonkeyPatch) -> list[str]:
    """The functions handed to aiosqlite's connection threads, by name, from now on."""
    calls: list[str] = []
    real = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    patch.setattr(aiosqlite.Connection, "_execute", counted)
    return calls


def instance(domain: str) -> dict[str, Any]:
    return {"domain": domain, "failures": 0, "unreachable": False, "understands_groups": False}


async def test_the_engine_uses_the_one_call_adapter(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        assert isinstance(raw.dbapi_connection, OneCallConnection)


async def test_a_read_in_a_session_is_one_call_to_the_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = sessionmaker(engine)
    async with sessions() as session:  # a first connection, made and set up before counting
        await session.scalar(select(func.count()).select_from(Instance))
    calls = count_calls(monkeypatch)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Instance)) is not None
    # The statement, and nothing to end: no transaction was begun, so the pool's rollback is spared.
    assert calls == ["_run"]


async def test_writes_report_ids_and_counts_and_commit(engine: AsyncEngine) -> None:
    sessions = sessionmaker(engine)
    async with sessions() as session, session.begin():
        first = Instance(**instance("first"))
        session.add(first)
        await session.flush()
        assert first.id is not None  # the inserted row's id, read back by the ORM
        result = await session.execute(update(Instance).where(Instance.domain == "first").values(software="lemmy"))
        assert result.rowcount == 1  # type: ignore[attr-defined]
        none = await session.execute(update(Instance).where(Instance.domain == "nowhere").values(software="x"))
        assert none.rowcount == 0  # type: ignore[attr-defined]
        await session.execute(insert(Instance), [instance("second"), instance("third")])  # executemany
    async with sessions() as session:
        names = dict((await session.execute(select(Instance.domain, Instance.software))).all())
    assert names["first"] == "lemmy" and {"second", "third"} <= names.keys()


async def test_a_rolled_back_write_leaves_nothing(engine: AsyncEngine) -> None:
    sessions = sessionmaker(engine)
    async with sessions() as session:
        async with session.begin():
            session.add(Instance(**instance("kept")))
        await session.begin()
        session.add(Instance(**instance("dropped")))
        await session.flush()
        await session.rollback()
    async with sessions() as session:
        slugs = set((await session.scalars(select(Instance.domain))).all())
    assert "kept" in slugs and "dropped" not in slugs


async def test_errors_are_sqlalchemy_errors_and_the_connection_stays_usable(engine: AsyncEngine) -> None:
    sessions = sessionmaker(engine)
    async with sessions() as session, session.begin():
        session.add(Instance(**instance("twice")))
    with pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            session.add(Instance(**instance("twice")))
    async with engine.connect() as connection:
        with pytest.raises(Exception, match="no such table"):
            await connection.execute(text("SELECT * FROM no_such_table"))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Instance).where(Instance.domain == "twice")) == 1


async def test_a_second_writer_waits_for_the_first_and_both_land(engine: AsyncEngine) -> None:
    sessions = sessionmaker(engine)
    first_wrote = asyncio.Event()

    async def first() -> None:
        async with sessions() as session, session.begin():
            session.add(Instance(**instance("one")))
            await session.flush()  # holds SQLite's write lock until the commit
            first_wrote.set()
            await asyncio.sleep(0.3)

    async def second() -> None:
        await first_wrote.wait()
        async with sessions() as session, session.begin():
            session.add(Instance(**instance("two")))

    await asyncio.gather(first(), second())
    async with sessions() as session:
        slugs = set((await session.scalars(select(Instance.domain))).all())
    assert {"one", "two"} <= slugs


async def test_rows_stream_from_a_server_side_cursor(engine: AsyncEngine) -> None:
    sessions = sessionmaker(engine)
    async with sessions() as session, session.begin():
        await session.execute(insert(Instance), [instance(f"c{n}") for n in range(30)])
    async with engine.connect() as connection:
        streamed = await connection.stream(select(Instance.domain).order_by(Instance.domain))
        slugs = [slug async for (slug,) in streamed]
    assert len([slug for slug in slugs if slug.startswith("c")]) >= 30


async def test_write_committed_writes_every_row_and_commits_in_one_call(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert_sql = (
        "INSERT INTO instances (domain, failures, unreachable, understands_groups, created_at)"
        " VALUES (?, 0, 0, 0, '2026-11-24 09:00:00.000000')"
    )
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        assert isinstance(raw.driver_connection, aiosqlite.Connection)
        calls = count_calls(monkeypatch)
        await write_committed(raw.driver_connection, insert_sql, [("a.example",), ("b.example",)])
        assert calls == ["_write_committed"]
        # One row breaks a constraint (the domain is unique): none of its batch is kept, and the error is raised.
        with pytest.raises(sqlite3.IntegrityError):
            await write_committed(raw.driver_connection, insert_sql, [("c.example",), ("a.example",)])
    sessions = sessionmaker(engine)
    async with sessions() as session:  # another connection: what it sees was committed
        domains = set(await session.scalars(select(Instance.domain)))
    assert domains == {"a.example", "b.example"}
