"""editors' desk (issue 15): row versions for compare-and-swap, a login limiter that survives
restarts, and who has a draft open

- `drafts.version` and `consents.version`: every write is `UPDATE ... WHERE id = ? AND
  version = ?` and raises it by one, so two writers who read the same row cannot both win.
- `login_failures`: failed (and in-flight) logins by name and address, read by the limiter.
- `draft_viewers`: who opened a draft's page lately (the page's soft lock).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("drafts") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    with op.batch_alter_table("consents") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_failures_name", "login_failures", ["name", "at"])
    op.create_index("ix_login_failures_address", "login_failures", ["address", "at"])
    op.create_table(
        "draft_viewers",
        sa.Column("draft_id", sa.Integer(), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["draft_id"], ["drafts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("draft_id", "user_name"),
    )


def downgrade() -> None:
    op.drop_table("draft_viewers")
    op.drop_index("ix_login_failures_address", table_name="login_failures")
    op.drop_index("ix_login_failures_name", table_name="login_failures")
    op.drop_table("login_failures")
    with op.batch_alter_table("consents") as batch:
        batch.drop_column("version")
    with op.batch_alter_table("drafts") as batch:
        batch.drop_column("version")
