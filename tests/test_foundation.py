"""Workspace, settings, database and campaign definitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from narratives.core.campaigns import get_campaign, load_campaign_file, load_campaigns
from narratives.core.config import load_settings
from narratives.core.errors import ConfigError, NotFound, WorkspaceError
from narratives.core.workspace import init_workspace
from narratives.store.context import Context
from narratives.store.db import include_object
from narratives.store.schema import metadata, narratives


def test_migrations_match_the_schema(ctx):
    with ctx.db.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
        assert diff == []
        version = conn.execute(sa.text("select version_num from alembic_version")).scalar()
    assert version


def test_sqlite_is_wal_with_foreign_keys(ctx):
    with ctx.db.connect() as conn:
        assert conn.execute(sa.text("pragma journal_mode")).scalar() == "wal"
        assert conn.execute(sa.text("pragma foreign_keys")).scalar() == 1


def test_timestamps_come_back_as_utc(ctx):
    local = datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=1)))
    with ctx.db.begin() as conn:
        conn.execute(
            narratives.insert().values(
                id="a" * 64, created_at=local, updated_at=local, size_bytes=1, label="x"
            )
        )
    with ctx.db.connect() as conn:
        got = conn.execute(sa.select(narratives.c.created_at)).scalar()
    assert got == local and got.tzinfo is not None and got.utcoffset() == timedelta(0)
    with pytest.raises(sa.exc.StatementError), ctx.db.begin() as conn:
        conn.execute(narratives.update().values(updated_at=datetime(2026, 1, 1)))
    assert datetime.now(UTC) > got


def test_settings_refuse_unknown_keys(workspace):
    workspace.settings_path.write_text('[transcribe]\nengin = "x"\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(workspace)
    assert "narratives.toml" in str(exc.value) and "transcribe.engin" in str(exc.value)
    workspace.settings_path.write_text("[transcribe]\nbeam_size = 99\n")
    with pytest.raises(ConfigError, match="transcribe.beam_size"):
        load_settings(workspace)
    workspace.settings_path.write_text("not toml [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(workspace)


def test_init_refuses_to_overwrite(tmp_path):
    init_workspace(tmp_path / "w")
    with pytest.raises(WorkspaceError, match="already exists"):
        init_workspace(tmp_path / "w")
    assert (tmp_path / "w" / "campaigns" / "emotional-equity.toml").exists()


def test_missing_workspace_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NARRATIVES_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(WorkspaceError, match="does not exist"):
        Context.current()


def test_a_folder_init_did_not_make_is_refused_and_left_alone(tmp_path, monkeypatch):
    (tmp_path / "story.flac").write_bytes(b"")
    monkeypatch.setenv("NARRATIVES_HOME", str(tmp_path))
    with pytest.raises(WorkspaceError, match="not a narratives workspace") as exc:
        Context.current()
    assert "narrative init DIR" in exc.value.hint and "NARRATIVES_HOME" in exc.value.hint
    assert [p.name for p in tmp_path.iterdir()] == ["story.flac"]


def test_an_explicit_folder_beats_narratives_home(tmp_path, monkeypatch):
    ws = init_workspace(tmp_path / "w")
    monkeypatch.setenv("NARRATIVES_HOME", str(tmp_path / "nowhere"))
    assert Context.current(tmp_path / "w", read_only=True).workspace == ws


def test_shipped_campaigns_load(workspace):
    slugs = [c.slug for c in load_campaigns(workspace)]
    assert slugs == ["emotional-equity", "neural-mandate"]
    kai = get_campaign(workspace, "emotional-equity")
    assert kai.owner == "Kai Mendoza" and kai.channel_names == ["bluesky", "rss"]
    assert kai.channels.bluesky.password_env.startswith("NARRATIVES_BSKY_")
    assert get_campaign(workspace, "neural-mandate").look.title_line == "a Neuro-Narrative"
    with pytest.raises(NotFound):
        get_campaign(workspace, "nope")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("owner = ", "ownr = "), "ownr"),
        (('timezone = "America/Los_Angeles"', 'timezone = "Mars/Olympus"'), "slots.timezone"),
        (('"mon 09:00"', '"someday 9"'), "slots.weekly"),
        (('text_color = "#fff1e8"', 'text_color = "white"'), "look.text_color"),
        (('slug = "emotional-equity"', 'slug = "other"'), "must match the file name"),
        (
            ('password_env = "NARRATIVES_BSKY_EMOTIONAL_EQUITY"', 'password_env = "hunter2 pw"'),
            "channels.bluesky.password_env",
        ),
    ],
)
def test_bad_campaign_names_file_and_key(workspace, edit, message):
    path = workspace.campaigns_dir / "emotional-equity.toml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as exc:
        load_campaign_file(path)
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_migrations_ignore_the_scheduler_job_table(ctx):
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    store = SQLAlchemyJobStore(engine=ctx.db, tablename="apscheduler_jobs")
    store.start(None, "default")
    with ctx.db.connect() as conn:
        assert "apscheduler_jobs" in sa.inspect(conn).get_table_names()
        mc = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "include_object": include_object},
        )
        assert compare_metadata(mc, metadata) == []
