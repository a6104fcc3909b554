"""Campaign assignments (`narratives/policy/routing.py`, `campaign_assignments.py`,
`narratives/workflow/assignments.py`): the routing rule, the append-only table and its audit
rows, refusals, the unassigned list, drafts following the routes, sidecar `campaigns`, and
writers racing on one narrative (real threads, SQLite and PostgreSQL).

No models here: narratives are written straight into the workspace (tests/review_fixtures.py)
and rendering is switched off, so making outputs is drafts only."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from narratives.core.errors import ConfigError, InvalidState, NotFound, UsageError
from narratives.policy import campaign_assignments as choices
from narratives.policy import routing
from narratives.policy.sidecar import load_sidecar, sidecar_campaigns
from narratives.records.analysis import Analysis
from narratives.stages.draft import stage as drafting
from narratives.store.context import Context
from narratives.store.db import include_object
from narratives.store.schema import audit_log, campaign_assignments, metadata
from narratives.store.stage_runs import stage_run
from narratives.workflow import assignments, review
from narratives.workflow.takedown import withdraw
from tests.review_fixtures import add_narrative, add_user, analysis_for

EQUITY, MANDATE = "emotional-equity", "neural-mandate"


@pytest.fixture
def ctx(workspace):
    """Rendering off: making outputs is then drafts only (fast)."""
    workspace.settings_path.write_text("[render]\nenabled = false\n", encoding="utf-8")
    ctx = Context(workspace)
    for name in ("kai", "ada"):  # assigning from the CLI or the web page needs a user here
        add_user(ctx, name)
    return ctx


def _analysed(ctx, seed="story-1", **overrides) -> str:
    nid = add_narrative(ctx, seed, analysis=analysis_for(**overrides) if overrides else None)
    with stage_run(ctx.db, nid, "analyse") as run:  # as the pipeline leaves it
        run.engine = "embeddings"
    return nid


def _off_topic() -> dict:
    """Every campaign's tags under its threshold: the story fits none."""
    return {
        EQUITY: {
            "tags": [
                {"name": "sleep-inequality", "score": 0.41, "applies": False},
                {"name": "equal-access", "score": 0.33, "applies": False},
            ],
            "top": "sleep-inequality",
            "on_topic": False,
            "threshold": 0.45,
        },
        MANDATE: {
            "tags": [
                {"name": "shared-dreamscapes", "score": 0.29, "applies": False},
                {"name": "neural-consent", "score": 0.05, "applies": False},
            ],
            "top": "shared-dreamscapes",
            "on_topic": False,
            "threshold": 0.45,
        },
    }


def _rows(ctx, nid) -> list[dict]:
    with ctx.db.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(campaign_assignments)
                .where(campaign_assignments.c.narrative_id == nid)
                .order_by(campaign_assignments.c.id)
            )
        ]


def _audit(ctx, nid) -> list[dict]:
    with ctx.db.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(audit_log)
                .where(
                    audit_log.c.object_type == "narrative",
                    audit_log.c.object_id == nid,
                    audit_log.c.action.like("campaign.%"),
                )
                .order_by(audit_log.c.id)
            )
        ]


def test_the_table_is_in_the_migrations(ctx):
    with ctx.db.connect() as conn:
        mc = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include_object}
        )
        assert compare_metadata(mc, metadata) == []
        assert conn.execute(sa.text("select version_num from alembic_version")).scalar() >= "0005"
        columns = {c["name"] for c in sa.inspect(conn).get_columns("campaign_assignments")}
    assert columns == {"id", "narrative_id", "campaign", "assigned", "source", "actor", "at"}


