"""The machine in the way (permissions, a read-only or locked database, a database server that
does not answer, a full disk) is `EnvironmentProblem`: exit 9, the path or URL named (never a
password), no traceback. Also the exit codes and prompts scripts meet: `publish --now` that did
not go out, `consent withdraw` and `users add` without a terminal.

Tests run as root here, and chmod does not stop root, so the read-only database is a SQLite
`mode=ro` URL and the unusable folder a file where a folder should be; only the chmod variant
is skipped for root.
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3

import pytest
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core import files
from narratives.core.errors import (
    ChannelError,
    ConfigError,
    EnvironmentProblem,
    InvalidState,
    ModelNotAvailable,
    PermanentChannelError,
    TransientChannelError,
    UsageError,
)
from narratives.engines import whisper_models
from narratives.store import db
from narratives.store.context import Context
from narratives.workflow.publishing import publish_draft_now
from tests.delivery_fixtures import add_draft, add_narrative, rss_content

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def run(*args: str, input: str | None = None):
    return CliRunner(env={"NARRATIVES_USER": "kai"}).invoke(cli, list(args), input=input)


def assert_named(res, code: int, *words: str) -> None:
    """Exit `code`, each of `words` in the output, and no traceback."""
    assert res.exit_code == code, res.output
    assert isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    for word in words:
        assert word in res.output, res.output


def use_database(workspace, url: str) -> None:
    settings = workspace.settings_path
    text = settings.read_text(encoding="utf-8")
    assert 'url = ""' in text
    settings.write_text(text.replace('url = ""', f'url = "{url}"', 1), encoding="utf-8")


def add_user_cmd(name: str = "ada"):
    return run("users", "add", name, "--password-stdin", input="a long passphrase\n")


# ----------------------------------------------------------------------------- database


def test_read_only_database_is_named(workspace):
    Context(workspace).db.dispose()  # made and migrated while writable
    use_database(workspace, f"sqlite:///file:{workspace.database_path}?mode=ro&uri=true")
    res = add_user_cmd()
    assert_named(res, EnvironmentProblem.exit_code, str(workspace.database_path), "read-only")


@pytest.mark.skipif(IS_ROOT, reason="root writes a chmod-ed file anyway")
def test_read_only_database_file_and_folder_are_named(workspace):
    Context(workspace).db.dispose()  # the next connection opens the file as it is now
    path = workspace.database_path
    os.chmod(path, 0o400)
    os.chmod(workspace.root, 0o500)
    try:
        res = add_user_cmd()
    finally:
        os.chmod(workspace.root, 0o700)
        os.chmod(path, 0o600)
    assert_named(res, EnvironmentProblem.exit_code, str(path))


def test_locked_database_is_named(workspace, monkeypatch):
    monkeypatch.setattr(db, "_BUSY_TIMEOUT", 0.2)  # not the real 30 s wait
    Context(workspace).db.dispose()  # made and migrated
    holder = sqlite3.connect(workspace.database_path)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        res = add_user_cmd()
    finally:
        holder.rollback()
        holder.close()
    assert_named(res, EnvironmentProblem.exit_code, str(workspace.database_path), "locked")


def test_database_that_cannot_be_opened_is_named(workspace):
    workspace.database_path.mkdir()  # a folder where the file should be
    res = add_user_cmd()
    assert_named(res, EnvironmentProblem.exit_code, str(workspace.database_path))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "command", [("users", "list"), ("users", "add", "ada", "--password-stdin")]
)
def test_database_server_down_is_named_without_the_password(workspace, command):
    port = _closed_port()
    use_database(workspace, f"postgresql+psycopg://ada:s3cret-pw@127.0.0.1:{port}/narratives")
    res = run(*command, input="a long passphrase\n")
    assert_named(res, EnvironmentProblem.exit_code, f"ada:***@127.0.0.1:{port}/narratives")
    assert "s3cret-pw" not in res.output
    assert not workspace.database_path.exists()


def test_other_database_errors_pass_unchanged(ctx):
    import sqlalchemy as sa

    with pytest.raises(sa.exc.OperationalError), ctx.db.connect() as conn:
        conn.exec_driver_sql("SELECT * FROM no_such_table")


# ----------------------------------------------------------------------------- files


def test_a_file_where_a_workspace_folder_should_be_is_named(workspace):
    work = workspace.work_dir
    for leftover in work.iterdir():
        leftover.rmdir()
    work.rmdir()
    work.write_text("not a folder")
    res = add_user_cmd()
    assert_named(res, EnvironmentProblem.exit_code, str(work))


@pytest.mark.skipif(IS_ROOT, reason="root reads a chmod-ed folder anyway")
def test_unreadable_workspace_is_named(workspace):
    os.chmod(workspace.root, 0)
    try:
        res = run("users", "list")
    finally:
        os.chmod(workspace.root, 0o700)
    assert_named(res, EnvironmentProblem.exit_code, str(workspace.root))


def _disk_full_on(suffix: str, monkeypatch) -> None:
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(suffix):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_disk_full_on_an_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "feed.xml"
    target.write_text("old")
    _disk_full_on("feed.xml", monkeypatch)
    with pytest.raises(EnvironmentProblem, match="disk is full") as exc:
        files.atomic_write(target, "new")
    assert str(target) in str(exc.value)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feed.xml"]  # no temporary left


def test_an_os_error_that_is_a_bug_passes_unchanged(tmp_path, monkeypatch):
    def replace(src, dst):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError) as exc:
        files.atomic_write(tmp_path / "x.txt", "x")
    assert not isinstance(exc.value, EnvironmentProblem) and exc.value.errno == errno.EINVAL


def test_disk_full_in_a_command_is_named(workspace, monkeypatch):
    _disk_full_on(".xml", monkeypatch)
    res = run("feeds", "rebuild")
    assert_named(res, EnvironmentProblem.exit_code, str(workspace.feeds_dir), "disk is full")


# ----------------------------------------------------------------------------- publish --now


class _Failing:
    channel = "rss"

    def __init__(self, exc: Exception):
        self.exc = exc

    def publish(self, item):
        raise self.exc

    def after_commit(self, item) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "exc", [TransientChannelError("feed host down"), PermanentChannelError("feed refused")]
)
def test_publish_now_that_did_not_go_out_exits_with_the_channel_code(ctx, monkeypatch, exc):
    from narratives.workflow import channels

    monkeypatch.setattr(channels, "default_publishers", lambda ctx: {"rss": _Failing(exc)})
    draft = add_draft(ctx, content=rss_content("Not today"))
    res = run("publish", str(draft), "--now")
    assert_named(res, ChannelError.exit_code, "Not published", str(exc))
    assert ChannelError.exit_code == 8


def test_environment_problem_while_publishing_is_retried(ctx):
    draft = add_draft(ctx, content=rss_content("Disk full"))
    publisher = _Failing(EnvironmentProblem("cannot write x: the disk is full"))
    outcome = publish_draft_now(ctx, draft, {"rss": publisher}, actor="kai")
    assert outcome.status == "retry" and "disk is full" in (outcome.error or "")


# ----------------------------------------------------------------------------- no terminal


def test_consent_withdraw_without_a_terminal_names_yes(ctx):
    nid = add_narrative(ctx)
    res = run("consent", "withdraw", nid[:12], "--reason", "asked")
    assert_named(res, UsageError.exit_code, "--yes")
    assert "Aborted" not in res.output
    assert run("consent", "show", nid[:12], "--json").output.count('"active"') == 1
    done = run("consent", "withdraw", nid[:12], "--reason", "asked", "--yes")
    assert done.exit_code == 0, done.output


def test_users_add_without_a_terminal_names_password_stdin(ctx):
    res = run("users", "add", "ada")
    assert_named(res, UsageError.exit_code, "--password-stdin")
    assert "Aborted" not in res.output
    assert "ada" not in run("users", "list").output
    assert add_user_cmd().exit_code == 0


def test_help_says_how_scripts_answer():
    assert "--yes" in run("consent", "withdraw", "--help").output
    assert "--password-stdin" in run("users", "add", "--help").output
    assert "8" in run("publish", "--help").output
    assert InvalidState.exit_code == 6


# ----------------------------------------------------------------------------- model hint


def test_offline_model_hint_says_what_helps(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotAvailable) as exc:
        whisper_models.resolve_model("small", cache_dir=tmp_path)
    # The CLI sets HF_HUB_OFFLINE=1 itself when it is unset, so "unset it" cannot help.
    assert "HF_HUB_OFFLINE=0" in exc.value.hint and "unset" not in exc.value.hint


# ----------------------------------------------------------------------------- drivers


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://ada:s3cret-pw@127.0.0.1/narratives", "mysql://ada:***@127.0.0.1/narratives"),
        ("nosuchdb://ada:s3cret-pw@127.0.0.1/x", "nosuchdb://ada:***@127.0.0.1/x"),
        ("not a url at all", "not a database URL"),
    ],
)
def test_a_database_without_its_driver_is_a_config_error(workspace, url, expected):
    use_database(workspace, url)
    res = run("users", "list")
    assert_named(res, ConfigError.exit_code, expected)
    assert "s3cret-pw" not in res.output


def test_postgres_without_the_extra_names_the_extra(workspace, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the `postgres` extra were missing
    use_database(workspace, "postgresql+psycopg://ada:s3cret-pw@127.0.0.1/narratives")
    res = run("users", "list")
    assert_named(res, ConfigError.exit_code, "ada:***@127.0.0.1/narratives")
    assert "narratives[postgres]" in res.output and "s3cret-pw" not in res.output
