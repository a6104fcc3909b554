"""A workspace made by an earlier version: its examples and tag thresholds brought up to date
without losing what someone chose (narratives/workflow/upgrade.py, `campaigns update`)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.campaigns import load_campaigns
from narratives.core.workspace import DEFAULTS_ROOT
from narratives.workflow.upgrade import (
    example_key,
    read_history,
    stale_defaults,
    update_defaults,
)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = DEFAULTS_ROOT / "campaigns" / "examples.jsonl"
#: This version's default tag thresholds, and the line that writes each.
NOW = {slug: t["current"] for slug, t in read_history()["tag_threshold"].items()}
THRESHOLD_LINE = re.compile(r"\ntag_threshold = [0-9.]+\n")


def _script():
    spec = importlib.util.spec_from_file_location(
        "record_shipped_defaults", REPO / "scripts" / "record_shipped_defaults.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shipped() -> list[str]:
    return [line for line in SHIPPED.read_text(encoding="utf-8").splitlines() if line.strip()]


def _first(line: str) -> int:
    return read_history()["examples"]["first_shipped_in"][example_key(json.loads(line))]


def _earlier_file(workspace, *, drop: tuple[int, ...] = (), extra: list[str] = ()) -> list[str]:
    """The examples file as the version before this one left it (this version's lines that
    shipped earlier), less the lines at `drop`, plus `extra`."""
    lines = [line for line in _shipped() if _first(line) < len(_versions()) - 1]
    lines = [line for k, line in enumerate(lines) if k not in drop]
    lines += list(extra)
    path = workspace.campaigns_dir / "examples.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def _versions() -> list[dict]:
    return read_history()["examples"]["versions"]


def _set_threshold(workspace, slug: str, line: str) -> Path:
    path = workspace.campaigns_dir / f"{slug}.toml"
    text = path.read_text(encoding="utf-8")
    assert f"\ntag_threshold = {NOW[slug]}\n" in text
    path.write_text(THRESHOLD_LINE.sub(f"\n{line}\n", text, count=1), encoding="utf-8")
    return path


def test_the_recorded_history_describes_the_shipped_files():
    """Changing the shipped examples or thresholds without running the script fails here."""
    assert _script().check() == []
    history = read_history()
    current = len(history["examples"]["versions"]) - 1
    keys = {example_key(json.loads(line)) for line in _shipped()}
    assert keys <= set(history["examples"]["first_shipped_in"])
    # Lines no longer shipped are the only ones whose first version is not in the file.
    assert current >= 1 and any(_first(line) == current for line in _shipped())
    assert history["examples"]["versions"][-1]["stories"] == len(_shipped())


def test_a_fresh_workspace_has_nothing_to_update(workspace):
    campaigns = load_campaigns(workspace)
    assert stale_defaults(workspace, campaigns) == []
    before = {p.name: p.read_bytes() for p in workspace.campaigns_dir.iterdir()}
    result = update_defaults(workspace, campaigns)
    assert not result.changed and result.backups == []
    assert {p.name: p.read_bytes() for p in workspace.campaigns_dir.iterdir()} == before


def test_earlier_examples_are_brought_up_to_date_and_choices_kept(workspace):
    own = json.dumps({"text": "A story of my own about nights.", "tags": ["sleep-inequality"]})
    shipped = _shipped()
    # An editor relabelled a line this version ships for the first time: theirs wins.
    newest = next(line for line in shipped if _first(line) == len(_versions()) - 1)
    relabelled = json.loads(newest) | {"tags": []}
    earlier = [line for line in shipped if _first(line) < len(_versions()) - 1]
    # Deleted by someone: one from the oldest version, one from the newest the file has.
    last = next(k for k, line in enumerate(earlier) if _first(line) == len(_versions()) - 2)
    lines = _earlier_file(workspace, drop=(4, last), extra=[own, json.dumps(relabelled)])
    dropped = [earlier[4], earlier[last]]
    path = workspace.campaigns_dir / "examples.jsonl"
    before = path.read_bytes()
    campaigns = load_campaigns(workspace)

    notes = stale_defaults(workspace, campaigns)
    assert len(notes) == 1 and "lacks" in notes[0] and "campaigns update" in notes[0]

    dry = update_defaults(workspace, campaigns, dry_run=True)
    assert dry.changed and path.read_bytes() == before and dry.backups == []

    result = update_defaults(workspace, campaigns)
    after = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    new = [line for line in shipped if _first(line) == len(_versions()) - 1]
    assert result.added == len(new) - 1 == dry.added
    assert result.removed == 0 and result.kept_own == 2
    assert after[: len(lines)] == lines  # every line that was there, in its place
    assert own in after and json.dumps(relabelled) in after
    assert newest not in after  # the relabelled story is not added a second time
    assert not set(dropped) & set(after)  # shipped lines someone deleted stay deleted
    assert set(after) >= set(new) - {newest}
    backup = workspace.root / result.backups[0]
    assert backup.read_bytes() == before
    # Done once: nothing left to say or do.
    assert stale_defaults(workspace, campaigns) == []
    assert not update_defaults(workspace, campaigns).changed


def test_lines_this_version_changed_are_replaced(workspace):
    """A line an earlier version shipped and this one changed or dropped is removed; with a
    history that says so (the real one has no such line yet)."""
    history = read_history()
    old = {"text": "An example an earlier version shipped, since dropped.", "tags": []}
    history["examples"]["first_shipped_in"][example_key(old)] = 0
    path = workspace.campaigns_dir / "examples.jsonl"
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(old) + "\n")
    campaigns = load_campaigns(workspace)
    notes = stale_defaults(workspace, campaigns, history)
    assert len(notes) == 1 and "has 1 that this version changed or dropped" in notes[0]
    result = update_defaults(workspace, campaigns, history=history)
    assert (result.added, result.removed) == (0, 1)
    assert path.read_text(encoding="utf-8").splitlines() == _shipped()


def test_an_earlier_versions_exact_file_is_named_as_such(workspace):
    history = read_history()
    lines = _earlier_file(workspace)
    digest = hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()
    history["examples"]["versions"][-2] = {"sha256": digest, "stories": len(lines)}
    notes = stale_defaults(workspace, load_campaigns(workspace), history)
    assert notes and f"is the example set of an earlier version ({len(lines)} stories)" in notes[0]


def test_only_an_earlier_default_threshold_is_changed(workspace):
    earlier = read_history()["tag_threshold"]["emotional-equity"]["earlier"]
    nm_earlier = read_history()["tag_threshold"]["neural-mandate"]["earlier"]
    assert 0.5 in earlier and 0.57 not in nm_earlier + [NOW["neural-mandate"]]
    ee = _set_threshold(workspace, "emotional-equity", "tag_threshold = 0.5  # as shipped")
    nm = _set_threshold(workspace, "neural-mandate", "tag_threshold = 0.57")
    nm_before = nm.read_bytes()
    campaigns = load_campaigns(workspace)
    notes = stale_defaults(workspace, campaigns)
    assert len(notes) == 1 and notes[0].startswith("emotional-equity: tag_threshold 0.5 ")

    result = update_defaults(workspace, campaigns)
    assert [(t.slug, t.before, t.after) for t in result.thresholds] == [
        ("emotional-equity", 0.5, NOW["emotional-equity"])
    ]
    shipped = f"\ntag_threshold = {NOW['emotional-equity']}  # as shipped\n"
    assert shipped in ee.read_text(encoding="utf-8")
    assert nm.read_bytes() == nm_before  # someone's own choice
    by_slug = {c.slug: c for c in load_campaigns(workspace)}
    assert by_slug["emotional-equity"].tag_threshold == NOW["emotional-equity"]
    assert by_slug["neural-mandate"].tag_threshold == 0.57
    assert stale_defaults(workspace, load_campaigns(workspace)) == []


def test_a_campaign_that_writes_no_threshold_takes_this_versions_default(workspace):
    path = workspace.campaigns_dir / "neural-mandate.toml"
    path.write_text(THRESHOLD_LINE.sub("\n", path.read_text(encoding="utf-8"), count=1), "utf-8")
    [nm] = [c for c in load_campaigns(workspace) if c.slug == "neural-mandate"]
    assert "tag_threshold" not in nm.model_fields_set
    assert stale_defaults(workspace, load_campaigns(workspace)) == []
    assert not update_defaults(workspace, load_campaigns(workspace)).changed


def test_campaigns_update_command(workspace):
    _earlier_file(workspace)
    _set_threshold(workspace, "neural-mandate", "tag_threshold = 0.45")
    runner = CliRunner()
    dry = runner.invoke(cli, ["campaigns", "update", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] and planned["changed"] and planned["backups"] == []
    assert planned["examples"]["added"] > 0
    assert planned["thresholds"][0]["slug"] == "neural-mandate"

    done = runner.invoke(cli, ["campaigns", "update"])
    assert done.exit_code == 0, done.output
    assert f"{planned['examples']['added']} example stories added" in done.stdout
    said = f"campaigns/neural-mandate.toml: tag_threshold 0.45 set to {NOW['neural-mandate']}"
    assert said in done.stdout
    assert done.stdout.count("the file as it was: campaigns/") == 2

    again = runner.invoke(cli, ["campaigns", "update"])
    assert again.exit_code == 0 and again.stdout.startswith("Nothing to update")


def test_a_broken_campaign_file_stops_the_update(workspace):
    (workspace.campaigns_dir / "broken.toml").write_text("slug = [", encoding="utf-8")
    _earlier_file(workspace)
    before = (workspace.campaigns_dir / "examples.jsonl").read_bytes()
    result = CliRunner().invoke(cli, ["campaigns", "update"])
    assert result.exit_code == 2 and "broken.toml" in result.stderr
    assert (workspace.campaigns_dir / "examples.jsonl").read_bytes() == before


@pytest.mark.parametrize("until", ["analyse", "transcribe"])
def test_process_says_when_it_routes_with_earlier_defaults(workspace, tmp_path, until):
    _set_threshold(workspace, "emotional-equity", "tag_threshold = 0.5")
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["process", "--until", until, str(empty)])
    assert result.exit_code == 1  # no recordings found
    said = "Note: emotional-equity: tag_threshold 0.5 is an earlier version's default"
    # Only when stories would be routed with it.
    assert (said in result.stderr) == (until == "analyse")


def test_a_workspace_from_before_any_examples_gets_them(workspace):
    (workspace.campaigns_dir / "examples.jsonl").unlink()
    campaigns = load_campaigns(workspace)
    [note] = stale_defaults(workspace, campaigns)
    assert "is missing, so tags are scored by their descriptions alone" in note
    result = update_defaults(workspace, campaigns)
    assert result.added == len(_shipped()) and result.backups == []
    path = workspace.campaigns_dir / "examples.jsonl"
    assert path.read_text(encoding="utf-8").splitlines() == _shipped()
    # An empty file is someone's choice: left alone, and nothing said.
    path.write_text("", encoding="utf-8")
    assert stale_defaults(workspace, campaigns) == []
    assert not update_defaults(workspace, campaigns).changed


def test_a_threshold_written_another_way_is_left_for_a_person(workspace):
    """Only a plain top-level line is edited, and only when the edit is proven to change
    nothing else; otherwise the note and the command say to set it by hand."""
    quoted = _set_threshold(workspace, "emotional-equity", 'tag_threshold = "0.5"')
    # The threshold line also appears inside a string before the real one: editing the
    # first match would change the description, and the check refuses that.
    nm = _set_threshold(workspace, "neural-mandate", "tag_threshold = 0.45")
    text = nm.read_text(encoding="utf-8")
    assert text.index('description = "') < text.index("\ntag_threshold = 0.45\n")
    text = text.replace('description = "', 'description = """\ntag_threshold = 0.45\n', 1)
    text = text.replace('."\n', '."""\n', 1)
    nm.write_text(text, encoding="utf-8")
    campaigns = {c.slug: c for c in load_campaigns(workspace)}
    assert campaigns["emotional-equity"].tag_threshold == 0.5
    assert campaigns["neural-mandate"].tag_threshold == 0.45
    before = {p: p.read_bytes() for p in (quoted, nm)}
    notes = stale_defaults(workspace, list(campaigns.values()))
    assert len(notes) == 2 and all("set it in campaigns/" in n for n in notes)

    result = CliRunner().invoke(cli, ["campaigns", "update", "--json"])
    assert result.exit_code == 1  # a person has to act
    out = json.loads(result.stdout)
    assert {t["slug"] for t in out["set_by_hand"]} == {"emotional-equity", "neural-mandate"}
    assert out["thresholds"] == [] and not out["changed"]
    assert {p: p.read_bytes() for p in (quoted, nm)} == before