def test_routing_rule_assigned_campaigns_hold_and_tags_only_fill_in(ctx):
    nid = _analysed(ctx)  # the fixture's tags fit emotional-equity only
    assert routing.routes(ctx, nid) == [routing.Route(EQUITY, "tags", "equal-access", 0.81)]

    # Assigned: exactly the assigned campaigns, whatever the tags say.
    choices.assign(ctx, nid, MANDATE, actor="kai")
    # (The analysis names no top tag for it: the best-scoring one stands in.)
    assert routing.routes(ctx, nid) == [
        routing.Route(MANDATE, "assigned", "shared-dreamscapes", 0.1)
    ]
    choices.assign(ctx, nid, EQUITY, actor="kai")
    assert [(r.campaign, r.reason) for r in routing.routes(ctx, nid)] == [
        (EQUITY, "assigned"),
        (MANDATE, "assigned"),
    ]

    # No assigned campaign left: back to the tags, minus what was explicitly unassigned.
    choices.unassign(ctx, nid, MANDATE, actor="kai")
    choices.unassign(ctx, nid, EQUITY, actor="kai")
    assert choices.explicit(ctx, nid) == {MANDATE: False, EQUITY: False}
    assert routing.routes(ctx, nid) == []
    assert [u.id for u in routing.unassigned(ctx)] == [nid]

    choices.assign(ctx, nid, EQUITY, actor="kai")
    choices.unassign(ctx, nid, EQUITY, actor="kai")
    choices.assign(ctx, nid, MANDATE, actor="kai")
    choices.unassign(ctx, nid, MANDATE, actor="kai")
    assert routing.routes(ctx, nid) == []
    # The analysis given is used instead of the file.
    data = analysis_for()
    data["campaigns"][MANDATE]["on_topic"] = True
    assert routing.routes(ctx, nid, Analysis.from_dict(data)) == []  # both explicitly unassigned


def test_a_story_fitting_no_campaign_is_listed_with_suggestions(ctx):
    lost = _analysed(ctx, "lost", campaigns=_off_topic(), title="The night bus")
    fits = _analysed(ctx, "fits")
    found = routing.unassigned(ctx)
    assert [u.id for u in found] == [lost]
    story = found[0]
    assert story.title == "The night bus" and story.label == "story.wav"
    assert [s.campaign for s in story.suggestions] == [EQUITY, MANDATE]  # best score first
    best = story.suggestions[0]
    assert (best.name, best.top, best.score) == ("Emotional Equity", "sleep-inequality", 0.41)
    assert best.tags == [("sleep-inequality", 0.41), ("equal-access", 0.33)]
    assert json.loads(json.dumps(story.to_json()))["suggestions"][1]["top"] == "shared-dreamscapes"
    assert routing.is_unassigned(ctx, lost) and not routing.is_unassigned(ctx, fits)

    choices.assign(ctx, lost, MANDATE, actor="kai")
    assert routing.unassigned(ctx) == []
    assert routing.routes(ctx, lost) == [
        routing.Route(MANDATE, "assigned", "shared-dreamscapes", 0.29)
    ]


def test_unassigned_leaves_out_failed_withdrawn_empty_and_unanalysed_stories(ctx):
    failed = _analysed(ctx, "failed", campaigns=_off_topic())
    with pytest.raises(RuntimeError), stage_run(ctx.db, failed, "transcribe"):
        raise RuntimeError("decoder crashed")  # a re-run that failed; the old analysis stays
    withdrawn = _analysed(ctx, "withdrawn", campaigns=_off_topic())
    withdraw(ctx, withdrawn, actor="kai", reason="asked by phone")
    _analysed(ctx, "empty", campaigns={}, empty=True, reason="no speech")
    add_narrative(ctx, "not-analysed", analysis=analysis_for(campaigns=_off_topic()))
    lost = _analysed(ctx, "lost", campaigns=_off_topic())
    assert [u.id for u in routing.unassigned(ctx)] == [lost]


