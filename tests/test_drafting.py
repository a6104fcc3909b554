"""The draft stage: templates → drafts per campaign and channel, in the documented JSON shapes."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from narratives.channels.bluesky.text import MAX_GRAPHEMES, count_graphemes
from narratives.core.errors import ConfigError, StageFailed
from narratives.stages.draft import stage as drafting
from narratives.stages.draft.templates import join_posts, split_posts
from narratives.store.schema import audit_log, drafts
from narratives.store.stage_runs import get_run
from narratives.workflow import review
from tests.review_fixtures import add_narrative, add_render, add_user, analysis_for

BLUESKY_KEYS = {
    "posts",
    "langs",
    "labels",
    "video",
    "captions",
    "alt",
    "aspect_ratio",
    "content_warning",
}
RSS_KEYS = {"title", "summary", "content", "link", "enclosure", "captions"}


def _drafts(ctx, ids):
    return {(d.campaign, d.channel): d for d in (review.get_draft(ctx, i) for i in ids)}


def test_drafts_for_each_channel_of_each_on_topic_campaign(ctx):
    nid = add_narrative(ctx)
    ids = drafting.run(ctx, nid)
    found = _drafts(ctx, ids)
    # neural-mandate is off-topic in the fixture analysis: no drafts for it.
    assert set(found) == {("emotional-equity", "bluesky"), ("emotional-equity", "rss")}
    bsky, rss = found["emotional-equity", "bluesky"], found["emotional-equity", "rss"]
    assert set(bsky.content) == BLUESKY_KEYS
    assert set(rss.content) == RSS_KEYS
    for d in (bsky, rss):
        assert d.state == "pending_review"
        assert d.edited is False
        assert d.content == d.generated
        assert len(d.template_hash) == 64
    assert bsky.template == "posts/bluesky.j2" and rss.template == "posts/rss.j2"

    run = get_run(ctx.db, nid, "draft")
    assert run.status == "done" and run.engine == "jinja2"
    assert run.output["drafts"] == ids and run.output["created"] == 2


def test_bluesky_post_copy(ctx):
    nid = add_narrative(ctx)
    d = _drafts(ctx, drafting.run(ctx, nid))["emotional-equity", "bluesky"]
    text = "\n".join(d.posts)
    assert "Two lines at the dream clinic" in text
    assert "“My grandmother said rest should not be something you buy.”" in text
    assert "#EmotionalEquity #SleepInequality" in text
    assert f"https://emotional-equity.example/stories/{nid[:16]}" in text
    assert "every word is the narrator's own" in text  # the campaign's ai_disclosure
    # grief scores above the policy threshold and is in `warn`: a content warning up front.
    assert d.content["content_warning"] == "grief"
    assert d.posts[0].startswith("Content note: grief.")
    assert d.content["langs"] == ["en"]
    assert all(count_graphemes(p) <= MAX_GRAPHEMES for p in d.posts)
    assert d.content["video"] is None and d.content["aspect_ratio"] is None
    assert "Two lines at the dream clinic" in d.content["alt"]


def test_labels_follow_the_content_note_policy(ctx):
    notes = [{"name": "violence", "score": 0.95}, {"name": "grief", "score": 0.01}]
    nid = add_narrative(ctx, analysis=analysis_for(content_notes=notes))
    d = _drafts(ctx, drafting.run(ctx, nid))["emotional-equity", "bluesky"]
    assert d.content["labels"] == ["graphic-media"]
    assert d.content["content_warning"] == "violence"


def test_long_text_becomes_a_thread_of_posts_within_the_limit(ctx):
    long_quote = " ".join(["Every night I counted the hours I would not sleep."] * 12)
    nid = add_narrative(
        ctx, analysis=analysis_for(quote={"text": long_quote, "start": 0.0, "end": 10.0})
    )
    d = _drafts(ctx, drafting.run(ctx, nid))["emotional-equity", "bluesky"]
    assert len(d.posts) >= 3
    for post in d.posts:
        assert 0 < count_graphemes(post) <= 300
    # Nothing is lost in the split.
    joined = " ".join(d.posts)
    assert joined.count("Every night I counted the hours") == 12


def test_graphemes_are_counted_as_bluesky_counts_them():
    family = "👨\u200d👩\u200d👧\u200d👦"
    assert count_graphemes(family) == 1
    assert count_graphemes("e\u0301") == 1
    assert len(family) == 7


def test_plain_text_templates_are_not_html_escaped(ctx):
    nid = add_narrative(ctx, analysis=analysis_for(title="Rest & <dreams>"))
    found = _drafts(ctx, drafting.run(ctx, nid))
    assert "Rest & <dreams>" in found["emotional-equity", "bluesky"].posts[0]
    assert found["emotional-equity", "rss"].content["title"] == "Rest & <dreams>"


def test_rss_item_has_summary_full_transcript_link_and_disclosure(ctx):
    nid = add_narrative(ctx)
    rss = _drafts(ctx, drafting.run(ctx, nid))["emotional-equity", "rss"]
    assert rss.content["title"] == "Two lines at the dream clinic"
    assert "A narrator remembers a clinic with two lines." in rss.content["summary"]
    assert "The rest of us waited all night on plastic chairs." in rss.content["content"]
    assert "every word is the narrator's own" in rss.content["content"]
    assert rss.content["link"] == f"https://emotional-equity.example/stories/{nid[:16]}"
    assert rss.content["enclosure"] is None


def test_video_and_captions_come_from_the_render_stage(ctx, workspace):
    nid = add_narrative(ctx)
    folder = workspace.narrative_dir(nid)
    # A file without a `done` render row is not trusted (it may be half written).
    (folder / "video-emotional-equity-square.mp4").write_bytes(b"partial")
    rel = add_render(ctx, nid, "emotional-equity", "vertical")
    found = _drafts(ctx, drafting.run(ctx, nid))
    bsky, rss = found["emotional-equity", "bluesky"], found["emotional-equity", "rss"]
    assert bsky.content["video"] == rel
    assert bsky.content["captions"] == rel.replace(".mp4", ".vtt")
    assert bsky.content["aspect_ratio"] == [9, 16]
    assert rss.content["enclosure"] == rel
    assert (workspace.root / rel).is_file()


def test_off_topic_or_empty_narratives_get_no_drafts(ctx):
    analysis = analysis_for()
    analysis["campaigns"]["emotional-equity"]["on_topic"] = False
    nid = add_narrative(ctx, "off", analysis=analysis)
    assert drafting.run(ctx, nid) == []
    nid2 = add_narrative(ctx, "empty", analysis=analysis_for(empty=True))
    assert drafting.run(ctx, nid2) == []


def test_missing_analysis_is_a_stage_failure(ctx, workspace):
    nid = add_narrative(ctx)
    (workspace.narrative_dir(nid) / "analysis.json").unlink()
    with pytest.raises(StageFailed, match="no analysis"):
        drafting.run(ctx, nid)
    assert get_run(ctx.db, nid, "draft").status == "failed"


def test_a_misspelt_template_variable_is_an_error_not_an_empty_post(ctx, workspace):
    nid = add_narrative(ctx)
    (workspace.templates_dir / "posts" / "bluesky.j2").write_text("{{ titel }}\n")
    with pytest.raises(ConfigError, match="titel"):
        drafting.run(ctx, nid)


def _audit_count(ctx) -> int:
    with ctx.db.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar()


def test_rerun_without_changes_does_nothing(ctx):
    nid = add_narrative(ctx)
    ids = drafting.run(ctx, nid)
    before = _audit_count(ctx)
    assert drafting.run(ctx, nid) == ids
    assert drafting.run(ctx, nid, force=True) == ids
    assert _audit_count(ctx) == before  # forced, but nothing changed: no regenerate rows
    with ctx.db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(drafts)).scalar() == 2


def test_template_change_updates_unedited_drafts_and_keeps_edits(ctx, workspace):
    add_user(ctx, "kai")
    nid = add_narrative(ctx)
    found = _drafts(ctx, drafting.run(ctx, nid))
    bsky, rss = found["emotional-equity", "bluesky"], found["emotional-equity", "rss"]
    review.edit(ctx, rss.id, {"title": "The editor's own title"}, actor="kai")
    review.approve(ctx, bsky.id, actor="kai")
    old_hash = bsky.template_hash

    path = workspace.templates_dir / "posts" / "bluesky.j2"
    path.write_text("New copy: {{ title }}\n---\n{{ link }}\n")
    rss_path = workspace.templates_dir / "posts" / "rss.j2"
    rss_path.write_text(
        rss_path.read_text().replace(
            "{% block title %}{{ title }}", "{% block title %}T: {{ title }}"
        )
    )
    drafting.run(ctx, nid)

    bsky2 = review.get_draft(ctx, bsky.id)
    assert bsky2.template_hash != old_hash
    assert bsky2.posts[0] == "New copy: Two lines at the dream clinic"
    assert bsky2.content == bsky2.generated
    # It was approved, but what would go out changed: back to review.
    assert bsky2.state == "pending_review"

    rss2 = review.get_draft(ctx, rss.id)
    assert rss2.generated["title"] == "T: Two lines at the dream clinic"
    assert rss2.content["title"] == "The editor's own title"  # never overwritten
    assert rss2.edited is True

    history = review.history(ctx, bsky.id)
    regen = [h for h in history if h["action"] == "draft.regenerate"]
    assert regen and regen[-1]["before"]["state"] == "approved"
    assert regen[-1]["after"]["state"] == "pending_review"


def test_an_edited_draft_still_follows_labels_and_hidden_names(ctx, workspace):
    """The editor's words stay; what the pipeline owns (a content label) follows the campaign,
    and a name hidden after the edit is hidden in the editor's words too."""
    from narratives.store import redactions

    add_user(ctx, "kai")
    nid = add_narrative(ctx, consent=False)  # no consent: the narrator stays anonymous
    bsky = _drafts(ctx, drafting.run(ctx, nid))["emotional-equity", "bluesky"]
    assert bsky.content["labels"] == []
    review.edit(ctx, bsky.id, {"posts": ["Rosalind told me this.", "Second."]}, actor="kai")
    # The campaign now labels grief (which this story scores high on) as graphic media.
    path = workspace.campaigns_dir / "emotional-equity.toml"
    text = path.read_text(encoding="utf-8")
    assert 'labels = { self-harm = "graphic-media"' in text
    path.write_text(
        text.replace('labels = { self-harm = "graphic-media"',
                     'labels = { grief = "graphic-media", self-harm = "graphic-media"'),
        encoding="utf-8",
    )  # fmt: skip
    redactions.mark_term(ctx, nid, "Rosalind", kind="name", actor="kai")
    drafting.run(ctx, nid)
    d = review.get_draft(ctx, bsky.id)
    assert d.content["labels"] == ["graphic-media"]
    assert d.posts == ["[name] told me this.", "Second."]
    assert d.edited and d.state == "pending_review"


