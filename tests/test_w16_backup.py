"""`narrative backup DEST` and `narrative restore SRC DIR`: a consistent copy of the workspace
while others write, restored with the same rows and files (issue 16, item 6)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tarfile
import threading
import tomllib
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.workspace import Workspace
from narratives.stages.ingest import RECORDINGS_DIR, register, source_path
from narratives.store.context import Context
from narratives.store.schema import audit_log, narratives
from tests.test_w16_erase import full_story, run
from tests.test_w16_ingest import a_recording


def digests(root) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def rows(db_file, table: str) -> list[tuple]:
    conn = sqlite3.connect(db_file)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("form", ["folder", "archive"])
def test_backup_while_a_thread_writes_then_restore(ctx, tmp_path, form):
    """A thread keeps writing audit rows (hundreds) while the backup runs; the restored
    database holds a consistent prefix of them and passes its integrity check, and every
    file comes back with its checksum."""
    story = full_story(ctx, tmp_path)
    source_db = ctx.workspace.database_path
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        while not stop.is_set() or len(written) < 300:
            with ctx.db.begin() as conn:
                conn.execute(
                    audit_log.insert().values(
                        at=datetime.now(UTC),
                        actor="writer",
                        action="test.write",
                        object_type="test",
                        object_id=str(len(written)),
                    )
                )
            written.append(1)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 100:  # the backup starts while the writes are under way
            threading.Event().wait(0.005)
        dest = tmp_path / ("backup.tar.gz" if form == "archive" else "backup")
        r = run("backup", str(dest), "--json")
        during = len(written)
    finally:
        stop.set()
        thread.join(120)
    assert r.exit_code == 0, r.output
    manifest = json.loads(r.output)
    assert len(written) >= 300 and during > 100
    if form == "archive":
        with tarfile.open(dest) as tar:
            assert "narratives.db" in tar.getnames() and "backup.json" in tar.getnames()

    target = tmp_path / "restored"
    r = run("restore", str(dest), str(target), "--json")
    assert r.exit_code == 0, r.output
    restored_db = target / "narratives.db"
    assert rows(restored_db, "pragma_integrity_check") == [("ok",)]
    # The writer's rows in the backup are exactly the first N the source has: one snapshot.
    mine = "SELECT object_id FROM audit_log WHERE actor = 'writer' ORDER BY id"
    got = [r[0] for r in sqlite3.connect(restored_db).execute(mine)]
    source = [r[0] for r in sqlite3.connect(source_db).execute(mine)]
    assert 100 <= len(got) <= during + 1 and got == source[: len(got)]
    assert manifest["database"]["rows"]["audit_log"] == len(rows(restored_db, "audit_log"))
    # Every other table is as it was (nothing else wrote).
    for table in ("narratives", "drafts", "consents", "deliveries", "comments"):
        assert rows(restored_db, table) == rows(source_db, table), table
    # Files: the recording copy, generated files, settings, campaigns, templates.
    restored, original = digests(target), digests(ctx.workspace.root)
    for path in restored:
        if path not in ("narratives.db", "backup.json"):
            assert restored[path] == original[path], path
    media = {p for p in original if p.startswith(("media/", "campaigns/", "templates/"))}
    assert media <= set(restored)
    assert f"{RECORDINGS_DIR}/{story['id']}.wav" in restored

    # The restored folder is a workspace whose recordings are its own.
    new = Context(Workspace(target).check())
    assert source_path(new, story["id"]) == target / RECORDINGS_DIR / f"{story['id']}.wav"
    with new.db.connect() as conn:
        assert conn.execute(sa.select(narratives.c.id)).scalars().all() == [story["id"]]


def test_backup_leaves_out_secrets_and_half_written_files(ctx, tmp_path):
    original, nid = a_recording(tmp_path, "a.wav")
    register(ctx, original)
    (ctx.workspace.root / RECORDINGS_DIR / f".{nid}.wav.x1.part").write_bytes(b"half")
    (ctx.workspace.state_dir / "bluesky-session").write_text("secret")
    r = run("backup", str(tmp_path / "b"))
    assert r.exit_code == 0, r.output
    names = set(digests(tmp_path / "b"))
    assert f"{RECORDINGS_DIR}/{nid}.wav" in names
    assert not any(".part" in n or n.startswith(".narratives") for n in names)


def test_backup_and_restore_bad_input(ctx, tmp_path, workspace):
    full_story(ctx, tmp_path)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    r = run("backup", str(busy))
    assert r.exit_code == 2 and "not empty" in r.output
    r = run("backup", str(workspace.root / "inside"))
    assert r.exit_code == 2 and "inside the workspace" in r.output
    # A damaged backup is refused and nothing is restored.
    assert run("backup", str(tmp_path / "good")).exit_code == 0
    recording = next((tmp_path / "good" / RECORDINGS_DIR).iterdir())
    recording.write_bytes(b"changed")
    r = run("restore", str(tmp_path / "good"), str(tmp_path / "r1"))
    assert r.exit_code == 2 and "damaged" in r.output and recording.name in r.output
    assert not (tmp_path / "r1").exists()
    r = run("restore", str(tmp_path / "nothing"), str(tmp_path / "r2"))
    assert r.exit_code == 2
    not_a_backup = tmp_path / "plain"
    not_a_backup.mkdir()
    (not_a_backup / "a.txt").write_text("a")
    r = run("restore", str(not_a_backup), str(tmp_path / "r3"))
    assert r.exit_code == 2 and "not a narratives backup" in r.output
    r = run("restore", str(tmp_path / "good"), str(busy))
    assert r.exit_code == 2 and "not empty" in r.output


def test_a_postgres_workspace_is_told_to_use_pg_dump(workspace, tmp_path):
    settings = workspace.settings_path
    text = settings.read_text().replace(
        'url = ""', 'url = "postgresql+psycopg://kai:hunter2@127.0.0.1:1/narratives"'
    )
    settings.write_text(text)
    r = run("backup", str(tmp_path / "b"))
    assert r.exit_code == 2 and "pg_dump" in r.output
    assert "hunter2" not in r.output and not (tmp_path / "b").exists()


def test_a_damaged_database_is_a_named_error(ctx, tmp_path, workspace):
    full_story(ctx, tmp_path)
    ctx.db.dispose()
    workspace.database_path.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        workspace.database_path.with_name(workspace.database_path.name + suffix).unlink(
            missing_ok=True
        )
    r = run("backup", str(tmp_path / "b"))
    assert r.exit_code == 9 and str(workspace.database_path) in r.output
    assert "Traceback" not in r.output and not (tmp_path / "b").exists()


def _external_database(workspace, tmp_path, *, line: str | None = None):
    """The workspace's settings point at a SQLite file outside it (with a comment to keep);
    a story is written there. Returns the Context and the external file."""
    external = tmp_path / "elsewhere" / "shared.db"
    external.parent.mkdir()
    url = f"sqlite:///{external}"
    text = workspace.settings_path.read_text()
    assert 'url = ""' in text
    workspace.settings_path.write_text(
        text.replace('url = ""', line.format(url=url) if line else f'url = "{url}"  # ours')
    )
    ctx = Context(workspace)
    full_story(ctx, tmp_path)
    assert external.is_file() and not workspace.database_path.exists()
    return ctx, external


def test_restore_points_the_settings_at_the_restored_database(workspace, tmp_path):
    """A backup of a workspace whose [database] url names a SQLite file elsewhere holds a
    snapshot of it; the restored workspace opens that snapshot, not the original file."""
    ctx, external = _external_database(workspace, tmp_path)
    assert run("backup", str(tmp_path / "b")).exit_code == 0
    # After the backup the original database changes: the restore must not see it.
    with ctx.db.begin() as conn:
        conn.execute(narratives.delete())
    ctx.db.dispose()

    r = run("restore", str(tmp_path / "b"), str(tmp_path / "r"), "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["settings_changed"] == {
        "file": "narratives.toml",
        "key": "database.url",
        "was": f"sqlite:///{external}",
        "now": "",
    }
    assert report["warnings"] == []
    settings = tmp_path / "r" / "narratives.toml"
    text = settings.read_text()
    assert tomllib.loads(text)["database"]["url"] == ""
    # One line changed (and a comment saying so); the rest of the file, comments too, stays.
    before = workspace.settings_path.read_text().splitlines()
    after = text.splitlines()
    assert len(after) == len(before) + 1
    assert [a for a in after if a not in before] == [
        f'# `narrative restore` pointed this at the backup\'s database; it was "sqlite:///{external}"',
        'url = ""',
    ]
    assert "# Empty: SQLite file narratives.db in the workspace." in text

    restored = Context(Workspace(tmp_path / "r").check())
    with restored.db.connect() as conn:
        assert len(conn.execute(sa.select(narratives.c.id)).all()) == 1  # the snapshot's row
    assert restored.db.url.database == str(tmp_path / "r" / "narratives.db")

    # The command's words say what changed.
    r = run("restore", str(tmp_path / "b"), str(tmp_path / "r2"))
    assert r.exit_code == 0, r.output
    assert f'[database] url was sqlite:///{external}, now ""' in r.output.replace("\n", "")


@pytest.mark.parametrize(
    "line",
    ['database.url = "{url}"', 'database = {{ url = "{url}" }}', "url = '{url}'"],
)
def test_restore_changes_other_spellings_of_the_url(workspace, tmp_path, line):
    if line.startswith("database"):
        # Top-level keys come before any table: replace the whole [database] table.
        text = workspace.settings_path.read_text().replace("[database]\n", "")
        workspace.settings_path.write_text(text)
    ctx, _external = _external_database(workspace, tmp_path, line=line)
    ctx.db.dispose()
    assert run("backup", str(tmp_path / "b")).exit_code == 0
    r = run("restore", str(tmp_path / "b"), str(tmp_path / "r"), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["settings_changed"]["now"] == ""
    data = tomllib.loads((tmp_path / "r" / "narratives.toml").read_text())
    assert data["database"] == {"url": ""}
    assert data == {**tomllib.loads(workspace.settings_path.read_text()), "database": {"url": ""}}


def test_restore_warns_when_the_environment_names_the_database(workspace, tmp_path, monkeypatch):
    ctx, external = _external_database(workspace, tmp_path)
    ctx.db.dispose()
    assert run("backup", str(tmp_path / "b")).exit_code == 0
    monkeypatch.setenv("narratives_database__url", f"sqlite:///{external}")
    r = CliRunner().invoke(cli, ["restore", str(tmp_path / "b"), str(tmp_path / "r"), "--json"])
    assert r.exit_code == 0, r.output
    assert "narratives_database__url" in r.stderr and "unset it" in r.stderr
    [warning] = json.loads(r.stdout)["warnings"]
    assert "wins over narratives.toml" in warning


def test_restore_leaves_settings_that_name_no_other_database(ctx, tmp_path):
    full_story(ctx, tmp_path)
    assert run("backup", str(tmp_path / "b")).exit_code == 0
    r = run("restore", str(tmp_path / "b"), str(tmp_path / "r"), "--json")
    assert json.loads(r.output)["settings_changed"] is None
    assert (tmp_path / "r" / "narratives.toml").read_bytes() == (
        ctx.workspace.settings_path.read_bytes()
    )


def test_restore_refuses_settings_it_cannot_change(workspace, tmp_path):
    """A url spread over lines is not rewritten by guesswork: refused, nothing restored."""
    ctx, _external = _external_database(workspace, tmp_path, line='url = """\n{url}"""')
    ctx.db.dispose()
    assert run("backup", str(tmp_path / "b")).exit_code == 0
    r = run("restore", str(tmp_path / "b"), str(tmp_path / "r"))
    assert r.exit_code == 2 and "cannot change" in r.output and "narratives.toml" in r.output
    assert not (tmp_path / "r").exists()
