"""`narrative drafts|users|campaigns` through click's CliRunner, with the errors' exit codes."""

from __future__ import annotations

import json
import stat
import sys

import pytest
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.errors import ConfigError
from narratives.stages.draft import stage as drafting
from narratives.store.users import authenticate
from narratives.workflow import review
from tests.review_fixtures import PASSWORD, add_narrative, add_user, analysis_for


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def drafted(ctx):
    add_user(ctx, "kai")
    ids = drafting.run(ctx, add_narrative(ctx))
    return {review.get_draft(ctx, i).channel: i for i in ids}


def test_users_add_list_passwd_disable(runner, ctx, monkeypatch):
    r = runner.invoke(
        cli, ["users", "add", "fayez", "--role", "admin", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert r.exit_code == 0, r.output
    assert authenticate(ctx, "fayez", PASSWORD).role == "admin"
    # Without a terminal: no prompt, a sentence naming --password-stdin (exit 2).
    r = runner.invoke(cli, ["users", "add", "kai"], input="")
    assert r.exit_code == 2 and "--password-stdin" in r.output and "Password:" not in r.output
    # On a terminal: prompted twice; a mismatch asks again.
    monkeypatch.setattr("narratives.cli.users._is_terminal", lambda: True)
    r = runner.invoke(
        cli, ["users", "add", "kai"], input=f"{PASSWORD}\nother password!\n{PASSWORD}\n{PASSWORD}\n"
    )
    assert r.exit_code == 0, r.output
    assert "do not match" in r.output.lower()
    assert authenticate(ctx, "kai", PASSWORD).role == "editor"
    r = runner.invoke(cli, ["users", "list", "--json"])
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [(u["name"], u["role"], u["disabled"]) for u in rows] == [
        ("fayez", "admin", False),
        ("kai", "editor", False),
    ]
    r = runner.invoke(
        cli, ["users", "passwd", "kai", "--password-stdin"], input="a new passphrase\n"
    )
    assert r.exit_code == 0 and authenticate(ctx, "kai", "a new passphrase")
    assert runner.invoke(cli, ["users", "disable", "kai"]).exit_code == 0
    assert authenticate(ctx, "kai", "a new passphrase") is None
    r = runner.invoke(cli, ["users", "add", "kai", "--password-stdin"], input=PASSWORD + "\n")
    assert r.exit_code == 6 and "already exists" in r.output
    r = runner.invoke(cli, ["users", "add", "x", "--password-stdin"], input="short\n")
    assert r.exit_code == 2
    assert runner.invoke(cli, ["users", "disable", "nobody"]).exit_code == 5


def test_drafts_list_and_show(runner, drafted):
    r = runner.invoke(cli, ["drafts", "list", "--json"])
    assert r.exit_code == 0
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert {(d["id"], d["channel"], d["state"]) for d in rows} == {
        (drafted["bluesky"], "bluesky", "pending_review"),
        (drafted["rss"], "rss", "pending_review"),
    }
    r = runner.invoke(cli, ["drafts", "list", "--channel", "rss"])
    assert r.exit_code == 0 and "rss" in r.output and "bluesky" not in r.output
    r = runner.invoke(cli, ["drafts", "show", str(drafted["bluesky"])])
    assert r.exit_code == 0 and "post 1/2" in r.output and "draft.create" in r.output
    r = runner.invoke(cli, ["drafts", "show", str(drafted["bluesky"]), "--json"])
    data = json.loads(r.output)
    assert data["content"]["posts"] and data["history"][0]["action"] == "draft.create"
    assert runner.invoke(cli, ["drafts", "show", "999"]).exit_code == 5


def test_drafts_actions_need_an_actor_and_follow_the_rules(runner, ctx, drafted):
    bsky = str(drafted["bluesky"])
    r = runner.invoke(cli, ["drafts", "approve", bsky])
    assert r.exit_code == 2 and "--as" in r.output
    assert runner.invoke(cli, ["drafts", "approve", bsky, "--as", "mallory"]).exit_code == 7
    r = runner.invoke(cli, ["drafts", "approve", bsky], env={"NARRATIVES_USER": "kai"})
    assert r.exit_code == 0 and review.get_draft(ctx, int(bsky)).state == "approved"
    r = runner.invoke(cli, ["drafts", "approve", bsky, "--as", "kai"])
    assert r.exit_code == 6 and "Error:" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, ["drafts", "comment", bsky, "Looks good", "--as", "kai"])
    assert r.exit_code == 0
    assert [c.body for c in review.list_comments(ctx, int(bsky))] == ["Looks good"]
    r = runner.invoke(cli, ["drafts", "edit", bsky, "--as", "kai", "--text", "New.\n---\nThread."])
    assert r.exit_code == 0
    d = review.get_draft(ctx, int(bsky))
    assert d.state == "pending_review" and d.posts == ["New.", "Thread."]
    r = runner.invoke(cli, ["drafts", "request-changes", bsky, "--as", "kai", "--reason", "x"])
    assert r.exit_code == 0 and review.get_draft(ctx, int(bsky)).state == "changes_requested"
    r = runner.invoke(cli, ["drafts", "reject", bsky, "--as", "kai", "--reason", "No"])
    assert r.exit_code == 0 and review.get_draft(ctx, int(bsky)).state == "rejected"
    assert review.history(ctx, int(bsky))[-1]["detail"] == "No"


def test_drafts_edit_opens_the_editor(runner, ctx, drafted, tmp_path):
    # A real editor program: appends a line to the file it is given.
    editor = tmp_path / "editor"
    editor.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "p = sys.argv[-1]\ntext = open(p).read()\n"
        "open(p, 'w').write(text.replace('Two lines at the dream clinic', 'Edited title'))\n"
    )
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    rss = str(drafted["rss"])
    r = runner.invoke(cli, ["drafts", "edit", rss, "--as", "kai"], env={"EDITOR": str(editor)})
    assert r.exit_code == 0, r.output
    d = review.get_draft(ctx, int(rss))
    assert d.content["title"] == "Edited title" and d.edited
    assert d.generated["title"] == "Two lines at the dream clinic"
    over = tmp_path / "over.txt"
    over.write_text("x" * 301)
    r = runner.invoke(
        cli, ["drafts", "edit", str(drafted["bluesky"]), "--as", "kai", "--file", str(over)]
    )
    assert r.exit_code == 0 and "Cannot be approved yet" in r.output