def test_a_replaced_file_keeps_its_mode(workspace):
    _earlier_file(workspace)
    path = workspace.campaigns_dir / "examples.jsonl"
    path.chmod(0o600)
    ee = _set_threshold(workspace, "emotional-equity", "tag_threshold = 0.45")
    ee.chmod(0o640)
    result = update_defaults(workspace, load_campaigns(workspace))
    assert result.changed
    assert (path.stat().st_mode & 0o777, ee.stat().st_mode & 0o777) == (0o600, 0o640)
    modes = {
        b.split(".before-update-")[0]: (workspace.root / b).stat().st_mode & 0o777
        for b in result.backups
    }
    assert modes == {"campaigns/examples.jsonl": 0o600, "campaigns/emotional-equity.toml": 0o640}


def test_a_write_that_fails_part_way_says_what_was_done(workspace, monkeypatch):
    from narratives.core.errors import EnvironmentProblem
    from narratives.workflow import upgrade

    _earlier_file(workspace)
    _set_threshold(workspace, "neural-mandate", "tag_threshold = 0.45")
    originals = {p.name: p.read_bytes() for p in workspace.campaigns_dir.iterdir()}
    real = upgrade._replace

    def replace(path, text):
        if path.suffix == ".toml":
            raise EnvironmentProblem(f"cannot write {path}: disk full")
        real(path, text)

    monkeypatch.setattr(upgrade, "_replace", replace)
    with pytest.raises(EnvironmentProblem) as caught:
        update_defaults(workspace, load_campaigns(workspace))
    message = str(caught.value)
    assert "disk full" in message and "already updated: campaigns/examples.jsonl" in message
    # Every file as it was is kept aside, including the one already replaced.
    copies = sorted(p for p in workspace.campaigns_dir.iterdir() if ".before-update-" in p.name)
    assert len(copies) == 2 and all(p.name.split(".before-update-")[0] in originals for p in copies)
    for p in copies:
        assert p.read_bytes() == originals[p.name.split(".before-update-")[0]]
    assert p.name in message


