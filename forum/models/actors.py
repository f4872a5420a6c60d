"""Actors: one row per person, group or application the forum knows, local or remote.

Follows, bans and blocks point at actors, so they work the same for local and remote ones.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Enum, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from forum.models.base import Base, utcnow


class ActorKind(enum.StrEnum):
    PERSON = "person"
    GROUP = "group"
    APPLICATION = "application"


class Actor(Base):
    __tablename__ = "actors"
    __table_args__ = (UniqueConstraint("username_key", "domain", name="uq_actors_handle"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ap_id: Mapped[str] = mapped_column(String(2048), unique=True)
    local: Mapped[bool] = mapped_column(Boolean, index=True)
    kind: Mapped[ActorKind] = mapped_column(
        Enum(ActorKind, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    username: Mapped[str] = mapped_column(String(255))
    # Lower-cased username: names are unique case-insensitively, on both databases.
    username_key: Mapped[str] = mapped_column(String(255))
    # Empty for local actors, so the (lower(username), domain) index keeps one namespace per host.
    domain: Mapped[str] = mapped_column(String(255), default="")
    display_name: Mapped[str] = mapped_column(String(255), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    icon_url: Mapped[str | None] = mapped_column(String(2048))
    url: Mapped[str | None] = mapped_column(String(2048))
    inbox_url: Mapped[str | None] = mapped_column(String(2048))
    shared_inbox_url: Mapped[str | None] = mapped_column(String(2048))
    outbox_url: Mapped[str | None] = mapped_column(String(2048))
    followers_url: Mapped[str | None] = mapped_column(String(2048))
    public_key_pem: Mapped[str | None] = mapped_column(Text)
    private_key_pem: Mapped[str | None] = mapped_column(Text)
    # Indexed: every signed request to an inbox looks its signer up by key id.
    key_id: Mapped[str | None] = mapped_column(String(2048), index=True)
    featured_url: Mapped[str | None] = mapped_column(String(2048))
    # A remote actor that approves its followers by hand (a local category says so in its own row).
    manually_approves_followers: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when its server answered 410: nothing more is delivered to it.
    gone_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    fetched_at: Mapped[datetime | None] = mapped_column()

    @property
    def handle(self) -> str:
        return self.username if self.local else f"{self.username}@{self.domain}"

    @property
    def shown_name(self) -> str:
        return self.display_name or self.username
