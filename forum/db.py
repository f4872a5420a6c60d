"""Database engines and sessions: SQLite pragmas (WAL, foreign keys, busy timeout) and the PostgreSQL pool."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from forum.sqlite_driver import OneCallDBAPI

SQLITE_BUSY_TIMEOUT_MS = 5000
# SQLite takes one writer at a time and each aiosqlite connection is a thread of its own: past a
# few connections, more add GIL contention and page-cache memory, not throughput.
SQLITE_POOL_SIZE = 4


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine for `database_url`, tuned for the forum's access pattern."""
    if database_url.startswith("sqlite"):
        engine = create_async_engine(
            database_url,
            # One call to aiosqlite's thread per statement rather than four (see forum.sqlite_driver).
            **({"module": OneCallDBAPI()} if database_url.startswith("sqlite+aiosqlite:") else {}),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=min(pool_size, SQLITE_POOL_SIZE),
            max_overflow=0,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
        # PgBouncer in transaction mode cannot keep prepared statements between transactions.
        connect_args={"statement_cache_size": 0} if "pgbouncer" in database_url else {},
    )


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def is_sqlite(engine: AsyncEngine | Engine) -> bool:
    return engine.dialect.name == "sqlite"
