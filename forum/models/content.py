"""Categories, threads, posts and their revisions: what members and peers write."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from forum.models.actors import Actor
from forum.models.base import Base, utcnow


class Category(Base):
    """A place for threads; federated as the `Group` actor it points at."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), unique=True)
    slug: Mapped[str] = mapped_column(String(300), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer, default=0)
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    local: Mapped[bool] = mapped_column(Boolean, default=True)
    # Follow requests wait for a concierge (`manuallyApprovesFollowers`).
    approve_followers: Mapped[bool] = mapped_column(Boolean, default=False)
    # Only moderators open threads (`postingRestrictedToMods`).
    posting_restricted_to_mods: Mapped[bool] = mapped_column(Boolean, default=False)
    thread_count: Mapped[int] = mapped_column(Integer, default=0)
    post_count: Mapped[int] = mapped_column(Integer, default=0)
    last_activity_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    actor: Mapped[Actor] = relationship(lazy="joined", innerjoin=True)


class Thread(Base):
    __tablename__ = "threads"
    __table_args__ = (
        Index("ix_threads_listing", "category_id", "pinned", "last_activity_at", "id"),
        Index("ix_threads_recent", "last_activity_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    ap_id: Mapped[str | None] = mapped_column(String(2048), unique=True)
    # The thread's FEP-7888 `context` collection id.
    context_id: Mapped[str | None] = mapped_column(String(2048), unique=True)
    local: Mapped[bool] = mapped_column(Boolean, default=True)
    title: Mapped[str] = mapped_column(String(300))
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    post_count: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped on every change to the thread or its posts: the page cache and ETags key on it.
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_post_id: Mapped[int | None] = mapped_column(Integer)
    # A remote thread's backfill from its `context` collection: due since then (while one runs, the end of
    # its lease), and when the last one ended, so a thread met again is not walked again for some hours.
    backfill_due_at: Mapped[datetime | None] = mapped_column(index=True)
    backfilled_at: Mapped[datetime | None] = mapped_column()

    category: Mapped[Category] = relationship(lazy="raise")
    author: Mapped[Actor] = relationship(lazy="raise")


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (Index("ix_posts_thread_position", "thread_id", "position", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    # 1 for the opening post, then 2, 3…: pages are ranges of it, whatever the thread's size.
    position: Mapped[int] = mapped_column(Integer)
    author_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    ap_id: Mapped[str | None] = mapped_column(String(2048), unique=True)
    local: Mapped[bool] = mapped_column(Boolean, default=True)
    in_reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    edited_at: Mapped[datetime | None] = mapped_column()
    deleted_at: Mapped[datetime | None] = mapped_column()
    removed_at: Mapped[datetime | None] = mapped_column()
    revision_count: Mapped[int] = mapped_column(Integer, default=0)
    upvotes: Mapped[int] = mapped_column(Integer, default=0)
    downvotes: Mapped[int] = mapped_column(Integer, default=0)
    # Where a remote post is shown at its origin (its `url`), when it differs from its id.
    remote_url: Mapped[str | None] = mapped_column(String(2048))

    author: Mapped[Actor] = relationship(lazy="raise")

    @property
    def is_gone(self) -> bool:
        return self.deleted_at is not None or self.removed_at is not None


class PostRevision(Base):
    """An earlier text of a post, kept on every edit."""

    __tablename__ = "post_revisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str | None] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    editor_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
