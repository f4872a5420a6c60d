"""follows: how far a member has read a thread they watch

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("follows", sa.Column("last_read_position", sa.Integer(), nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy would recreate the table for nothing.
    op.drop_column("follows", "last_read_position")
