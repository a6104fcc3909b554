"""`process --campaign`, the sidecar's `campaigns`, `assign` / `unassign`, `render --campaign`,
and unassigned stories in `process`, `status` and `show`: through the real pipeline (Whisper,
the analysis, tiny renders) on one short spoken clip."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from narratives.cli import cli
from narratives.policy import campaign_assignments as choices
from narratives.policy.consent import get_consent
from narratives.store.context import Context
from narratives.store.schema import audit_log
from narratives.workflow import review
from narratives.workflow.takedown import set_consent, withdraw
from tests.review_fixtures import add_user

EQUITY, MANDATE = "emotional-equity", "neural-mandate"


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """A short real spoken clip (espeak-ng), made once."""
    path = tmp_path_factory.mktemp("assign-clip") / "clip.wav"
    subprocess.run(
        ["espeak-ng", "-s", "160", "-w", str(path), "The night bus was late and I fell asleep."],
        check=True,
    )
    return path


@pytest.fixture
def ctx(workspace):
    """Tiny, fast renders."""
    workspace.settings_path.write_text("[render]\nscale = 0.2\nfps = 6\n", encoding="utf-8")
    return Context(workspace)


def _run(*args, env=None):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)


def _flat(text: str) -> str:
    """Terminal output with Rich's line wrapping undone."""
    return " ".join(text.split())


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _videos(ctx, nid) -> set[str]:
    return {p.name for p in ctx.workspace.narrative_dir(nid).glob("video-*.mp4")}


def _campaign_audit(ctx, nid) -> list[tuple[str, str, dict]]:
    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.actor, audit_log.c.after)
            .where(audit_log.c.object_id == nid, audit_log.c.action.like("campaign.%"))
            .order_by(audit_log.c.id)
        )
        return [tuple(r) for r in rows]


