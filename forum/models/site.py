"""Instance-wide settings and the cache invalidation log that keeps every process's page cache fresh."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from forum.models.base import Base, utcnow


class InstanceSetting(Base):
    """One key of the instance's settings (name, description, rules, theme, setup code…)."""

    __tablename__ = "instance_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[object] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CacheInvalidation(Base):
    """A cached page key that went stale; every process polls the rows after the last one it saw."""

    __tablename__ = "cache_invalidations"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