def test_process_notes_survive_an_unreadable_examples_file(workspace, tmp_path):
    with (workspace.campaigns_dir / "examples.jsonl").open("ab") as f:
        f.write(b'{"text": "caf\xe9", "tags": []}\n')
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["process", "--until", "analyse", str(empty)])
    # Exit 1 for "no recordings found", not for a crash in the note.
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "no recordings" in result.stderr.lower()


ROUNDS = 200


def _updater(root: str, barrier, results) -> None:
    """A second `campaigns update` at the same moment, round after round."""
    from narratives.core.workspace import Workspace

    ws = Workspace(Path(root))
    for _ in range(ROUNDS):
        barrier.wait()
        try:
            results.put(update_defaults(ws, load_campaigns(ws)).to_json())
        except Exception as exc:  # reported to the parent, which fails the test
            results.put({"error": repr(exc)})
        barrier.wait()


def test_two_updates_at_once_neither_lose_nor_double_anything(workspace):
    """Two processes update the same workspace at the same moment, 200 times: one does the
    work, the other finds nothing left; the copies aside always hold the files as they were."""
    import multiprocessing

    own = json.dumps({"text": "A story of my own.", "tags": []})
    path = workspace.campaigns_dir / "examples.jsonl"
    ee = workspace.campaigns_dir / "emotional-equity.toml"
    shipped_ee = ee.read_text(encoding="utf-8")

    def reset() -> dict[str, bytes]:
        for p in workspace.campaigns_dir.glob("*.before-update-*"):
            p.unlink()
        _earlier_file(workspace, extra=[own])
        old = THRESHOLD_LINE.sub("\ntag_threshold = 0.5\n", shipped_ee, count=1)
        ee.write_text(old, encoding="utf-8")
        return {p.name: p.read_bytes() for p in (path, ee)}

    old = reset()
    update_defaults(workspace, load_campaigns(workspace))
    expected = {p.name: p.read_bytes() for p in (path, ee)}
    assert expected != old

    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(3), spawn.Queue()
    workers = [
        spawn.Process(target=_updater, args=(str(workspace.root), barrier, results))
        for _ in range(2)
    ]
    for w in workers:
        w.start()
    try:
        for _ in range(ROUNDS):
            old = reset()
            barrier.wait(timeout=60)
            got = [results.get(timeout=60), results.get(timeout=60)]
            assert not any("error" in g for g in got), got
            assert sorted(g["changed"] for g in got) == [False, True]
            assert {p.name: p.read_bytes() for p in (path, ee)} == expected
            copies = {
                p.name.split(".before-update-")[0]: p.read_bytes()
                for p in workspace.campaigns_dir.glob("*.before-update-*")
            }
            assert copies == old
            barrier.wait(timeout=60)
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()


