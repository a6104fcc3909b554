"""The main job: `narrative process` takes a recording through every stage to drafts."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from narratives.cli import cli
from tests.conftest import SAMPLES


def _run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_process_runs_every_stage_once(tmp_path, workspace):
    # Small, quick videos: the full-size render has its own smoke test.
    workspace.settings_path.write_text("[render]\nscale = 0.2\nfps = 6\n")
    rec = tmp_path / "in"
    rec.mkdir()
    shutil.copy(SAMPLES / "lena-grandmother.m4a", rec)
    shutil.copy(SAMPLES / "dev-missed-bus.mp4", rec)

    first = _run("process", str(rec), "--json")
    assert first.exit_code == 0, first.output
    items = {
        json.loads(x)["path"].rsplit("/", 1)[-1]: json.loads(x)
        for x in first.output.splitlines()
        if x.startswith("{")
    }
    lena, bus = items["lena-grandmother.m4a"], items["dev-missed-bus.mp4"]
    assert lena["stages"] == {s: "done" for s in ("transcribe", "analyse", "render", "draft")}

    shown = json.loads(_run("show", lena["id"], "--json").output)
    analysis = shown["analysis"]
    assert analysis["campaigns"]["emotional-equity"]["on_topic"]
    assert not analysis["campaigns"]["neural-mandate"]["on_topic"]
    files = set(shown["files"])
    assert {"transcript.json", "transcript.vtt", "analysis.json"} <= files
    # The channels publish the vertical video; no square one unless the campaign asks.
    assert "video-emotional-equity-vertical.mp4" in files
    assert "video-emotional-equity-square.mp4" not in files
    assert not any(f.startswith("video-neural-mandate") for f in files)

    listed = _run("drafts", "list", "--json").output.splitlines()
    drafts = [json.loads(x) for x in listed if x.startswith("{")]
    lena_drafts = [d for d in drafts if d["narrative_id"] == lena["id"]]
    assert sorted((d["campaign"], d["channel"]) for d in lena_drafts) == [
        ("emotional-equity", "bluesky"),
        ("emotional-equity", "rss"),
    ]
    assert not [d for d in drafts if d["narrative_id"] == bus["id"]]  # off-topic everywhere
    # ...so it is unassigned, with the campaigns that fit best (never silently dropped).
    assert lena["status"] == "ok" and bus["status"] == "unassigned" and bus["campaigns"] == []
    assert {s["campaign"] for s in bus["suggestions"]} == {"emotional-equity", "neural-mandate"}
    assert [c["campaign"] for c in lena["campaigns"]] == ["emotional-equity"]
    status = {
        row["id"]: row["stages"]
        for row in (json.loads(x) for x in _run("status", "--json").output.splitlines())
    }
    assert status[bus["id"]] == {
        "transcribe": "done",
        "analyse": "done",
        "render": "none",
        "draft": "done",
    }
    # No consent recorded yet: everything public is anonymised.
    for d in lena_drafts:
        full = json.loads(_run("drafts", "show", str(d["id"]), "--json").output)
        assert "Rosa" not in json.dumps(full["content"])
        assert full["state"] == "pending_review"

    again = _run("process", str(rec), "--json")
    assert again.exit_code == 0
    statuses = {
        json.loads(x)["path"].rsplit("/", 1)[-1]: json.loads(x)["status"]
        for x in again.output.splitlines()
        if x.startswith("{")
    }
    assert statuses == {"lena-grandmother.m4a": "skipped", "dev-missed-bus.mp4": "unassigned"}
