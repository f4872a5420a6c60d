"""Local accounts: credentials, login sessions, API tokens and moderator role grants."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from forum.models.actors import Actor
from forum.models.base import Base, utcnow


class Member(Base):
    """A local account; its public face is its `Actor`."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # "admin" or "member"; moderator duties are grants (RoleGrant), instance-wide or per category.
    role: Mapped[str] = mapped_column(String(16), default="member")
    language: Mapped[str | None] = mapped_column(String(16))
    theme: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column()

    actor: Mapped[Actor] = relationship(lazy="joined", innerjoin=True)

    @property
    def username(self) -> str:
        return self.actor.username

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class LoginSession(Base):
    """A browser login; the cookie carries its id signed, logout deletes the row."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    user_agent: Mapped[str] = mapped_column(String(255), default="")


class ApiToken(Base):
    """A personal access token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class RoleGrant(Base):
    """A moderator duty (gardener, concierge) given instance-wide or for one category."""

    __tablename__ = "role_grants"
    __table_args__ = (UniqueConstraint("member_id", "role", "category_id", name="uq_role_grants_grant"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