def test_a_dry_run_takes_no_lock_and_a_held_lock_is_waited_for_then_named(workspace, monkeypatch):
    from filelock import FileLock

    from narratives.core.errors import EnvironmentProblem
    from narratives.workflow import upgrade

    _earlier_file(workspace)
    lock = workspace.state_dir / "campaigns-update.lock"
    lock.unlink(missing_ok=True)
    assert update_defaults(workspace, load_campaigns(workspace), dry_run=True).changed
    assert not lock.exists()  # a dry run writes nothing, not even a lock

    monkeypatch.setattr(upgrade, "LOCK_WAIT_SECONDS", 0.2)
    before = (workspace.campaigns_dir / "examples.jsonl").read_bytes()
    with FileLock(lock), pytest.raises(EnvironmentProblem) as caught:
        update_defaults(workspace, load_campaigns(workspace))
    assert "another `narrative campaigns update`" in str(caught.value)
    assert "nothing was updated" in str(caught.value)
    assert (workspace.campaigns_dir / "examples.jsonl").read_bytes() == before


def test_a_copy_aside_that_fails_leaves_no_partial_copy(workspace, monkeypatch):
    import shutil

    from narratives.core.errors import EnvironmentProblem
    from narratives.workflow import upgrade

    _earlier_file(workspace)
    _set_threshold(workspace, "emotional-equity", "tag_threshold = 0.5")
    originals = {p.name: p.read_bytes() for p in workspace.campaigns_dir.iterdir()}
    real = shutil.copy2

    def copy2(src, dst):
        if str(src).endswith(".toml"):
            Path(dst).write_bytes(b"partial")
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(upgrade.shutil, "copy2", copy2)
    with pytest.raises(EnvironmentProblem) as caught:
        update_defaults(workspace, load_campaigns(workspace))
    assert "nothing was updated" in str(caught.value)
    assert {p.name: p.read_bytes() for p in workspace.campaigns_dir.iterdir()} == originals


