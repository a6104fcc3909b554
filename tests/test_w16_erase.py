"""`narrative erase ID` and `consent withdraw --erase`: one narrator's data gone, a tombstone
kept, published posts taken down first (issue 16, item 6)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.errors import InvalidState
from narratives.policy.campaign_assignments import record_intake
from narratives.stages.ingest import RECORDINGS_DIR, register
from narratives.stages.pipeline import process_paths
from narratives.store.schema import (
    audit_log,
    consents,
    deliveries,
    metadata,
    narrative_paths,
    narratives,
    tag_corrections,
)
from narratives.workflow import review
from narratives.workflow.erasure import erase
from narratives.workflow.takedown import set_consent
from tests.delivery_fixtures import add_draft, rss_content
from tests.review_fixtures import add_render, add_user, analysis_for, transcript_for
from tests.test_w16_ingest import a_recording

#: A detail only this narrator's data holds: after erasure it is nowhere.
SECRET = "Valparaiso-7731"


def run(*args: str, input: str | None = None):
    return CliRunner(env={"NARRATIVES_USER": "kai"}).invoke(
        cli, list(args), input=input, catch_exceptions=False
    )


def full_story(ctx, tmp_path) -> dict:
    """A narrative with every kind of data: its recording copied in, transcript, analysis,
    a render, consent, drafts (one edited, one commented), a delivery, an assignment, a tag
    correction, and the audit rows all that wrote."""
    add_user(ctx, "kai")
    original, nid = a_recording(tmp_path / "archive", f"{SECRET}.wav")
    register(ctx, original)
    folder = ctx.workspace.narrative_dir(nid)
    folder.mkdir(parents=True, exist_ok=True)
    t = transcript_for(nid, [(0.0, f"I grew up in {SECRET} by the sea.")])
    (folder / "transcript.json").write_text(json.dumps(t.to_dict()))
    (folder / "transcript.txt").write_text(t.text)
    (folder / "analysis.json").write_text(json.dumps(analysis_for(title=SECRET)))
    add_render(ctx, nid, "emotional-equity")
    set_consent(
        ctx,
        nid,
        given_by=f"Lena of {SECRET}",
        method="form",
        channels=["bluesky", "rss"],
        anonymous=False,
        notes=f"call her in {SECRET}",
        actor="kai",
    )
    draft = add_draft(ctx, narrative_id=nid, state="pending_review")
    review.edit(ctx, draft, {"title": f"The sea at {SECRET}"}, actor="kai")
    review.comment(ctx, draft, f"Is {SECRET} too identifying?", actor="kai")
    other = add_draft(ctx, "neural-mandate", narrative_id=nid, content=rss_content(SECRET))
    delivered = _deliver(ctx, other, "withdrawn")
    record_intake(ctx, nid, ["emotional-equity"], actor="kai", source="intake")
    now = datetime.now(UTC)
    with ctx.db.begin() as conn:
        conn.execute(
            tag_corrections.insert().values(
                narrative_id=nid,
                campaign="emotional-equity",
                tag="equal-access",
                applies=True,
                actor="kai",
                at=now,
            )
        )
    return {"id": nid, "original": original, "drafts": [draft, other], "delivery": delivered}


def _deliver(ctx, draft_id: int, state: str) -> int:
    now = datetime.now(UTC)
    with ctx.db.begin() as conn:
        return conn.execute(
            deliveries.insert().values(
                draft_id=draft_id,
                campaign="neural-mandate",
                channel="rss",
                state=state,
                scheduled_at=now,
                published_at=now if state != "scheduled" else None,
                content=rss_content(SECRET),
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]


def everything_in_the_database(ctx) -> str:
    with ctx.db.connect() as conn:
        return "\n".join(
            repr(row) for table in metadata.sorted_tables for row in conn.execute(sa.select(table))
        )


def files_under(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()]


def test_erase_removes_every_trace_and_keeps_a_tombstone(ctx, tmp_path):
    story = full_story(ctx, tmp_path)
    nid = story["id"]
    assert SECRET in everything_in_the_database(ctx)
    r = run("erase", nid[:12], "--yes", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    counts = report["counts"]
    assert counts["drafts"] == 2 and counts["comments"] == 1 and counts["deliveries"] == 1
    assert counts["stage_runs"] == 1 and counts["campaign_assignments"] == 1
    assert counts["tag_corrections"] == 1 and counts["recording_copies"] == 1
    assert counts["work_files"] >= 6 and counts["consents_stripped"] == 1

    # No row and no file of the workspace holds anything of the story any more...
    assert SECRET not in everything_in_the_database(ctx)
    assert not (ctx.workspace.root / RECORDINGS_DIR / f"{nid}.wav").exists()
    assert not ctx.workspace.narrative_dir(nid).exists()
    for path in files_under(ctx.workspace.media_dir):
        assert SECRET.encode() not in path.read_bytes(), path
    # ...but the original outside it stays unless asked, and the output says where.
    assert story["original"].exists()
    assert report["originals_kept"] == [str(story["original"])]

    with ctx.db.connect() as conn:
        row = conn.execute(sa.select(narratives).where(narratives.c.id == nid)).one()
        assert row.erased_at is not None and row.label == "(erased)"
        assert conn.execute(sa.select(tag_corrections)).all() == []
        assert conn.execute(sa.select(narrative_paths)).all() == []
        consent = conn.execute(sa.select(consents)).one()
        assert consent.withdrawn_at is not None and consent.given_by == "(erased)"
        tomb = conn.execute(
            sa.select(audit_log).where(audit_log.c.action == "narrative.erase")
        ).one()
        # The older audit rows stay (who did what, when) without their content.
        kept = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.before, audit_log.c.after).where(
                audit_log.c.action != "narrative.erase", audit_log.c.object_type != "user"
            )
        ).all()
    assert tomb.actor == "kai" and tomb.object_id == nid
    assert tomb.after == {"erased": counts} and tomb.before is None
    assert kept and all(before is None and after is None for _a, before, after in kept)

    # `show` says erased; `status` no longer lists it; erase again is harmless.
    r = run("show", nid[:12])
    assert r.exit_code == 0 and "erased" in r.output and SECRET not in r.output
    assert nid[:12] not in run("status").output
    again = run("erase", nid[:12], "--yes")
    assert again.exit_code == 0 and "already erased" in again.output


def test_process_refuses_an_erased_recording_unless_forced(ctx, tmp_path):
    story = full_story(ctx, tmp_path)
    nid = story["id"]
    erase(ctx, nid, actor="kai")
    [result] = process_paths(ctx, [story["original"]], stages=())
    assert result.status == "failed"
    assert "was erased on" in result.error and nid[:12] in result.error
    assert not (ctx.workspace.root / RECORDINGS_DIR / f"{nid}.wav").exists()
    [result] = process_paths(ctx, [story["original"]], stages=(), force=True)
    assert result.status == "ok", result.error
    assert (ctx.workspace.root / RECORDINGS_DIR / f"{nid}.wav").exists()
    with ctx.db.connect() as conn:
        row = conn.execute(sa.select(narratives).where(narratives.c.id == nid)).one()
        actions = conn.execute(sa.select(audit_log.c.action).order_by(audit_log.c.id)).scalars()
        assert row.erased_at is None and row.label == story["original"].name
        assert list(actions)[-1] == "narrative.take_in_again"
        # Consent stays withdrawn: nothing goes out until someone records it anew.
        assert conn.execute(sa.select(consents.c.withdrawn_at)).scalar() is not None


def test_include_original_deletes_it_only_when_it_is_the_same_file(ctx, tmp_path):
    story = full_story(ctx, tmp_path)
    second, _ = a_recording(tmp_path / "copy2", "same.wav")  # same bytes elsewhere
    register(ctx, second, by_reference=True)
    second.write_bytes(b"since then, another recording was saved here")
    r = run("erase", story["id"][:12], "--yes", "--include-original", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["counts"]["originals"] == 1
    assert not story["original"].exists()
    assert second.exists()  # its hash no longer matches: not this narrator's recording


@pytest.mark.parametrize("state", ["scheduled", "published", "failed", "withdrawing"])
def test_erase_refuses_while_a_delivery_is_live(ctx, tmp_path, state):
    story = full_story(ctx, tmp_path)
    _deliver(ctx, story["drafts"][0], state)
    r = run("erase", story["id"][:12], "--yes")
    assert r.exit_code == 6
    assert f"narrative consent withdraw {story['id'][:12]}" in r.output
    # Nothing was erased.
    assert SECRET in everything_in_the_database(ctx)
    assert ctx.workspace.narrative_dir(story["id"]).is_dir()
    assert (ctx.workspace.root / RECORDINGS_DIR / f"{story['id']}.wav").exists()


def test_withdraw_offers_erasure_and_erase_flag_does_both(ctx, tmp_path):
    story = full_story(ctx, tmp_path)
    nid = story["id"]
    _deliver(ctx, story["drafts"][0], "scheduled")
    r = run("consent", "withdraw", nid[:12], "--reason", "asked", "--yes")
    assert r.exit_code == 0, r.output
    assert f"narrative erase {nid[:12]}" in r.output
    assert ctx.workspace.narrative_dir(nid).is_dir()  # withdrawal alone keeps the files

    other = full_story_again(ctx, tmp_path)
    _deliver(ctx, other["drafts"][0], "scheduled")
    r = run("consent", "withdraw", other["id"][:12], "--reason", "asked", "--yes", "--erase")
    assert r.exit_code == 0, r.output
    assert "Erased" in r.output and not ctx.workspace.narrative_dir(other["id"]).exists()
    with ctx.db.connect() as conn:
        states = conn.execute(sa.select(deliveries.c.state)).scalars().all()
    assert "scheduled" not in states


def full_story_again(ctx, tmp_path):
    """A second narrator (another recording)."""
    original, nid = a_recording(tmp_path / "b", "second.wav", seed=9)
    register(ctx, original)
    ctx.workspace.narrative_dir(nid).mkdir(parents=True, exist_ok=True)
    (ctx.workspace.narrative_dir(nid) / "transcript.txt").write_text(SECRET)
    set_consent(
        ctx, nid, given_by="B", method="form", channels=["rss"], anonymous=True, actor="kai"
    )
    draft = add_draft(ctx, narrative_id=nid)
    return {"id": nid, "drafts": [draft]}


def test_erase_asks_first_and_a_script_must_say_yes(ctx, tmp_path):
    story = full_story(ctx, tmp_path)
    short = story["id"][:12]
    r = run("erase", short)  # no terminal, nothing typed
    assert r.exit_code == 2 and "--yes" in r.output
    r = run("erase", short, input="n\n")
    assert r.exit_code == 1 and ctx.workspace.narrative_dir(story["id"]).is_dir()
    r = run("erase", short, input="y\n")
    assert r.exit_code == 0 and not ctx.workspace.narrative_dir(story["id"]).exists()


def test_erase_bad_input(ctx):
    assert run("erase", "abcdef123456", "--yes").exit_code == 5
    r = run("erase", "not-hex", "--yes")
    assert r.exit_code == 2 and "not a narrative id" in r.output
    r = CliRunner(env={"NARRATIVES_USER": ""}).invoke(cli, ["erase", "abc", "--yes"])
    assert r.exit_code in (2, 5)


def test_a_delivery_scheduled_meanwhile_stops_the_erasure(ctx, tmp_path, monkeypatch):
    """The live check runs under the narrative's lock in the erasing transaction: a delivery
    that appears after the files were planned still stops it, and no row goes."""
    from narratives.workflow import erasure

    story = full_story(ctx, tmp_path)
    planned = erasure.planned_files

    def plan_then_schedule(*args, **kwargs):
        out = planned(*args, **kwargs)
        _deliver(ctx, story["drafts"][0], "scheduled")
        return out

    monkeypatch.setattr(erasure, "planned_files", plan_then_schedule)
    with pytest.raises(InvalidState, match="still has deliveries") as err:
        erasure.erase(ctx, story["id"], actor="kai")
    assert "narrative consent withdraw" in err.value.hint
    assert SECRET in everything_in_the_database(ctx)
    assert ctx.workspace.narrative_dir(story["id"]).is_dir()


def test_erasing_while_another_thread_schedules_never_leaves_a_live_delivery(ctx, tmp_path):
    """Real threads, many rounds: one erases a story while another schedules its draft.
    Either the erasure is refused (the delivery came first) or the delivery cannot be made
    (its draft is gone); never an erased story with something still going out."""
    import threading

    def schedule(start, draft: int, outcome: dict) -> None:
        start.wait()
        try:
            _deliver(ctx, draft, "scheduled")
        except sa.exc.IntegrityError:
            outcome["schedule"] = "draft gone"

    def erase_it(start, nid: str, outcome: dict) -> None:
        start.wait()
        try:
            erase(ctx, nid, actor="kai")
            outcome["erase"] = "done"
        except InvalidState:
            outcome["erase"] = "refused"

    refused = erased = 0
    for i in range(120):
        original, nid = a_recording(tmp_path / f"r{i}", "s.wav", size=4096, seed=1000 + i)
        register(ctx, original)
        draft = add_draft(ctx, narrative_id=nid)
        start = threading.Barrier(2)
        outcome: dict = {}
        threads = [
            threading.Thread(target=schedule, args=(start, draft, outcome)),
            threading.Thread(target=erase_it, args=(start, nid, outcome)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        with ctx.db.connect() as conn:
            gone = conn.execute(
                sa.select(narratives.c.erased_at).where(narratives.c.id == nid)
            ).scalar()
            live = conn.execute(
                sa.select(sa.func.count())
                .select_from(deliveries)
                .where(deliveries.c.draft_id == draft, deliveries.c.state == "scheduled")
            ).scalar()
        if outcome["erase"] == "done":
            erased += 1
            assert gone is not None and live == 0 and outcome.get("schedule") == "draft gone"
        else:
            refused += 1
            assert gone is None and live == 1
    assert erased + refused == 120
    print(f"erased first {erased}, scheduled first {refused}")


def test_a_partner_feed_download_goes_with_the_story(ctx, tmp_path):
    inbox = ctx.workspace.media_dir / "inbox"
    pulled, nid = a_recording(inbox, "partner-episode.mp3", seed=77)
    register(ctx, pulled)
    outside, _ = a_recording(tmp_path, "same-elsewhere.mp3", seed=77)
    register(ctx, outside, by_reference=True)
    result = erase(ctx, nid, actor="kai")
    assert not pulled.exists() and outside.exists()
    assert result.counts["originals"] == 1 and result.originals_kept == [str(outside)]


def test_the_review_page_offers_erasure_after_a_withdrawal(ctx, tmp_path):
    from tests.web_client import client_for, post

    story = full_story_again(ctx, tmp_path)
    client = client_for(ctx, user="ed")
    r = post(
        client,
        f"/drafts/{story['drafts'][0]}/consent/withdraw",
        {"confirm": "yes", "reason": "asked"},
        page=f"/drafts/{story['drafts'][0]}",
    )
    assert r.status_code == 200 and "Consent withdrawn" in r.text
    assert f"narrative erase {story['id'][:12]}" in r.text


def test_an_interrupted_include_original_erasure_finishes_when_run_again(
    ctx, tmp_path, monkeypatch
):
    """The rows go, then the process dies before the files: the original's path is still
    remembered, so `erase --include-original` again removes it, then forgets the path."""
    from narratives.workflow import erasure

    story = full_story(ctx, tmp_path)
    nid = story["id"]
    removing = erasure._remove

    def killed(paths):
        raise KeyboardInterrupt  # as if the process were stopped between rows and files

    monkeypatch.setattr(erasure, "_remove", killed)
    with pytest.raises(KeyboardInterrupt):
        erase(ctx, nid, actor="kai", include_original=True)
    with ctx.db.connect() as conn:
        assert conn.execute(
            sa.select(narratives.c.erased_at).where(narratives.c.id == nid)
        ).scalar()
        kept = conn.execute(sa.select(narrative_paths.c.path)).scalars().all()
        tomb = conn.execute(
            sa.select(audit_log.c.after).where(audit_log.c.action == "narrative.erase")
        ).scalar_one()
    assert kept == [str(story["original"])] and story["original"].exists()
    assert tomb["erased"]["recording_paths"] == 1 and tomb["erased"]["originals"] == 1

    monkeypatch.setattr(erasure, "_remove", removing)
    r = run("erase", nid[:12], "--yes", "--include-original", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["already_erased"] and str(story["original"]) in report["removed"]
    assert not story["original"].exists()
    assert not ctx.workspace.narrative_dir(nid).exists()
    with ctx.db.connect() as conn:
        assert conn.execute(sa.select(narrative_paths)).all() == []


def test_kept_originals_are_forgotten_and_the_output_says_so(ctx, tmp_path):
    story = full_story(ctx, tmp_path)
    r = run("erase", story["id"][:12], "--yes")
    assert r.exit_code == 0, r.output
    assert "left in place" in r.output and "delete it yourself" in r.output
    assert story["original"].exists()
    with ctx.db.connect() as conn:
        assert conn.execute(sa.select(narrative_paths)).all() == []


def test_erase_removes_the_analysis_cache_of_the_story(ctx, tmp_path, monkeypatch):
    """The analyse stage embeds every tag-corrected story (as it reads at the time) into
    .narratives/cache/examples/; after erasure no entry made from this story's text, now or
    before a transcript correction, remains; other stories' and the examples' stay."""
    import hashlib

    import numpy as np

    from narratives.stages.analyse import stage as analyse_stage
    from narratives.stages.analyse import tagging

    class Stop(Exception):
        pass

    used: list = []

    def embedding_analysis(transcript, *, corrections, examples, cache_dir, **_kwargs):
        """The stage's own inputs, embedded as scoring.py does (sentences and story)."""
        used.append(cache_dir)
        texts = [e.text for e in examples]
        texts += [t for found in corrections.examples.values() for t, _ in found]
        for text in texts:
            for kind in ("sentences", "story"):
                tagging.cached_array(kind, text, lambda t: np.zeros(4), cache_dir)
        raise Stop

    monkeypatch.setattr(analyse_stage, "analyse_transcript", embedding_analysis)
    monkeypatch.setattr(tagging._CACHE, "arrays", {})  # no memory hit skips the file

    nid = full_story(ctx, tmp_path)["id"]
    oid, other_text = _a_corrected_other_story(ctx, tmp_path, nid)

    def analyse() -> None:
        with pytest.raises(Stop):
            analyse_stage.AnalyseStage().run(ctx, nid, force=True)

    texts = []
    analyse()  # the engine's transcript
    texts.append(f"I grew up in {SECRET} by the sea.")
    for i in (1, 2):  # two transcript corrections, analysed after each
        text = f"I grew up in {SECRET} by the sea, correction {i}."
        corrected = transcript_for(nid, [(0.0, text)])
        (ctx.workspace.narrative_dir(nid) / "transcript.corrected.json").write_text(
            json.dumps(corrected.to_dict())
        )
        tagging._CACHE.arrays.clear()
        analyse()
        texts.append(corrected.text)

    cache = used[0]
    assert all(c == cache for c in used) and cache.is_dir()

    def entries(text: str) -> set[str]:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return {f"{kind}-{digest}.npy" for kind in ("sentences", "story")}

    present = {p.name for p in cache.iterdir()}
    mine = set().union(*(entries(t) for t in texts))
    others = entries(transcript_for(oid, [(0.0, other_text)]).text)
    assert mine <= present and others <= present
    (cache / f".{sorted(mine)[0]}.123.tmp.npy").write_bytes(b"left by a kill")

    result = erase(ctx, nid, actor="kai")
    left = {p.name for p in cache.iterdir()}
    assert not any(digest in name for name in left for digest in _digests(texts)), left
    assert others <= left  # another corrected story's entries stay
    assert present - mine <= left  # and so do the examples'
    assert sum(str(cache) in p for p in result.removed) == len(mine) + 1


