"""Settings from environment variables (issue 16, item 5): `NARRATIVES_<SECTION>__<KEY>` wins
over narratives.toml, so a database password need not be written in a file; a bad value names
the variable, never its value; the workspace's own variables (NARRATIVES_HOME) are not settings.
"""

from __future__ import annotations

import json
import socket

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.config import env_name, load_settings
from narratives.core.errors import ConfigError, EnvironmentProblem


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def write_settings(workspace, text: str) -> None:
    workspace.settings_path.write_text(text, encoding="utf-8")


def test_variable_wins_over_the_file(workspace, monkeypatch):
    write_settings(workspace, '[transcribe]\nmodel = "tiny.en"\nbeam_size = 2\n')
    monkeypatch.setenv("NARRATIVES_TRANSCRIBE__BEAM_SIZE", "4")
    settings = load_settings(workspace)
    assert settings.transcribe.beam_size == 4  # from the environment
    assert settings.transcribe.model == "tiny.en"  # the file's other keys stay


def test_variable_names_are_case_insensitive_and_documented(workspace, monkeypatch):
    assert env_name(("database", "url")) == "NARRATIVES_DATABASE__URL"
    monkeypatch.setenv("narratives_serve__port", "9123")
    assert load_settings(workspace).serve.port == 9123


def test_workspace_variables_are_not_settings(workspace, monkeypatch):
    # NARRATIVES_HOME (set by the fixture), NARRATIVES_FFMPEG, NARRATIVES_CACHE are not keys.
    monkeypatch.setenv("NARRATIVES_FFMPEG", "/usr/bin/ffmpeg")
    monkeypatch.setenv("NARRATIVES_CACHE", "/tmp")
    assert load_settings(workspace).database.url == ""


def test_bad_value_names_the_variable_not_the_value(workspace, monkeypatch):
    monkeypatch.setenv("NARRATIVES_SERVE__PORT", "port-with-s3cret")
    with pytest.raises(ConfigError) as err:
        load_settings(workspace)
    message = str(err.value)
    assert "serve.port (from environment variable NARRATIVES_SERVE__PORT)" in message
    assert "s3cret" not in message
    res = run("status")
    assert res.exit_code == ConfigError.exit_code == 2
    assert "NARRATIVES_SERVE__PORT" in res.output and "s3cret" not in res.output


def test_unknown_key_in_a_section_is_refused(workspace, monkeypatch):
    monkeypatch.setenv("NARRATIVES_DATABASE__URLL", "sqlite://")
    with pytest.raises(ConfigError, match="NARRATIVES_DATABASE__URLL"):
        load_settings(workspace)


def test_database_url_from_the_environment_is_the_one_used(workspace, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere.db"
    write_settings(workspace, '[database]\nurl = ""\n')  # the file says: the workspace's SQLite
    monkeypatch.setenv("NARRATIVES_DATABASE__URL", f"sqlite:///{elsewhere}")
    res = run("users", "add", "ada", "--password-stdin", input="a long passphrase\n")
    assert res.exit_code == 0, res.output
    assert elsewhere.is_file() and not workspace.database_path.exists()
    with sa.create_engine(f"sqlite:///{elsewhere}").connect() as conn:
        names = [r[0] for r in conn.exec_driver_sql("SELECT name FROM users")]
    assert names == ["ada"]


@pytest.mark.postgres
def test_postgres_url_with_password_only_in_the_environment(workspace, postgres_url, monkeypatch):
    # The test server trusts local connections, so any password is accepted: the point is
    # that the URL (password included) lives only in the environment and is never printed.
    url = postgres_url.replace("://narratives@", "://narratives:env-only-pw@")
    assert "env-only-pw" in url
    monkeypatch.setenv("NARRATIVES_DATABASE__URL", url)
    assert "env-only-pw" not in workspace.settings_path.read_text()
    res = run("status", "--json")
    assert res.exit_code == 0, res.output
    assert "env-only-pw" not in res.output
    for line in res.output.splitlines():
        json.loads(line)
    assert not workspace.database_path.exists()  # nothing went to the workspace's SQLite


def test_server_down_from_the_environment_hides_the_password(workspace, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(
        "NARRATIVES_DATABASE__URL", f"postgresql+psycopg://ada:env-pw-9@127.0.0.1:{port}/x"
    )
    res = run("users", "list")
    assert res.exit_code == EnvironmentProblem.exit_code
    assert f"ada:***@127.0.0.1:{port}/x" in res.output and "env-pw-9" not in res.output