def test_line_endings_are_kept(workspace):
    lines = _earlier_file(workspace)
    path = workspace.campaigns_dir / "examples.jsonl"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    ee = _set_threshold(workspace, "emotional-equity", "tag_threshold = 0.5")
    ee.write_bytes(ee.read_bytes().replace(b"\n", b"\r\n"))
    update_defaults(workspace, load_campaigns(workspace))
    for p in (path, ee):
        data = p.read_bytes()
        assert data.count(b"\n") == data.count(b"\r\n") > 10
    now = NOW["emotional-equity"]
    assert f"\r\ntag_threshold = {now}\r\n".encode() in ee.read_bytes()
    assert {c.slug: c.tag_threshold for c in load_campaigns(workspace)}["emotional-equity"] == now


def test_an_examples_file_that_is_not_utf8_is_named_not_a_traceback(workspace):
    from narratives.stages.analyse.tagging import read_examples

    path = workspace.campaigns_dir / "examples.jsonl"
    with path.open("ab") as f:
        f.write(b'{"text": "caf\xe9", "tags": []}\n')
    n = path.read_bytes().count(b"\n")
    examples, errors = read_examples(workspace.campaigns_dir)
    assert examples == [] and errors == [
        f"{path}:{n}: not UTF-8 text (invalid continuation byte); save the file as UTF-8"
    ]
    assert stale_defaults(workspace, load_campaigns(workspace)) == []