def test_campaigns_list_show_check(runner, workspace):
    r = runner.invoke(cli, ["campaigns", "list", "--json"])
    assert r.exit_code == 0
    assert [json.loads(line)["slug"] for line in r.output.splitlines()] == [
        "emotional-equity",
        "neural-mandate",
    ]
    r = runner.invoke(cli, ["campaigns", "show", "neural-mandate"])
    assert r.exit_code == 0 and "Fayez Malik" in r.output and "Europe/Lisbon" in r.output
    assert runner.invoke(cli, ["campaigns", "show", "nope"]).exit_code == 5
    r = runner.invoke(cli, ["campaigns", "check"])
    assert r.exit_code == 0 and "2 campaign(s) OK" in r.output
    bad = workspace.campaigns_dir / "broken.toml"
    bad.write_text('slug = "broken"\nname = "B"\ncolour = "red"\n')
    (workspace.templates_dir / "posts" / "rss.j2").unlink()
    r = runner.invoke(cli, ["campaigns", "check"])
    assert r.exit_code == 2
    assert "broken.toml" in r.output and "colour" in r.output
    assert "no templates/posts/rss.j2" in r.output


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("{{ titel }}\n", "'titel' is undefined"),
        ("Line one\n{{ title + 1 }}\n", "bluesky.j2:2"),
        ("{{ title.__class__ }}\n", "unsafe"),
        ("{% include 'posts/nope.j2' %}\n", "nope.j2"),
    ],
)
def test_campaigns_check_renders_templates_and_names_the_line(runner, ctx, workspace, body, said):
    """Compiling is not enough: these compile, and used to fail only when drafting, some as
    an 'unexpected error' without the template's name."""
    (workspace.templates_dir / "posts" / "bluesky.j2").write_text(body, encoding="utf-8")
    r = runner.invoke(cli, ["campaigns", "check"])
    assert r.exit_code == 2 and "templates/posts/bluesky.j2" in r.output and said in r.output
    # Drafting a narrative says the same, as a configuration error (exit 2), not a crash.
    nid = add_narrative(ctx)
    with pytest.raises(ConfigError, match=r"templates/posts/bluesky\.j2"):
        drafting.run(ctx, nid)


