"""Recordings kept in the workspace (copied in by content hash), kept by reference, moved,
relinked, and a kill during the copy (issue 16, item 6)."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.errors import BadRecording
from narratives.core.files import STALE_PART_SECONDS
from narratives.stages.ingest import RECORDINGS_DIR, recording_file, register, source_path
from narratives.stages.pipeline import process_paths
from narratives.store.context import Context
from narratives.store.schema import narrative_paths, narratives
from tests.web_client import client_for

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, input: str | None = None):
    return CliRunner(env={"NARRATIVES_USER": "kai"}).invoke(
        cli, list(args), input=input, catch_exceptions=False
    )


def a_recording(folder: Path, name: str = "story.wav", size: int = 300_000, seed: int = 1):
    """A file with a recording's name: ingest hashes bytes, it does not decode them."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    block = hashlib.sha256(str(seed).encode()).digest()
    path.write_bytes((block * (size // len(block) + 1))[:size])
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def stored_as(ctx, nid: str) -> str | None:
    with ctx.db.connect() as conn:
        return conn.execute(
            sa.select(narratives.c.stored_as).where(narratives.c.id == nid)
        ).scalar()


def test_a_recording_is_copied_in_by_its_hash_private_and_whole(ctx, tmp_path):
    original, digest = a_recording(tmp_path / "archive")
    nid, new = register(ctx, original)
    assert nid == digest and new
    copy = ctx.workspace.root / RECORDINGS_DIR / f"{digest}.wav"
    assert stored_as(ctx, nid) == f"{RECORDINGS_DIR}/{digest}.wav"
    assert copy.read_bytes() == original.read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    assert not [p for p in copy.parent.iterdir() if p.name.startswith(".")]  # no temp left
    # The workspace's copy is what the stages read, so moving the archive breaks nothing.
    original.rename(tmp_path / "moved.wav")
    assert source_path(ctx, nid) == copy
    # Registering again (the same file found elsewhere) copies nothing and is not new.
    mtime = copy.stat().st_mtime_ns
    again, new = register(ctx, tmp_path / "moved.wav")
    assert again == nid and not new and copy.stat().st_mtime_ns == mtime
    shown = run("show", nid[:12], "--json")
    assert shown.exit_code == 0 and f'"stored_as": "{RECORDINGS_DIR}/{digest}.wav"' in shown.output


def test_by_reference_remembers_the_path_and_a_move_is_a_clear_error(ctx, tmp_path):
    original, nid = a_recording(tmp_path / "archive", "interview.flac")
    results = list(process_paths(ctx, [original], stages=(), by_reference=True))
    assert [r.status for r in results] == ["ok"] and results[0].id == nid
    assert stored_as(ctx, nid) is None
    assert not (ctx.workspace.root / RECORDINGS_DIR).exists()
    assert source_path(ctx, nid) == original.resolve()

    moved = tmp_path / "elsewhere" / "interview.flac"
    moved.parent.mkdir()
    original.rename(moved)
    with pytest.raises(BadRecording) as err:
        source_path(ctx, nid)
    assert str(original.resolve()) in str(err.value) and "kept by reference" in str(err.value)
    assert f"narrative relink {nid[:12]} PATH" in err.value.hint
    assert recording_file(ctx, nid) is None

    # relink checks the hash: another file is refused (exit 2) and changes nothing.
    other, _ = a_recording(tmp_path, "other.flac", seed=2)
    r = run("relink", nid[:12], str(other))
    assert r.exit_code == 2 and "is not this narrative's recording" in r.output
    assert run("relink", "ffff0000", str(moved)).exit_code == 5
    r = run("relink", nid[:12], str(moved), "--json")
    assert r.exit_code == 0, r.output
    assert source_path(ctx, nid) == moved.resolve()
    # --copy brings it into the workspace for good.
    assert run("relink", nid[:12], str(moved), "--copy").exit_code == 0
    assert source_path(ctx, nid) == ctx.workspace.root / RECORDINGS_DIR / f"{nid}.flac"


def test_the_setting_keeps_by_reference_and_process_again_copies_in(workspace, tmp_path):
    settings = workspace.settings_path
    settings.write_text(settings.read_text().replace('keep = "copy"', 'keep = "reference"'))
    ctx = Context(workspace)
    original, nid = a_recording(tmp_path, "a.mp3")
    register(ctx, original)
    assert stored_as(ctx, nid) is None
    # A workspace made before copies existed (or kept by reference) gains the copy when its
    # recordings are processed again in copy mode.
    _, new = register(ctx, original, by_reference=False)
    assert not new and stored_as(ctx, nid) == f"{RECORDINGS_DIR}/{nid}.mp3"
    assert source_path(ctx, nid) == ctx.workspace.root / RECORDINGS_DIR / f"{nid}.mp3"


def test_a_bad_keep_setting_names_the_file_and_key(workspace):
    settings = workspace.settings_path
    settings.write_text(settings.read_text().replace('keep = "copy"', 'keep = "link"'))
    r = run("status")
    assert r.exit_code == 2
    assert "narratives.toml" in r.output and "ingest.keep" in r.output


def test_the_copy_is_missing_names_it_and_falls_back_to_the_original(ctx, tmp_path):
    original, nid = a_recording(tmp_path, "b.wav")
    register(ctx, original)
    copy = ctx.workspace.root / RECORDINGS_DIR / f"{nid}.wav"
    copy.unlink()
    assert source_path(ctx, nid) == original.resolve()  # still at a remembered path
    original.unlink()
    with pytest.raises(BadRecording, match=str(copy)):
        source_path(ctx, nid)


def test_the_review_page_plays_the_workspace_copy(ctx, tmp_path):
    original, nid = a_recording(tmp_path / "outside", "voice.wav")
    register(ctx, original)
    client = client_for(ctx)
    r = client.get(f"/media/{nid}/audio")
    assert r.status_code == 200 and r.content == original.read_bytes()
    assert r.headers["content-type"] == "audio/wav"
    # Kept by reference outside the workspace: the page serves nothing from there.
    other, other_id = a_recording(tmp_path / "outside", "other.wav", seed=3)
    register(ctx, other, by_reference=True)
    assert client.get(f"/media/{other_id}/audio").status_code == 404


_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from narratives.stages import ingest
    from narratives.store.context import Context

    marker = Path(sys.argv[2])

    def stop_here(*args, **kwargs):
        marker.write_text("copying")
        time.sleep(120)

    if sys.argv[3] == "fsync":
        ingest.os.fsync = stop_here          # every byte written, not yet synced or renamed
    else:
        ingest._digest_of = stop_here        # synced, being verified, not yet renamed
    ingest._CHUNK = 1 << 16
    ingest.register(Context.current(), Path(sys.argv[1]))
    """
)


@pytest.mark.parametrize("point", ["fsync", "verify"])
def test_a_kill_during_the_copy_leaves_no_final_file_and_no_row(ctx, tmp_path, point):
    original, nid = a_recording(tmp_path, "long.wav", size=4_000_000)
    marker = tmp_path / "marker"
    env = {**os.environ, "NARRATIVES_HOME": str(ctx.workspace.root), "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(original), str(marker), point], env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the copy ended before the kill"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        folder = ctx.workspace.root / RECORDINGS_DIR
        partial = [p for p in folder.iterdir() if p.name.startswith(f".{nid}.wav.")]
        assert len(partial) == 1 and partial[0].stat().st_size == original.stat().st_size
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    assert not (folder / f"{nid}.wav").exists()
    with ctx.db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(narratives)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(narrative_paths)).scalar() == 0
    # The next run copies it in whole. The killed copy's file may still be some process's
    # copy in progress, so it is kept until nothing has written to it for an hour.
    assert register(ctx, original) == (nid, True)
    assert (folder / f"{nid}.wav").read_bytes() == original.read_bytes()
    assert partial[0].exists()
    hour_ago = time.time() - STALE_PART_SECONDS - 60
    os.utime(partial[0], (hour_ago, hour_ago))
    busy = folder / f".{nid}.wav.busy.part"  # a copy that wrote a moment ago
    busy.write_bytes(b"x")
    other, _ = a_recording(tmp_path, "next.wav", seed=7)
    register(ctx, other)
    assert not partial[0].exists() and busy.exists()
    assert (folder / f"{nid}.wav").exists()  # finished copies are never touched


def test_a_temporary_copy_removed_mid_copy_is_named(ctx, tmp_path, monkeypatch):
    """Another process's clean-up removed the temporary file of a copy that stalled: a clear
    error naming the recording, no row and no final file."""
    from narratives.core.errors import EnvironmentProblem
    from narratives.stages import ingest

    original, nid = a_recording(tmp_path, "stalled.wav")
    real = ingest._digest_of

    def removed_first(path):
        path.unlink()
        return real(path)

    monkeypatch.setattr(ingest, "_digest_of", removed_first)
    with pytest.raises(EnvironmentProblem, match="stalled.wav: its temporary copy") as caught:
        register(ctx, original)
    assert "narrative process" in caught.value.hint
    assert not (ctx.workspace.root / RECORDINGS_DIR / f"{nid}.wav").exists()
    with ctx.db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(narratives)).scalar() == 0


def test_two_processes_copying_the_same_recording_agree(ctx, tmp_path):
    """Real processes, many rounds: each ingests the same files at once; every copy ends
    whole under its name, one row per recording, no temporary file left."""
    files = [a_recording(tmp_path / "in", f"r{i}.wav", size=65_536, seed=i) for i in range(100)]
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from narratives.stages.ingest import register
        from narratives.store.context import Context
        ctx = Context.current()
        for p in sys.argv[1:]:
            register(ctx, Path(p))
        """
    )
    env = {**os.environ, "NARRATIVES_HOME": str(ctx.workspace.root), "PYTHONPATH": str(REPO)}
    assert ctx.db is not None  # made (and migrated) before the children race to open it
    args = [str(p) for p, _ in files]
    children = [
        subprocess.Popen([sys.executable, "-c", script, *args], env=env, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    errors = [c.communicate(timeout=300)[1].decode() for c in children]
    assert [c.returncode for c in children] == [0, 0, 0], errors
    folder = ctx.workspace.root / RECORDINGS_DIR
    for _path, digest in files:
        assert hashlib.sha256((folder / f"{digest}.wav").read_bytes()).hexdigest() == digest
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    with ctx.db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(narratives)).scalar() == 100


def test_migration_0008_keeps_an_old_workspace_working(workspace, tmp_path):
    """A database made before 0008 (recordings by reference) is upgraded in place; its
    recordings are still found where they were."""
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{workspace.database_path}"
    cfg = Config()
    cfg.set_main_option("script_location", str(REPO / "narratives" / "store" / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0007")
    original, nid = a_recording(tmp_path, "old.wav")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO narratives (id, created_at, updated_at, size_bytes, label, source) "
            f"VALUES ('{nid}', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 10, 'old.wav', "
            "'file')"
        )
        conn.exec_driver_sql(
            "INSERT INTO narrative_paths (narrative_id, path, first_seen, last_seen) VALUES "
            f"('{nid}', '{original}', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
    engine.dispose()
    ctx = Context(workspace)  # opening migrates to the newest revision
    assert stored_as(ctx, nid) is None
    assert source_path(ctx, nid) == original


@pytest.mark.slow
def test_transcription_reads_the_copy_and_a_moved_reference_fails_clearly(ctx, tmp_path):
    """Real Whisper: a story whose original is gone is transcribed again from the workspace's
    copy; one kept by reference whose file moved fails with the path and the fix."""
    import shutil

    kept = Path(shutil.copy(REPO / "media" / "samples" / "lena-grandmother.m4a", tmp_path))
    [first] = process_paths(ctx, [kept], stages=("transcribe",))
    assert first.status == "ok", first.error
    kept.unlink()
    from narratives.stages.transcribe import TranscribeStage

    again = TranscribeStage().run(ctx, first.id, force=True)
    assert again.status == "done" and again.record.text == first.transcript.text

    referenced = Path(shutil.copy(REPO / "media" / "samples" / "dev-missed-bus.mp4", tmp_path))
    [second] = process_paths(ctx, [referenced], stages=(), by_reference=True)
    referenced.rename(tmp_path / "moved.mp4")
    with pytest.raises(BadRecording) as err:
        TranscribeStage().run(ctx, second.id, force=True)
    assert str(referenced) in str(err.value) and "narrative relink" in err.value.hint


def test_processing_the_workspace_itself_skips_its_own_copies(ctx, tmp_path):
    original, nid = a_recording(tmp_path, "c.ogg")
    register(ctx, original)
    results = list(process_paths(ctx, [ctx.workspace.root], stages=()))
    assert results == []
    with ctx.db.connect() as conn:
        paths = conn.execute(sa.select(narrative_paths.c.path)).scalars().all()
    assert paths == [str(original.resolve())]


def test_process_by_reference_on_the_command_line(ctx, tmp_path):
    """`process --by-reference` keeps the path only; `process` again copies it in. (The bytes
    are no audio, so transcription fails after intake: exit 1, the intake is what counts.)"""
    original, nid = a_recording(tmp_path, "fake.wav")
    r = run("process", "--by-reference", str(original))
    assert r.exit_code == 1 and "fake.wav" in r.output
    assert stored_as(ctx, nid) is None
    r = run("process", str(original), "--json")
    assert r.exit_code == 1
    assert stored_as(ctx, nid) == f"{RECORDINGS_DIR}/{nid}.wav"
    assert "--by-reference" in run("process", "--help").output
