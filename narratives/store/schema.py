"""Table definitions used by queries. Migrations in `migrations/versions/` create them;
`tests/test_db.py` checks that the two agree (Alembic's compare_metadata finds no diff).

All timestamps are timezone-aware UTC (`core.clock.utcnow()`); SQLite stores them as ISO text.
"""

from __future__ import annotations

from datetime import UTC

import sqlalchemy as sa

from narratives.records.delivery import OPEN

__all__ = [
    "metadata",
    "post_stats",
    "UTCDateTime",
    "narratives",
    "narrative_paths",
    "stage_runs",
    "users",
    "drafts",
    "comments",
    "audit_log",
    "tag_corrections",
    "deliveries",
    "delivery_attempts",
    "consents",
    "feed_items",
    "campaign_assignments",
    "login_failures",
    "draft_viewers",
]

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator):
    """Stores aware datetimes as UTC and gives them back aware (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store aware UTC datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


TS = UTCDateTime()

narratives = sa.Table(
    "narratives",
    metadata,
    # SHA-256 of the recording's bytes: the same audio under two names is one narrative.
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("duration", sa.Float),
    sa.Column("language", sa.String(16)),
    sa.Column("title", sa.Text),
    # The original file name of the first path seen, for display.
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("source", sa.String(32), nullable=False, server_default="file"),
    # The workspace's own copy of the recording, relative to the workspace root
    # (`media/recordings/<sha256>.<ext>`); NULL: kept by reference, see narrative_paths (0008).
    sa.Column("stored_as", sa.Text),
    # Set by `narrative erase`: the row stays as a tombstone, everything else is gone (0008).
    sa.Column("erased_at", TS),
)

narrative_paths = sa.Table(
    "narrative_paths",
    metadata,
    sa.Column(
        "narrative_id",
        sa.String(64),
        sa.ForeignKey("narratives.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("first_seen", TS, nullable=False),
    sa.Column("last_seen", TS, nullable=False),
)

stage_runs = sa.Table(
    "stage_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "narrative_id",
        sa.String(64),
        sa.ForeignKey("narratives.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # transcribe | analyse | render | draft
    sa.Column("stage", sa.String(32), nullable=False),
    # Distinguishes several outputs of one stage (e.g. render: "<campaign>/<format>").
    sa.Column("key", sa.String(128), nullable=False, server_default=""),
    # running | done | failed | skipped
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("engine", sa.String(64)),
    sa.Column("model", sa.Text),
    sa.Column("version", sa.String(64)),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Column("seconds", sa.Float),
    sa.Column("error", sa.Text),
    # The stage's record (small JSON); large artifacts live as files in the workspace.
    sa.Column("output", sa.JSON),
    sa.UniqueConstraint("narrative_id", "stage", "key", name="uq_stage_runs_stage"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    # Sessions carry this number; raising it (logout, new password, disable) ends them all.
    sa.Column("session_epoch", sa.Integer, nullable=False, server_default="0"),
)

drafts = sa.Table(
    "drafts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "narrative_id",
        sa.String(64),
        sa.ForeignKey("narratives.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("campaign", sa.String(64), nullable=False),
    # bluesky | rss
    sa.Column("channel", sa.String(32), nullable=False),
    # pending_review | approved | rejected | changes_requested
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("template", sa.Text, nullable=False),
    sa.Column("template_hash", sa.String(64), nullable=False),
    # The text the template produced, and the current text (edited or not). For Bluesky
    # a JSON list of posts (a thread); for RSS a JSON object (title, summary, content...).
    sa.Column("generated", sa.JSON, nullable=False),
    sa.Column("content", sa.JSON, nullable=False),
    sa.Column("edited", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("data", sa.JSON),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    # Raised by one on every write, which names the one it read: `WHERE version = ?` (0006).
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.UniqueConstraint("narrative_id", "campaign", "channel", name="uq_drafts_target"),
)

comments = sa.Table(
    "comments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "draft_id", sa.Integer, sa.ForeignKey("drafts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    # draft | narrative | delivery | consent | user
    sa.Column("object_type", sa.String(32), nullable=False),
    sa.Column("object_id", sa.String(64), nullable=False),
    sa.Column("before", sa.JSON),
    sa.Column("after", sa.JSON),
    sa.Column("detail", sa.Text),
    sa.Index("ix_audit_object", "object_type", "object_id"),
)

tag_corrections = sa.Table(
    "tag_corrections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "narrative_id",
        sa.String(64),
        sa.ForeignKey("narratives.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("campaign", sa.String(64), nullable=False),
    sa.Column("tag", sa.String(64), nullable=False),
    # True: the tag applies (use the narrative as an example); False: it does not.
    sa.Column("applies", sa.Boolean, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("at", TS, nullable=False),
)

#: At most one open delivery per draft (`records.delivery.OPEN`; migration 0004 made the index).
OPEN_DELIVERY_WHERE = "state IN ({})".format(", ".join(f"'{state}'" for state in OPEN))

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "draft_id", sa.Integer, sa.ForeignKey("drafts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("campaign", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    # scheduled | publishing | published | failed | missed | cancelled | withdrawing | withdrawn
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("scheduled_at", TS, nullable=False),
    # Fixed at scheduling time so that a retry finds the record instead of posting twice.
    sa.Column("rkey", sa.String(32)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retry_at", TS),
    sa.Column("last_error", sa.Text),
    sa.Column("published_at", TS),
    # Per-post progress of a thread: [{"rkey", "uri", "cid"}...]
    sa.Column("posts", sa.JSON),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    # The claim on a `publishing` delivery: "host:pid:token" of the process posting it, and
    # when it last showed progress (a lease; see store.claims.claim_is_stale).
    sa.Column("claimed_by", sa.String(128)),
    sa.Column("claimed_at", TS),
    # The draft's content as published: what a feed shows, whatever the draft says later.
    sa.Column("content", sa.JSON),
    sa.Index("ix_deliveries_due", "state", "scheduled_at"),
    # One open delivery per draft, enforced by the database (two schedulers racing).
    sa.Index(
        "ux_deliveries_open_draft",
        "draft_id",
        unique=True,
        sqlite_where=sa.text(OPEN_DELIVERY_WHERE),
        postgresql_where=sa.text(OPEN_DELIVERY_WHERE),
    ),
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        sa.Integer,
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("at", TS, nullable=False),
    # published | transient_error | permanent_error | found_existing | rate_limited
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("error", sa.Text),
)

consents = sa.Table(
    "consents",
    metadata,
    sa.Column(
        "narrative_id",
        sa.String(64),
        sa.ForeignKey("narratives.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("given_by", sa.Text, nullable=False),
    sa.Column("given_at", TS, nullable=False),
    # form | recording | in_person
    sa.Column("method", sa.String(32), nullable=False),
    sa.Column("channels", sa.JSON, nullable=False),
    sa.Column("anonymous", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("expires_at", TS),
    sa.Column("withdrawn_at", TS),
    sa.Column("notes", sa.Text),
    sa.Column("updated_at", TS, nullable=False),
    # Raised by one on every write, which names the one it read (0006).
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
)

#: Failed logins, and attempts in flight (reserved before the password is checked), for the
#: login limiter (`web.security.LoginLimiter`); old rows are pruned by it.
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Index("ix_login_failures_name", "name", "at"),
    sa.Index("ix_login_failures_address", "address", "at"),
)

#: Who opened a draft's page lately (the page's soft lock), written by `store.drafts`.
draft_viewers = sa.Table(
    "draft_viewers",
    metadata,
    sa.Column(
        "draft_id",
        sa.Integer,
        sa.ForeignKey("drafts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("user_name", sa.String(64), primary_key=True),
    sa.Column("seen_at", TS, nullable=False),
)

feed_items = sa.Table(
    "feed_items",
    metadata,
    # Partner feed entries already pulled, so a second pull adds nothing.
    sa.Column("feed_url", sa.Text, primary_key=True),
    sa.Column("guid", sa.Text, primary_key=True),
    sa.Column("enclosure_url", sa.Text),
    sa.Column("narrative_id", sa.String(64), sa.ForeignKey("narratives.id", ondelete="SET NULL")),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("pulled_at", TS, nullable=False),
)

post_stats = sa.Table(
    "post_stats",
    metadata,
    # Issue 19: a published Bluesky post's counts as the AppView reported them at `at`; one row
    # per post per pull (store/post_stats.py writes them).
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        sa.Integer,
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("likes", sa.Integer, nullable=False),
    sa.Column("reposts", sa.Integer, nullable=False),
    sa.Column("replies", sa.Integer, nullable=False),
    sa.Column("quotes", sa.Integer, nullable=False),
    sa.Index("ix_post_stats_delivery_at", "delivery_id", "at"),
)

campaign_assignments = sa.Table(
    "campaign_assignments",
    metadata,
    # Append-only: the latest row per (narrative, campaign) is the explicit choice in force.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "narrative_id",
        sa.String(64),
        sa.ForeignKey("narratives.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("campaign", sa.String(64), nullable=False),
    # True: staff said the story is for this campaign; False: explicitly not.
    sa.Column("assigned", sa.Boolean, nullable=False),
    # intake | sidecar | cli | web
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Index("ix_campaign_assignments_target", "narrative_id", "campaign"),
)