def test_drafts_edit_does_not_overwrite_an_edit_made_while_the_editor_was_open(
    runner, ctx, drafted, tmp_path
):
    add_user(ctx, "fay")
    bsky = drafted["bluesky"]
    # The editor program: while "open", Fay saves her version from another process.
    editor = tmp_path / "editor"
    editor.write_text(
        f"#!{sys.executable}\nimport sys, subprocess\n"
        f"subprocess.run([{sys.executable!r}, '-m', 'narratives', 'drafts', 'edit', "
        f"'{bsky}', '--text', 'Fay wrote this.', '--as', 'fay'], check=True)\n"
        "open(sys.argv[-1], 'w').write('Kai wrote this.')\n"
    )
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    r = runner.invoke(
        cli, ["drafts", "edit", str(bsky), "--as", "kai"], env={"EDITOR": str(editor)}
    )
    assert r.exit_code == 6 and "changed since you opened it" in r.output
    assert review.get_draft(ctx, bsky).posts == ["Fay wrote this."]
    # --seen on approve: only the version that was read.
    version = json.loads(runner.invoke(cli, ["drafts", "show", str(bsky), "--json"]).output)[
        "version"
    ]
    r = runner.invoke(cli, ["drafts", "approve", str(bsky), "--seen", "0" * 16, "--as", "kai"])
    assert r.exit_code == 6 and review.get_draft(ctx, bsky).state == "pending_review"
    r = runner.invoke(cli, ["drafts", "approve", str(bsky), "--seen", version, "--as", "kai"])
    assert r.exit_code == 0 and review.get_draft(ctx, bsky).state == "approved"


def test_drafts_list_and_show_print_web_text_inertly(runner, ctx):
    """A file name with Rich markup and a comment with terminal escapes print as text."""
    add_user(ctx, "kai")
    nid = add_narrative(ctx, analysis=analysis_for(title=""), label="[/]interview [final].wav")
    [bsky, _] = sorted(drafting.run(ctx, nid))
    review.comment(ctx, bsky, "fine \x1b]0;pwned\x07\x1b[2J", actor="kai")
    r = runner.invoke(cli, ["drafts", "list"])
    assert r.exit_code == 0 and "[/]interview" in r.output and "[final].wav" in r.output
    r = runner.invoke(cli, ["drafts", "show", str(bsky)])
    assert r.exit_code == 0 and "\x1b" not in r.output and "pwned" in r.output


def _approve_on_a_terminal(draft_id: int, answer: str, before_answer=None) -> tuple[int, str]:
    """`drafts approve` with its standard input and output on a pseudo-terminal (as an editor
    runs it): reads up to the question, runs `before_answer`, then answers."""
    import os
    import pty
    import select
    import subprocess
    import time

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "narratives", "drafts", "approve", str(draft_id), "--as", "kai"],
        stdin=follower, stdout=follower, stderr=follower, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    seen, deadline = b"", time.monotonic() + 120
    try:
        while b"Approve this text?" not in seen and time.monotonic() < deadline:
            if select.select([leader], [], [], 1)[0]:
                seen += os.read(leader, 4096)
        assert b"Approve this text?" in seen, seen.decode(errors="replace")
        if before_answer is not None:
            before_answer()
        os.write(leader, answer.encode() + b"\n")
        code = proc.wait(timeout=120)
        while select.select([leader], [], [], 0.2)[0]:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    return code, seen.decode(errors="replace")


def test_approve_on_a_terminal_shows_the_text_and_approves_only_what_was_shown(
    runner, ctx, drafted
):
    add_user(ctx, "fay")
    bsky = drafted["bluesky"]
    text = review.content_to_text(review.get_draft(ctx, bsky))
    # "no": nothing approved.
    code, out = _approve_on_a_terminal(bsky, "n")
    assert code == 1 and text.splitlines()[0] in out
    assert review.get_draft(ctx, bsky).state == "pending_review"

    # Fay saves new text while Kai reads: Kai's "yes" was for the old text, so it is refused.
    def fay_edits():
        review.edit_text(ctx, bsky, "Fay's new text.", actor="fay")

    code, out = _approve_on_a_terminal(bsky, "y", before_answer=fay_edits)
    assert code == 6, out
    assert review.get_draft(ctx, bsky).state == "pending_review"
    # Shown again, now with Fay's text, and approved.
    code, out = _approve_on_a_terminal(bsky, "y")
    assert code == 0 and "Fay's new text." in out and "approved (version" in out
    assert review.get_draft(ctx, bsky).state == "approved"