@pytest.mark.slow
def test_intake_assign_unassign_and_unassigned_stories(ctx, clip, tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    shutil.copy(clip, rec / "night-bus.wav")

    # An unknown campaign: a usage error naming the known ones, before any file is touched.
    bad = _run("process", "--campaign", "no-such", str(rec))
    assert bad.exit_code == 2
    assert "no-such" in _flat(bad.stderr) and EQUITY in bad.stderr and MANDATE in bad.stderr
    assert _lines(_run("status", "--json").output) == []

    # At intake: the story goes to the campaign named, whatever its tags say.
    first = _run("process", "--campaign", MANDATE, "--as", "kai", "--json", str(rec))
    assert first.exit_code == 0, first.output
    (item,) = _lines(first.stdout)
    nid = item["id"]
    assert item["status"] == "ok"
    assert [(c["campaign"], c["reason"]) for c in item["campaigns"]] == [(MANDATE, "assigned")]
    assert item["new_drafts"] == 2  # bluesky and rss
    assert _videos(ctx, nid) == {f"video-{MANDATE}-vertical.mp4"}  # what its channels publish
    assert {(d.campaign, d.state) for d in review.list_drafts(ctx)} == {(MANDATE, "pending_review")}
    assert _campaign_audit(ctx, nid) == [
        ("campaign.assign", "kai", {"campaign": MANDATE, "assigned": True, "source": "intake"})
    ]

    # Nothing new this run: the line about drafts awaiting review counts this run's only.
    again = _run("process", str(rec))
    assert again.exit_code == 0
    assert "await" not in again.stdout and "skipped 1" in _flat(again.stdout)

    # Unassign: the pending draft is withdrawn from review, the approved one is left (and said).
    add_user(ctx, "kai")
    set_consent(ctx, nid, given_by="N", method="form", channels=["bluesky", "rss"], actor="kai")
    drafts = {d.channel: d for d in review.list_drafts(ctx, campaign=MANDATE)}
    review.approve(ctx, drafts["bluesky"].id, actor="kai")
    out = _run("unassign", nid[:10], "--campaign", MANDATE, "--campaign", EQUITY, "--as", "kai")
    assert out.exit_code == 0, out.output
    said = _flat(out.stderr)
    assert f"draft {drafts['bluesky'].id} (bluesky) is approved: left as it is" in said
    assert f"draft {drafts['rss'].id} (rss) was pending review: rejected" in said
    assert "fits no campaign" in _flat(out.stdout)
    assert review.get_draft(ctx, drafts["bluesky"].id).state == "approved"
    assert review.get_draft(ctx, drafts["rss"].id).state == "rejected"

    # Unassigned now: a status of its own everywhere, with suggestions.
    table = _run("process", str(rec))
    assert table.exit_code == 0
    summary = _flat(table.stdout)
    assert "unassigned 1, failed 0" in summary and "1 story fits no campaign" in summary
    assert "narrative assign ID --campaign SLUG" in summary and nid[:12] in summary
    (item,) = _lines(_run("process", "--json", str(rec)).stdout)
    assert item["status"] == "unassigned" and item["campaigns"] == []
    assert {s["campaign"] for s in item["suggestions"]} == {EQUITY, MANDATE}
    assert all(s["top"] and s["tags"] for s in item["suggestions"])
    (row,) = _lines(_run("status", "--json").output)
    assert row["unassigned"] is True and row["campaigns"] == [] and len(row["suggestions"]) == 2
    human = _flat(_run("status").output)
    assert "1 story fits no campaign" in human and "night-bus.wav" in human
    shown = json.loads(_run("show", nid[:8], "--json").output)
    assert shown["unassigned"] is True
    assert [(a["campaign"], a["assigned"]) for a in shown["assignments"]] == [
        (MANDATE, True),
        (MANDATE, False),
        (EQUITY, False),
    ]
    assert "unassigned" in _run("show", nid[:8]).output
    assert f"narrative assign {nid[:12]} --campaign SLUG" in _flat(_run("show", nid[:8]).output)

    # A video for a campaign the story does not go to: said clearly, with the way out.
    made = _run("render", nid[:8], "--campaign", EQUITY, "--format", "square")
    assert made.exit_code == 0
    note = _flat(made.stderr)
    assert "no draft will use this video" in note and "was unassigned from" in note
    assert f"narrative assign {nid[:12]} --campaign {EQUITY}" in note
    (line,) = _lines(
        _run("render", nid[:8], "--campaign", EQUITY, "--format", "square", "--json").stdout
    )
    assert line["routed"] is False and line["skipped"] is True
    assert f"narrative assign {nid[:12]} --campaign {EQUITY}" in line["note"]
    assert _run("render", nid[:8], "--campaign", "nope").exit_code == 2

    # Assign: recorded, then video and drafts made at once.
    done = _run("assign", nid[:8], "--campaign", EQUITY, "--as", "kai", "--json")
    assert done.exit_code == 0, done.output
    (report,) = _lines(done.stdout)
    assert [(c["campaign"], c["reason"]) for c in report["campaigns"]] == [(EQUITY, "assigned")]
    assert report["drafts"] == 2 and report["new_drafts"] == 2 and report["errors"] == []
    assert report["videos"] == 1  # the vertical one its channels publish
    assert "drafts" in done.stderr  # progress
    assert f"video-{EQUITY}-vertical.mp4" in _videos(ctx, nid)
    assert {d.state for d in review.list_drafts(ctx, campaign=EQUITY)} == {"pending_review"}
    assert _lines(_run("status", "--json").output)[0]["unassigned"] is False
    # Already assigned: no new row.
    assert _run("assign", nid[:8], "--campaign", EQUITY, "--as", "kai").exit_code == 0
    assert [a for a, _, _ in _campaign_audit(ctx, nid)].count("campaign.assign") == 2

    # Refusals keep their exit codes.
    assert _run("assign", nid[:8], "--campaign", "nope", "--as", "kai").exit_code == 2
    assert _run("assign", "ffffffff", "--campaign", EQUITY, "--as", "kai").exit_code == 5
    assert _run("assign", nid[:8], "--campaign", EQUITY).exit_code == 2  # who is acting?
    withdraw(ctx, nid, actor="kai", reason="asked by phone")
    refused = _run("assign", nid[:8], "--campaign", MANDATE, "--as", "kai")
    assert refused.exit_code == 6 and "withdrawn" in refused.stderr
    # Already assigned, but withdrawn: refused too (a withdrawn story goes to no campaign).
    again = _run("assign", nid[:8], "--campaign", EQUITY, "--as", "kai", "--no-outputs")
    assert again.exit_code == 6 and "withdrawn" in again.stderr
    # Only a user here may assign from the terminal.
    assert _run("assign", nid[:8], "--campaign", EQUITY, "--as", "ghost").exit_code == 7
    # At intake, a withdrawn story fails that recording with the reason.
    (item,) = _lines(_run("process", "--campaign", MANDATE, "--json", str(rec)).stdout)
    assert item["status"] == "failed" and "withdrawn" in item["error"]
    assert "night-bus.wav" in item["error"]


@pytest.mark.slow
def test_sidecar_campaigns_assign_at_intake_and_a_bad_slug_fails_only_its_file(
    workspace, clip, tmp_path
):
    workspace.settings_path.write_text("[render]\nenabled = false\n", encoding="utf-8")
    ctx = Context(workspace)
    rec = tmp_path / "rec"
    rec.mkdir()
    shutil.copy(clip, rec / "a.wav")
    (rec / "a.consent.toml").write_text(
        f'given_by = "Lena M."\nmethod = "form"\nchannels = ["rss"]\ncampaigns = ["{EQUITY}"]\n'
    )
    (rec / "b.wav").write_bytes(b"not even audio")  # never read: its sidecar fails first
    (rec / "b.consent.toml").write_text('campaigns = ["emotional-equality"]\n')

    result = _run("process", "--json", str(rec))
    assert result.exit_code == 1
    items = {i["path"].rsplit("/", 1)[-1]: i for i in _lines(result.stdout)}
    assert items["b.wav"]["status"] == "failed" and items["b.wav"]["id"] is None
    error = items["b.wav"]["error"]
    assert "b.consent.toml" in error and "emotional-equality" in error
    assert EQUITY in error and MANDATE in error
    a = items["a.wav"]
    assert a["status"] == "ok", a["error"]
    assert [(c["campaign"], c["reason"]) for c in a["campaigns"]] == [(EQUITY, "assigned")]
    assert a["new_drafts"] == 2
    assert get_consent(ctx, a["id"]).given_by == "Lena M."
    assert [(r.campaign, r.source) for r in choices.history(ctx, a["id"])] == [(EQUITY, "sidecar")]
    # Only a.wav became a narrative.
    assert [r["id"] for r in _lines(_run("status", "--json").output)] == [a["id"]]
