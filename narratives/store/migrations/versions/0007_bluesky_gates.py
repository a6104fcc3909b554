"""post_stats: likes, reposts, replies and quotes of published Bluesky posts over time (issue 19)

One row per post per pull (`narrative stats pull`, or the scheduler's periodic pull), read back
from the AppView: the time series behind `narrative report`. Reply and quote controls need no
table: they live in the draft's content (`gates`) and on the network beside each post.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "post_stats",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("likes", sa.Integer(), nullable=False),
        sa.Column("reposts", sa.Integer(), nullable=False),
        sa.Column("replies", sa.Integer(), nullable=False),
        sa.Column("quotes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_post_stats_delivery_at", "post_stats", ["delivery_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_post_stats_delivery_at", table_name="post_stats")
    op.drop_table("post_stats")