def _digests(texts: list[str]) -> list[str]:
    import hashlib

    return [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]


@pytest.mark.slow
def test_erase_removes_the_story_from_the_real_stages_per_model_cache(ctx, tmp_path, monkeypatch):
    """The real analyse stage (real embedder) keeps vectors in one folder per embedding model;
    erasing a story whose tag an editor corrected removes its vectors from that folder, as it
    read before and after a transcript correction, and keeps the others."""
    import hashlib
    import os

    from narratives.stages.analyse import stage as analyse_stage
    from narratives.stages.analyse import tagging

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    monkeypatch.setattr(tagging._CACHE, "arrays", {})  # no memory hit skips the file
    nid = full_story(ctx, tmp_path)["id"]
    oid, other_text = _a_corrected_other_story(ctx, tmp_path, nid)
    # Analysing the other story embeds every corrected story: this one as the engine heard
    # it, then (after a transcript correction) as corrected.
    analyse_stage.AnalyseStage().run(ctx, oid, force=True)
    corrected = transcript_for(nid, [(0.0, f"I grew up in {SECRET} by the sea, corrected.")])
    (ctx.workspace.narrative_dir(nid) / "transcript.corrected.json").write_text(
        json.dumps(corrected.to_dict())
    )
    tagging._CACHE.arrays.clear()
    analyse_stage.AnalyseStage().run(ctx, oid, force=True)
    digests = [digest(f"I grew up in {SECRET} by the sea."), digest(corrected.text)]

    cache = ctx.workspace.state_dir / "cache" / "examples"
    folders = [p for p in cache.iterdir()]
    assert len(folders) == 1 and folders[0].is_dir()  # one folder, the model's
    names = {p.name for p in folders[0].iterdir()}
    for d in digests:
        assert {f"sentences-{d}.npy", f"story-{d}.npy"} <= names
    (folders[0] / f".story-{digests[0]}.999-1.tmp.npy").write_bytes(b"left by a kill")

    erase(ctx, nid, actor="kai")
    left = [os.path.join(r, f) for r, _, files in os.walk(cache) for f in files]
    assert not [p for p in left if any(d in p for d in digests)]
    assert len(left) == len(names) - 4
    assert any(f"sentences-{digest(other_text)}.npy" in p for p in left)


def _a_corrected_other_story(ctx, tmp_path, nid: str) -> tuple[str, str]:
    """Another transcribed story with an editor's tag correction (so the analyse stage embeds
    every corrected story, this one included); `nid` is marked transcribed too."""
    from narratives.store.stage_runs import stage_run

    other, oid = a_recording(tmp_path / "o", "other.wav", seed=5)
    register(ctx, other)
    ctx.workspace.narrative_dir(oid).mkdir(parents=True, exist_ok=True)
    other_text = "A lighthouse keeper counted the ships."
    (ctx.workspace.narrative_dir(oid) / "transcript.json").write_text(
        json.dumps(transcript_for(oid, [(0.0, other_text)]).to_dict())
    )
    with ctx.db.begin() as conn:
        conn.execute(
            tag_corrections.insert().values(
                narrative_id=oid,
                campaign="emotional-equity",
                tag="equal-access",
                applies=False,
                actor="kai",
                at=datetime.now(UTC),
            )  # fmt: skip
        )
    for n in (nid, oid):
        with stage_run(ctx.db, n, "transcribe"):
            pass
    return oid, other_text
