"""The same database code on PostgreSQL (`[database] url`): migrations, the pipeline, review,
scheduling and publishing, against a real server on 127.0.0.1."""

from __future__ import annotations

import feedparser
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from narratives.channels.rss.render import item_guid
from narratives.core.campaigns import get_campaign
from narratives.stages.pipeline import process_paths
from narratives.store import users
from narratives.store.context import Context
from narratives.store.db import include_object
from narratives.store.schema import metadata
from narratives.workflow import review
from narratives.workflow.publishing import publish_draft_now
from narratives.workflow.takedown import set_consent
from tests.conftest import SAMPLES

pytestmark = pytest.mark.postgres


@pytest.mark.slow
def test_pipeline_review_and_publishing_on_postgres(postgres_url, workspace):
    workspace.settings_path.write_text(
        f'[database]\nurl = "{postgres_url}"\n\n[render]\nenabled = false\n'
    )
    ctx = Context(workspace)
    assert ctx.db.dialect.name == "postgresql"
    with ctx.db.connect() as conn:
        mc = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include_object}
        )
        assert compare_metadata(mc, metadata) == []

    [result] = list(process_paths(ctx, [SAMPLES / "lena-grandmother.m4a"]))
    assert result.status == "ok", result.error
    assert result.stages == {
        "transcribe": "done",
        "analyse": "done",
        "render": "skipped",
        "draft": "done",
    }  # rendering is switched off here
    again = list(process_paths(ctx, [SAMPLES / "lena-grandmother.m4a"]))
    assert again[0].status == "skipped"

    drafts = {d.channel: d for d in review.list_drafts(ctx, campaign="emotional-equity")}
    assert set(drafts) == {"bluesky", "rss"}
    assert drafts["rss"].created_at.utcoffset().total_seconds() == 0

    users.add_user(ctx, "kai", "a long enough passphrase", role="editor", actor="test")
    set_consent(
        ctx,
        result.id,
        given_by="Lena",
        method="form",
        channels=["rss"],
        anonymous=True,
        actor="kai",
    )
    review.approve(ctx, drafts["rss"].id, actor="kai")
    outcome = publish_draft_now(ctx, drafts["rss"].id, actor="kai")
    assert outcome.status == "published", outcome.error

    feed = feedparser.parse((workspace.feeds_dir / "emotional-equity.xml").read_bytes())
    assert not feed.bozo
    campaign = get_campaign(workspace, "emotional-equity")
    assert [e.id for e in feed.entries] == [item_guid(campaign, result.id)]
    assert "Rosa" not in feed.entries[0].summary  # anonymous: the name is hidden
