"""recordings kept in the workspace, and erased narratives (issue 16)

- `narratives.stored_as`: where the workspace keeps its own copy of the recording, relative to
  the workspace root (`media/recordings/<sha256>.<ext>`); NULL for a recording kept by
  reference (`process --by-reference`, and every row made before this revision), read from
  `narrative_paths` as before.
- `narratives.erased_at`: when `narrative erase` removed the narrator's data; the row stays as
  a tombstone (its id is the recording's hash, so the same file is recognised if it comes back).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("narratives") as batch:
        batch.add_column(sa.Column("stored_as", sa.Text(), nullable=True))
        batch.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("narratives") as batch:
        batch.drop_column("erased_at")
        batch.drop_column("stored_as")
