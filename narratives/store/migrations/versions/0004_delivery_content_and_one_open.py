"""deliveries.content, and at most one open delivery per draft

- `content`: the draft's content as it was when the delivery was published. A feed is built
  from it, so an edit made after publishing (which sends the draft back to review) never goes
  out unreviewed.
- A partial unique index on `draft_id` over the open states (scheduled, publishing,
  published, failed): two processes scheduling the same draft at once can no longer both
  insert, which would post it twice. Duplicates already present are cancelled first, keeping
  the furthest along (published, then publishing, ...) and, among equals, the oldest.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OPEN = ("scheduled", "publishing", "published", "failed")
_WHERE = "state IN ('scheduled', 'publishing', 'published', 'failed')"
_RANK = {"published": 0, "publishing": 1, "failed": 2, "scheduled": 3}


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("content", sa.JSON(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(f"SELECT id, draft_id, state FROM deliveries WHERE {_WHERE} ORDER BY id")
    ).all()
    keep: dict[int, tuple[int, int]] = {}
    for row in rows:
        rank = (_RANK[row.state], row.id)
        if row.draft_id not in keep or rank < keep[row.draft_id]:
            keep[row.draft_id] = rank
    extra = [r.id for r in rows if keep[r.draft_id][1] != r.id]
    for delivery_id in extra:
        conn.execute(
            sa.text("UPDATE deliveries SET state = 'cancelled', last_error = :why WHERE id = :id"),
            {"id": delivery_id, "why": "a second open delivery of the same draft (migration 0004)"},
        )
    op.create_index(
        "ux_deliveries_open_draft",
        "deliveries",
        ["draft_id"],
        unique=True,
        sqlite_where=sa.text(_WHERE),
        postgresql_where=sa.text(_WHERE),
    )


def downgrade() -> None:
    op.drop_index("ux_deliveries_open_draft", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("content")
