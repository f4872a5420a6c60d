"""Housekeeping the background runner does: expired sessions go."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from forum.models import LoginSession
from forum.models.base import utcnow


async def prune_expired_sessions(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session, session.begin():
        result = await session.execute(delete(LoginSession).where(LoginSession.expires_at < utcnow()))
    return int(result.rowcount)  # type: ignore[attr-defined]