def test_a_damaged_analysis_is_listed_with_why_and_hides_no_other_story(ctx):
    """One damaged analysis.json among others: `unassigned`, `narrative status` and the review
    pages list every story, the damaged one with the file named, instead of failing whole."""
    from click.testing import CliRunner

    from narratives.cli import cli
    from tests.web_client import client_for

    first = _analysed(ctx, "lost-1", campaigns=_off_topic(), title="The night bus")
    damaged = _analysed(ctx, "damaged", campaigns=_off_topic(), title="The ferry")
    fits = _analysed(ctx, "fits")
    (ctx.workspace.narrative_dir(damaged) / "analysis.json").write_text("{not json")

    found = {u.id: u for u in routing.unassigned(ctx)}
    assert set(found) == {first, damaged}
    assert found[first].problem is None
    assert "analysis.json" in found[damaged].problem
    assert [s.score for s in found[damaged].suggestions] == [None, None]  # still assignable
    assert found[damaged].to_json()["problem"] == found[damaged].problem

    r = CliRunner().invoke(cli, ["status", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = {row["id"]: row for row in map(json.loads, r.output.splitlines())}
    assert set(rows) == {first, damaged, fits}
    assert any("analysis.json" in e for e in rows[damaged]["errors"])
    assert rows[fits]["campaigns"] and not rows[fits]["errors"]
    shown = CliRunner().invoke(cli, ["show", damaged, "--json"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert "analysis" not in data and "analysis.json" in data["problems"][0]
    text = CliRunner().invoke(cli, ["show", damaged], catch_exceptions=False)
    assert text.exit_code == 0 and "cannot read" in " ".join(text.output.split())

    client = client_for(ctx, user="edna")
    page = client.get("/unassigned")
    assert page.status_code == 200
    assert "Its analysis cannot be read" in page.text and "The night bus" in page.text
    assert client.get("/").status_code == 200


def test_every_change_has_one_audit_row_and_repeats_write_nothing(ctx):
    nid = _analysed(ctx)
    first = choices.assign(ctx, nid, MANDATE, actor="kai", source="web")
    again = choices.assign(ctx, nid, MANDATE, actor="ada")
    assert first.changed and not again.changed and again.id == first.id
    assert again.actor == "kai" and again.source == "web"  # the row in force
    off = choices.unassign(ctx, nid, MANDATE, actor="ada")
    assert choices.unassign(ctx, nid, MANDATE, actor="ada").changed is False

    rows = _rows(ctx, nid)
    assert [(r["campaign"], r["assigned"], r["source"], r["actor"]) for r in rows] == [
        (MANDATE, True, "web", "kai"),
        (MANDATE, False, "cli", "ada"),
    ]
    assert [r["id"] for r in rows] == [first.id, off.id]
    assert all(r["at"].utcoffset().total_seconds() == 0 for r in rows)
    audit = _audit(ctx, nid)
    assert [(a["action"], a["actor"]) for a in audit] == [
        ("campaign.assign", "kai"),
        ("campaign.unassign", "ada"),
    ]
    assert audit[0]["before"] is None
    assert audit[0]["after"] == {"campaign": MANDATE, "assigned": True, "source": "web"}
    assert audit[1]["before"] == {"campaign": MANDATE, "assigned": True}
    assert [a.id for a in choices.history(ctx, nid)] == [first.id, off.id]


def test_refusals(ctx):
    nid = _analysed(ctx)
    with pytest.raises(UsageError) as err:
        choices.assign(ctx, nid, "no-such-campaign", actor="kai")
    assert err.value.exit_code == 2
    assert "no-such-campaign" in str(err.value)
    assert EQUITY in str(err.value) and MANDATE in str(err.value)
    with pytest.raises(UsageError):
        choices.unassign(ctx, nid, "nope", actor="kai")
    with pytest.raises(UsageError):
        choices.assign(ctx, nid, MANDATE, actor="kai", source="telepathy")
    with pytest.raises(UsageError):
        choices.assign(ctx, nid, MANDATE, actor=" ")
    with pytest.raises(NotFound):
        choices.assign(ctx, "0" * 64, MANDATE, actor="kai")

    failed = _analysed(ctx, "failed")
    with pytest.raises(RuntimeError), stage_run(ctx.db, failed, "analyse"):
        raise RuntimeError("the embedding model ran out of memory")
    with pytest.raises(InvalidState) as err:
        choices.assign(ctx, failed, MANDATE, actor="kai")
    assert err.value.exit_code == 6
    assert "analyse stage failed" in str(err.value) and "out of memory" in str(err.value)
    # At intake the stages are about to run again: allowed.
    assert choices.assign(ctx, failed, MANDATE, actor="kai", source="intake").changed

    empty = _analysed(ctx, "empty", campaigns={}, empty=True, reason="the recording is silent")
    with pytest.raises(InvalidState) as err:
        choices.assign(ctx, empty, MANDATE, actor="kai")
    assert "silent" in str(err.value)

    withdrawn = _analysed(ctx, "withdrawn")
    assert choices.assign(ctx, withdrawn, EQUITY, actor="kai").changed
    withdraw(ctx, withdrawn, actor="kai", reason="asked by phone")
    # A withdrawn story goes to no campaign, even one it was assigned to...
    assert routing.routes(ctx, withdrawn) == []
    # ...and assigning it again is refused, not a silent no-op that makes outputs.
    with pytest.raises(InvalidState, match="withdrawn"):
        choices.assign(ctx, withdrawn, EQUITY, actor="kai")
    for source in ("cli", "intake", "sidecar"):
        with pytest.raises(InvalidState) as err:
            choices.assign(ctx, withdrawn, MANDATE, actor="kai", source=source)
        assert "withdrawn" in str(err.value)
    # Unassigning only takes away: allowed.
    assert choices.unassign(ctx, withdrawn, EQUITY, actor="kai").changed
    assert _rows(ctx, empty) == [] and len(_rows(ctx, withdrawn)) == 2
    assert _audit(ctx, empty) == []


def test_drafts_follow_the_routes_and_an_assigned_campaign_keeps_its_best_tag(ctx):
    nid = _analysed(ctx, campaigns=_off_topic())
    assert drafting.run(ctx, nid) == []
    choices.assign(ctx, nid, MANDATE, actor="kai")
    ids = drafting.run(ctx, nid)  # the assignment redoes the stage (its inputs changed)
    made = [review.get_draft(ctx, i) for i in ids]
    assert {(d.campaign, d.channel) for d in made} == {(MANDATE, "bluesky"), (MANDATE, "rss")}
    # No tag reaches the threshold, but tags rank within the campaign, never drop it.
    assert all(d.data["tags"] == ["shared-dreamscapes"] for d in made)
    assert all(d.data["top"] == "shared-dreamscapes" for d in made)


def test_make_outputs_then_unassign_settles_drafts_and_reassign_reopens_them(ctx):
    nid = _analysed(ctx, campaigns=_off_topic())
    choices.assign(ctx, nid, MANDATE, actor="kai")
    seen: list[str] = []
    out = assignments.make_outputs(ctx, nid, progress=seen.append, actor="kai")
    assert (out.videos, out.drafts, out.new_drafts, out.errors) == (0, 2, 2, [])
    assert "drafts" in seen
    again = assignments.make_outputs(ctx, nid)
    assert (again.drafts, again.new_drafts) == (2, 0)
    by_channel = {d.channel: d for d in review.list_drafts(ctx, campaign=MANDATE)}
    review.approve(ctx, by_channel["bluesky"].id, actor="kai")

    choices.unassign(ctx, nid, MANDATE, actor="kai")
    notes = {n.channel: n for n in assignments.settle_drafts(ctx, nid, MANDATE, actor="kai")}
    assert notes["rss"].action == "rejected" and notes["rss"].state == "rejected"
    assert notes["bluesky"].action == "kept" and notes["bluesky"].state == "approved"
    assert f"narrative drafts reject {by_channel['bluesky'].id}" in notes["bluesky"].message
    assert review.get_draft(ctx, by_channel["bluesky"].id).state == "approved"
    assert review.get_draft(ctx, by_channel["rss"].id).state == "rejected"
    assert assignments.pending_drafts(ctx, nid, MANDATE) == []

    # Assigned again: the draft the unassignment withdrew goes back to review.
    choices.assign(ctx, nid, MANDATE, actor="kai")
    assignments.make_outputs(ctx, nid, actor="kai")
    assert review.get_draft(ctx, by_channel["rss"].id).state == "pending_review"
    # ...but not one an editor rejected.
    review.reject(ctx, by_channel["rss"].id, actor="kai", reason="not for us")
    assignments.make_outputs(ctx, nid, actor="kai")
    assert review.get_draft(ctx, by_channel["rss"].id).state == "rejected"


def test_settle_drafts_needs_a_user_to_reject_and_can_keep_them(ctx):
    nid = _analysed(ctx, campaigns=_off_topic())
    choices.assign(ctx, nid, MANDATE, actor="kai")
    assignments.make_outputs(ctx, nid)
    from narratives.core.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        choices.unassign(ctx, nid, MANDATE, actor="ghost")
    choices.unassign(ctx, nid, MANDATE, actor="kai")

    with pytest.raises(PermissionDenied):
        assignments.settle_drafts(ctx, nid, MANDATE, actor="ghost")
    kept = assignments.settle_drafts(ctx, nid, MANDATE, actor="ghost", reject=False)
    assert [n.action for n in kept] == ["kept", "kept"]
    assert len(assignments.pending_drafts(ctx, nid, MANDATE)) == 2


def test_make_outputs_reports_errors_instead_of_raising(ctx):
    nid = _analysed(ctx, campaigns=_off_topic())
    choices.assign(ctx, nid, MANDATE, actor="kai")
    (ctx.workspace.narrative_dir(nid) / "analysis.json").unlink()
    out = assignments.make_outputs(ctx, nid)
    assert out.drafts == 0 and len(out.errors) == 1 and "no analysis" in out.errors[0]
    with pytest.raises(UsageError):
        assignments.make_outputs(ctx, nid, campaigns=["nope"])


def test_sidecar_campaigns_key(tmp_path):
    rec = tmp_path / "story.m4a"
    side = tmp_path / "story.consent.toml"
    assert sidecar_campaigns(rec) == [] and load_sidecar(rec) is None
    side.write_text('campaigns = ["neural-mandate", "emotional-equity", "neural-mandate"]\n')
    assert sidecar_campaigns(rec) == [MANDATE, EQUITY]
    assert load_sidecar(rec) is None  # campaigns only: no consent in it
    side.write_text(
        'given_by = "Lena M."\nmethod = "form"\nchannels = ["rss"]\n'
        'campaigns = ["neural-mandate"]\n'
    )
    assert load_sidecar(rec).given_by == "Lena M." and sidecar_campaigns(rec) == [MANDATE]
    side.write_text("campaigns = [1, 2]\n")
    with pytest.raises(ConfigError) as err:
        sidecar_campaigns(rec)
    assert "story.consent.toml" in str(err.value) and "campaigns" in str(err.value)


def _race(ctx, nid: str, rounds: int, actors: tuple[str, str] = ("kai", "ada")) -> None:
    """Two threads: one assigns then unassigns, the other unassigns then assigns, `rounds`
    times each, on one narrative and campaign. Checks the table and the audit log."""
    changes: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(order: tuple[bool, bool], actor: str) -> None:
        try:
            start.wait()
            for _ in range(rounds):
                for yes in order:
                    fn = choices.assign if yes else choices.unassign
                    row = fn(ctx, nid, MANDATE, actor=actor)
                    if row.changed:
                        changes.append(row.id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=((True, False), actors[0])),
        threading.Thread(target=worker, args=((False, True), actors[1])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = _rows(ctx, nid)
    # Every row is a real change: the states alternate, never the same twice in a row.
    assert all(a["assigned"] != b["assigned"] for a, b in zip(rows, rows[1:], strict=False))
    assert sorted(changes) == [r["id"] for r in rows]
    assert len(rows) >= 2
    # The final state is the last row; exactly one audit row per row.
    assert choices.explicit(ctx, nid) == {MANDATE: rows[-1]["assigned"]}
    audit = _audit(ctx, nid)
    assert len(audit) == len(rows)
    assert [a["action"] for a in audit] == [
        "campaign.assign" if r["assigned"] else "campaign.unassign" for r in rows
    ]


def test_racing_writers_on_one_narrative_sqlite(ctx):
    nid = _analysed(ctx)
    _race(ctx, nid, rounds=200)


@pytest.mark.postgres
def test_migration_and_racing_writers_on_postgres(postgres_url, workspace):
    workspace.settings_path.write_text(
        f'[database]\nurl = "{postgres_url}"\n\n[render]\nenabled = false\n', encoding="utf-8"
    )
    ctx = Context(workspace)
    assert ctx.db.dialect.name == "postgresql"
    for name in ("racer-a", "racer-b"):  # the Postgres database is shared by the session
        add_user(ctx, name)
    with ctx.db.connect() as conn:
        mc = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include_object}
        )
        assert compare_metadata(mc, metadata) == []
    nid = _analysed(ctx, "assignments-on-postgres")
    _race(ctx, nid, rounds=100, actors=("racer-a", "racer-b"))
    # Assigned: that campaign alone; unassigned: back to the tags (emotional-equity).
    expected = [MANDATE] if choices.explicit(ctx, nid)[MANDATE] else [EQUITY]
    assert [r.campaign for r in routing.routes(ctx, nid)] == expected
