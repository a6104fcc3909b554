"""`narrative export ID DIR`: everything about one narrator in one folder, with checksums
(issue 16, item 6)."""

from __future__ import annotations

import hashlib
import json
import stat

import pytest
import sqlalchemy as sa

from narratives.store.context import Context
from narratives.store.schema import metadata
from tests.test_w16_erase import SECRET, full_story, run


def test_export_holds_everything_with_checksums(ctx, tmp_path):
    story = full_story(ctx, tmp_path)
    nid = story["id"]
    dest = tmp_path / "for-lena"
    r = run("export", nid[:12], str(dest), "--json")
    assert r.exit_code == 0, r.output
    manifest = json.loads(r.output)
    assert manifest == json.loads((dest / "manifest.json").read_text())
    assert manifest["narrative_id"] == nid and manifest["exported_by"] == "kai"
    assert manifest["missing"] == []
    listed = {f["path"]: f for f in manifest["files"]}
    # Every file is listed with its true size and SHA-256, and nothing else is there.
    on_disk = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    assert set(listed) == on_disk
    for path, entry in listed.items():
        data = (dest / path).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert stat.S_IMODE((dest / path).stat().st_mode) == 0o600

    # The recording, byte for byte, and the generated files.
    recording = dest / "recording" / f"{SECRET}.wav"
    assert recording.read_bytes() == story["original"].read_bytes()
    for name in ("transcript.json", "analysis.json", "video-emotional-equity-vertical.mp4"):
        assert f"work/{name}" in listed
    # Drafts with every revision and comment, deliveries, consent, assignments, audit.
    drafts = json.loads((dest / "drafts.json").read_text())
    edited = next(d for d in drafts if d["id"] == story["drafts"][0])
    assert any(
        rev["action"] == "draft.edit" and SECRET in json.dumps(rev["after"])
        for rev in edited["revisions"]
    )
    assert [c["body"] for c in edited["comments"]] == [f"Is {SECRET} too identifying?"]
    delivered = next(d for d in drafts if d["id"] == story["drafts"][1])
    assert [d["id"] for d in delivered["deliveries"]] == [story["delivery"]]
    consent = json.loads((dest / "consent.json").read_text())
    assert consent["given_by"] == f"Lena of {SECRET}"
    assignments = json.loads((dest / "rows/campaign_assignments.json").read_text())
    assert [a["campaign"] for a in assignments] == ["emotional-equity"]
    assert json.loads((dest / "rows/tag_corrections.json").read_text())[0]["tag"] == "equal-access"
    actions = {a["action"] for a in json.loads((dest / "audit.json").read_text())}
    assert {"consent.set", "draft.edit", "draft.comment", "campaign.assign"} <= actions
    narrative = json.loads((dest / "narrative.json").read_text())
    assert narrative["recording_paths"] == [str(story["original"].resolve())]
    # The export itself is in the audit log.
    again = run("export", nid[:12], str(tmp_path / "second"), "--json")
    audit = json.loads((tmp_path / "second" / "audit.json").read_text())
    assert again.exit_code == 0 and audit[-1]["action"] == "narrative.export"


def test_export_refuses_a_folder_that_is_not_empty(ctx, tmp_path):
    story = full_story(ctx, tmp_path)
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    r = run("export", story["id"][:12], str(dest))
    assert r.exit_code == 2 and "is not empty" in r.output and "--force" in r.output
    assert sorted(p.name for p in dest.iterdir()) == ["notes.txt"]
    r = run("export", story["id"][:12], str(dest), "--force")
    assert r.exit_code == 0, r.output
    assert (dest / "notes.txt").read_text() == "mine"
    listed = [f["path"] for f in json.loads((dest / "manifest.json").read_text())["files"]]
    assert "notes.txt" not in listed  # the manifest lists what the export wrote


def test_export_bad_input(ctx, tmp_path):
    assert run("export", "abcdef", str(tmp_path / "x")).exit_code == 5
    story = full_story(ctx, tmp_path)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    r = run("export", story["id"][:12], str(a_file))
    assert r.exit_code == 2


def test_export_names_a_recording_it_cannot_find(ctx, tmp_path):
    story = full_story(ctx, tmp_path)
    (ctx.workspace.root / "media" / "recordings" / f"{story['id']}.wav").unlink()
    story["original"].unlink()
    r = run("export", story["id"][:12], str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["missing"] and str(story["original"].resolve()) in manifest["missing"][0]
    assert "not found" in r.output


@pytest.mark.postgres
def test_export_and_erase_on_postgres(fresh_postgres_url, workspace, tmp_path):
    """The same export and erasure on PostgreSQL: the foreign-key walk, the row lock, the
    consent and audit scrubbing; backup says to use pg_dump."""
    settings = workspace.settings_path
    settings.write_text(settings.read_text().replace('url = ""', f'url = "{fresh_postgres_url}"'))
    ctx = Context(workspace)
    assert ctx.db.dialect.name == "postgresql"
    story = full_story(ctx, tmp_path)
    nid = story["id"]
    r = run("export", nid[:12], str(tmp_path / "out"), "--json")
    assert r.exit_code == 0, r.output
    listed = {f["path"] for f in json.loads(r.output)["files"]}
    assert {"drafts.json", "consent.json", "rows/deliveries.json"} <= listed
    r = run("erase", nid[:12], "--yes", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["counts"]["drafts"] == 2
    with ctx.db.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                assert SECRET not in repr(row), table.name
    r = run("backup", str(tmp_path / "b"))
    assert r.exit_code == 2 and "pg_dump" in r.output
