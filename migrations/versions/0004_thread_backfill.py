"""threads: when a remote thread's backfill is due and when it last ran

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import forum.models.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("threads", sa.Column("backfill_due_at", forum.models.base.UTCDateTime(timezone=True), nullable=True))
    op.add_column("threads", sa.Column("backfilled_at", forum.models.base.UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_threads_backfill_due_at", "threads", ["backfill_due_at"])


def downgrade() -> None:
    op.drop_index("ix_threads_backfill_due_at", table_name="threads")
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy would drop `threads`, cascading to its posts.
    op.drop_column("threads", "backfilled_at")
    op.drop_column("threads", "backfill_due_at")
