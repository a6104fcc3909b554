"""A workspace is a folder `narrative init` made (it has narratives.toml). Every command refuses
any other folder with exit 2 and the fix, and leaves it as it was; commands that only read leave
a real workspace as it was too; `--workspace DIR` picks one and beats NARRATIVES_HOME."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.config import load_settings
from narratives.core.workspace import init_workspace
from narratives.store.db import open_database

#: One run of every command, with arguments that pass the command line's own checks, so what
#: stops it is the workspace. `{story}` is a recording outside the folder under test.
COMMANDS: list[tuple[tuple[str, ...], list[str]]] = [
    (("status",), []),
    (("show",), ["abc123"]),
    (("process",), ["{story}"]),
    (("transcribe",), ["{story}"]),
    (("render",), ["--all"]),
    (("analyse",), ["--all"]),
    (("tag",), ["abc123", "emotional-equity", "equal-access"]),
    (("assign",), ["abc123", "--campaign", "emotional-equity"]),
    (("unassign",), ["abc123", "--campaign", "emotional-equity"]),
    (("campaigns", "list"), []),
    (("campaigns", "show"), ["emotional-equity"]),
    (("campaigns", "check"), []),
    (("campaigns", "update"), []),
    (("drafts", "list"), []),
    (("drafts", "show"), ["1"]),
    (("drafts", "edit"), ["1"]),
    (("drafts", "approve"), ["1"]),
    (("drafts", "reject"), ["1"]),
    (("drafts", "request-changes"), ["1"]),
    (("drafts", "comment"), ["1", "looks good"]),
    (("users", "add"), ["ana", "--password-stdin"]),
    (("users", "list"), []),
    (("users", "passwd"), ["ana", "--password-stdin"]),
    (("users", "disable"), ["ana"]),
    (("users", "enable"), ["ana"]),
    (("users", "role"), ["ana", "admin"]),
    (("users", "remove"), ["ana"]),
    (("serve",), []),
    (("schedule", "add"), ["1", "--next-slot"]),
    (("schedule", "fill"), ["--campaign", "emotional-equity"]),
    (("schedule", "list"), []),
    (("schedule", "cancel"), ["1"]),
    (("schedule", "move"), ["1", "--next-slot"]),
    (("scheduler", "run"), []),
    (("publish",), ["1", "--now"]),
    (("feeds", "rebuild"), []),
    (("feeds", "build"), ["{out}"]),
    (("feeds", "pull"), ["https://example.org/feed.xml"]),
    (("consent", "set"), ["abc123", "--by", "Ana", "--method", "form", "--channels", "rss"]),
    (("consent", "show"), ["abc123"]),
    (("consent", "import"), ["abc123", "{story}"]),
    (("consent", "withdraw"), ["abc123", "--reason", "asked", "--yes"]),
    (("consent", "expire"), []),
    (("accounts", "check"), []),
    (("accounts", "logout"), []),
    (("accounts", "retry"), []),
    (("stats", "pull"), []),
    (("report",), ["--campaign", "emotional-equity"]),
    (
        ("replies", "hide"),
        ["at://did:plc:x/app.bsky.feed.post/a", "at://did:plc:y/app.bsky.feed.post/b"],
    ),
    (
        ("replies", "detach"),
        ["at://did:plc:x/app.bsky.feed.post/a", "at://did:plc:y/app.bsky.feed.post/b"],
    ),
    (("consent", "redact"), ["abc123", "Lisbon"]),
    (("consent", "disguise"), ["abc123", "--semitones", "3"]),
    (("consent", "voice"), ["abc123", "synthetic"]),
    (("export",), ["abc123", "{out}"]),
    (("erase",), ["abc123", "--yes"]),
    (("backup",), ["{out}"]),
    (("relink",), ["abc123", "{story}"]),
    (("transcript", "show"), ["abc123"]),
    (("transcript", "edit"), ["abc123", "--from-file", "{story}"]),
    (("transcript", "discard"), ["abc123"]),
]

#: The commands that only look: in a workspace they make no folder, file or database.
READ_ONLY: list[list[str]] = [
    ["status"],
    ["status", "--json"],
    ["show", "abc123"],
    ["campaigns", "list"],
    ["campaigns", "show", "emotional-equity"],
    ["campaigns", "check"],
    ["drafts", "list"],
    ["drafts", "show", "1"],
    ["schedule", "list"],
    ["consent", "show", "abc123"],
    ["transcript", "show", "abc123"],
    ["users", "list"],
    ["feeds", "build", "{out}"],
    ["backup", "{out}"],
    ["--help"],
    ["--version"],
    ["drafts", "--help"],
]


def _leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    # list_commands/get_command, not .commands: the root group loads its commands lazily.
    for name in group.list_commands(None):
        command = group.get_command(None, name)
        if isinstance(command, click.Group):
            found |= _leaf_commands(command, (*path, name))
        else:
            found.add((*path, name))
    return found


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the one under test, holding a recording and room for exports."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "story.flac").write_bytes(b"not really audio")
    return folder


def _args(args: list[str], outside: Path) -> list[str]:
    story, out = str(outside / "story.flac"), str(outside / "export")
    return [a.replace("{story}", story).replace("{out}", out) for a in args]


def _run(args: list[str], *, home: Path | None, outside: Path):
    # NARRATIVES_USER names the actor, so a command that asks for one gets as far as the workspace.
    env = {"NARRATIVES_HOME": str(home) if home else None, "NARRATIVES_USER": "kai"}
    return CliRunner().invoke(cli, _args(args, outside), env=env, input="s3cret-pass\n")


def test_the_table_names_every_command():
    # `restore SRC DIR` makes a new workspace, as `init` does.
    assert {path for path, _ in COMMANDS} == _leaf_commands(cli) - {("init",), ("restore",)}


@pytest.mark.parametrize("how", ["here", "home", "missing home", "--workspace"])
@pytest.mark.parametrize(("path", "args"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_refuses_a_folder_that_is_not_a_workspace(
    tmp_path, outside, monkeypatch, how, path, args
):
    folder = tmp_path / "stray"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a workspace")
    monkeypatch.chdir(folder)
    home, before, prefix = None, _listing(tmp_path), []
    if how == "home":
        home = folder
    elif how == "missing home":
        home = tmp_path / "nowhere"
    elif how == "--workspace":
        prefix = ["--workspace", str(folder)]
    result = _run([*prefix, *path, *args], home=home, outside=outside)
    assert result.exit_code == 2, result.output
    assert "not a narratives workspace" in result.output or "does not exist" in result.output
    assert "narrative init DIR" in result.output and "NARRATIVES_HOME" in result.output
    assert "Traceback" not in result.output
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("args", READ_ONLY, ids=[" ".join(a) for a in READ_ONLY])
def test_read_only_commands_leave_a_fresh_workspace_as_it_was(workspace, outside, args):
    # Not even the private folders `narrative init` makes: a reader must not need them.
    shutil.rmtree(workspace.work_dir)
    shutil.rmtree(workspace.state_dir)
    before = _listing(workspace.root)
    result = _run(args, home=workspace.root, outside=outside)
    assert result.exit_code in (0, 5), result.output  # 5: no narrative or draft with that id
    assert "Traceback" not in result.output
    assert _listing(workspace.root) == before
    assert not workspace.database_path.exists()


def test_read_only_commands_find_nothing_yet(workspace, outside):
    for args in (["status", "--json"], ["drafts", "list", "--json"], ["users", "list", "--json"]):
        result = _run(args, home=workspace.root, outside=outside)
        assert result.exit_code == 0 and result.output == "", result.output
    assert "No narratives yet" in _run(["status"], home=workspace.root, outside=outside).output
    assert not workspace.database_path.exists()


def test_a_command_that_writes_makes_the_database_and_folders(workspace, outside):
    shutil.rmtree(workspace.work_dir)
    shutil.rmtree(workspace.state_dir)
    result = _run(["users", "add", "ana", "--password-stdin"], home=workspace.root, outside=outside)
    assert result.exit_code == 0, result.output
    assert workspace.database_path.is_file()
    assert workspace.work_dir.is_dir() and workspace.state_dir.is_dir()
    listed = _run(["users", "list", "--json"], home=workspace.root, outside=outside)
    assert '"name": "ana"' in listed.output


def test_the_stand_in_database_has_every_table_and_refuses_writes(workspace):
    engine = open_database(workspace, load_settings(workspace), create=False)
    with engine.connect() as conn:
        assert "narratives" in sa.inspect(conn).get_table_names()
        assert conn.execute(sa.text("select count(*) from narratives")).scalar() == 0
        with pytest.raises(sa.exc.OperationalError, match="readonly"):
            conn.execute(sa.text("delete from narratives"))
    assert not workspace.database_path.exists()


def test_workspace_option_beats_narratives_home(tmp_path, outside, monkeypatch):
    good = init_workspace(tmp_path / "good").root
    stray = tmp_path / "stray"
    stray.mkdir()
    monkeypatch.chdir(tmp_path)
    chosen = _run(
        ["--workspace", "good", "campaigns", "list", "--json"], home=stray, outside=outside
    )
    assert chosen.exit_code == 0, chosen.output
    assert '"slug": "emotional-equity"' in chosen.output
    refused = _run(["--workspace", str(stray), "status"], home=good, outside=outside)
    assert refused.exit_code == 2 and str(stray) in refused.output
    assert "--workspace DIR" in _run(["--help"], home=None, outside=outside).output


def test_init_makes_a_workspace_the_commands_accept(tmp_path, outside, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = _run(["init", "new"], home=None, outside=outside)
    assert made.exit_code == 0, made.output
    assert (tmp_path / "new" / "narratives.toml").is_file()
    assert _run(["--workspace", "new", "status"], home=None, outside=outside).exit_code == 0


def test_a_refused_init_leaves_the_folder_as_it_was(tmp_path):
    target = tmp_path / "half"
    target.mkdir()
    (target / "narratives.toml").write_text("# mine\n", encoding="utf-8")
    res = CliRunner().invoke(cli, ["init", str(target)])
    assert res.exit_code == 2 and "already exists" in res.output
    assert sorted(p.name for p in target.iterdir()) == ["narratives.toml"]
    assert (target / "narratives.toml").read_text(encoding="utf-8") == "# mine\n"