def test_analysis_change_is_picked_up_without_force(ctx, workspace):
    nid = add_narrative(ctx)
    ids = drafting.run(ctx, nid)
    path = workspace.narrative_dir(nid) / "analysis.json"
    data = json.loads(path.read_text())
    data["title"] = "A better title"
    path.write_text(json.dumps(data))
    assert drafting.run(ctx, nid) == ids
    assert review.get_draft(ctx, ids[0]).title == "A better title"


def test_split_and_join_posts_round_trip():
    posts = ["First post.\n\nWith a paragraph.", "Second — with “quotes”."]
    text = join_posts(posts)
    assert split_posts(text) == posts
    assert split_posts("one\n  ---  \ntwo\n---\n\n") == ["one", "two"]


def test_without_consent_drafts_are_anonymised_and_cannot_be_approved(ctx):
    from narratives.core.errors import ConsentError
    from narratives.workflow.takedown import set_consent

    analysis = analysis_for(
        title="Rosa and the clinic",
        quote={
            "text": "Rosa said rest should not be something you buy.",
            "start": 8.0,
            "end": 11.2,
        },
        entities=[{"text": "Rosa", "kind": "person", "start": 8.0, "end": 8.4}],
    )
    nid = add_narrative(ctx, analysis=analysis, consent=False)
    user = add_user(ctx)
    found = _drafts(ctx, drafting.run(ctx, nid))
    for d in found.values():
        assert "Rosa" not in json.dumps(d.content), d.content
    assert "[name] said rest" in "\n".join(found["emotional-equity", "bluesky"].posts)

    bsky = found["emotional-equity", "bluesky"]
    with pytest.raises(ConsentError, match="no consent"):
        review.approve(ctx, bsky.id, actor=user)
    assert review.get_draft(ctx, bsky.id).state == "pending_review"

    # Consent for RSS only: Bluesky still refused, and naming the narrator redoes the drafts.
    set_consent(
        ctx,
        nid,
        given_by="Rosa's grandchild",
        method="form",
        channels=["rss"],
        anonymous=False,
        actor="kai",
    )
    with pytest.raises(ConsentError, match="bluesky"):
        review.approve(ctx, bsky.id, actor=user)
    named = _drafts(ctx, drafting.run(ctx, nid))
    assert "Rosa said rest" in "\n".join(named["emotional-equity", "bluesky"].posts)
    review.approve(ctx, named["emotional-equity", "rss"].id, actor=user)
    assert review.get_draft(ctx, named["emotional-equity", "rss"].id).state == "approved"


def test_drafting_and_the_cli_do_not_load_the_bluesky_sdk():
    """Counting graphemes needs no atproto: `narrative --help` and the draft stage stay quick."""
    import subprocess
    import sys

    code = (
        "import sys, narratives.cli, narratives.stages.draft.stage, narratives.workflow.review;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('atproto', 'atproto_client')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
