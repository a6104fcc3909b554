"""The analysis stage: summary, pull-quote, title, campaign tags and content notes of a narrative.

`run` analyses a transcribed narrative (`analyser.analyse_transcript`, the pure core), writes
analysis.json (`narratives.records.analysis.Analysis`) and records the stage run; `correct_tag`
records an editor's tag correction and analyses the narrative again, so that the correction,
and every other story corrected for that tag, take part in the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from narratives import __version__
from narratives.core.campaigns import get_campaign, load_campaigns
from narratives.core.clock import utcnow
from narratives.core.errors import InvalidState, NotFound, UnreadableFile
from narratives.core.workspace import Workspace
from narratives.records.analysis import Analysis
from narratives.records.stage import StageResult
from narratives.records.transcript import Transcript
from narratives.stages.analyse.analyser import analyse_transcript
from narratives.stages.analyse.scoring import Corrections
from narratives.stages.analyse.tagging import load_examples
from narratives.store.audit import record as audit_record
from narratives.store.context import Context
from narratives.store.narrative_files import (
    analysis_path,
    read_analysis,
    read_transcript,
    write_analysis,
)
from narratives.store.schema import tag_corrections
from narratives.store.stage_runs import get_run, stage_run

__all__ = ["STAGE", "AnalyseStage", "run", "load_analysis", "load_corrections", "correct_tag"]

STAGE = "analyse"


def load_analysis(workspace: Workspace, narrative_id: str) -> Analysis:
    """The stored Analysis of a narrative; `NotFound` if it has not been analysed."""
    analysis = read_analysis(workspace, narrative_id)
    if analysis is None:
        raise NotFound(
            f"narrative {narrative_id[:12]} has not been analysed",
            hint=f"run `narrative analyse {narrative_id[:12]}`",
        )
    return analysis


def _load_transcript(ctx: Context, narrative_id: str) -> Transcript:
    run_ = get_run(ctx.db, narrative_id, "transcribe")
    if run_ is None or run_.status != "done":
        state = run_.status if run_ else "not run"
        raise InvalidState(
            f"narrative {narrative_id[:12]} is not transcribed (transcribe: {state})",
            hint="run `narrative process` first",
        )
    transcript = read_transcript(ctx.workspace, narrative_id)
    if transcript is None:
        raise InvalidState(
            f"narrative {narrative_id[:12]}: transcript.json is missing",
            hint="re-run the transcription with `narrative process --force`",
        )
    return transcript


def load_corrections(ctx: Context, narrative_id: str) -> Corrections:
    """Corrections for analysing `narrative_id`: the latest correction per narrative and tag
    wins; every corrected story becomes an example for (or against) its tag."""
    with ctx.db.connect() as conn:
        rows = conn.execute(sa.select(tag_corrections).order_by(tag_corrections.c.id)).all()
    latest: dict[tuple[str, str, str], bool] = {}
    for r in rows:
        latest.pop((r.narrative_id, r.campaign, r.tag), None)
        latest[(r.narrative_id, r.campaign, r.tag)] = bool(r.applies)
    out = Corrections()
    texts: dict[str, str | None] = {}
    for (nid, campaign, tag), applies in latest.items():
        if nid == narrative_id:
            out.forced[(campaign, tag)] = applies
        if nid not in texts:
            texts[nid] = _transcript_text(ctx.workspace, nid)
        if texts[nid]:
            out.examples.setdefault((campaign, tag), []).append((texts[nid], applies))
    return out


def _transcript_text(workspace: Workspace, narrative_id: str) -> str | None:
    """A narrative's transcript text (None if it has no readable transcript)."""
    try:
        transcript = read_transcript(workspace, narrative_id)
    except UnreadableFile:
        # Here the story is only an example for another one's tags: one fewer example is no
        # reason to fail that analysis (the damaged file fails where it is read for itself).
        return None
    return transcript.text if transcript else None


@dataclass(frozen=True)
class AnalyseStage:
    """The analyse stage as the pipeline runs it: its result says whether it reused the
    stored Analysis (skipped) or analysed (done)."""

    name: str = STAGE

    def run(self, ctx: Context, narrative_id: str, *, force: bool = False) -> StageResult:
        path = analysis_path(ctx.workspace, narrative_id)
        previous = get_run(ctx.db, narrative_id, STAGE)
        if not force and previous is not None and previous.status == "done" and path.is_file():
            return StageResult(STAGE, "skipped", load_analysis(ctx.workspace, narrative_id))
        transcript = _load_transcript(ctx, narrative_id)
        campaigns = load_campaigns(ctx.workspace)
        settings = ctx.settings.analyse
        with stage_run(ctx.db, narrative_id, STAGE) as handle:
            corrections = load_corrections(ctx, narrative_id)
            analysis = analyse_transcript(
                transcript,
                campaigns=campaigns,
                settings=settings,
                corrections=corrections,
                examples=load_examples(ctx.workspace.campaigns_dir),
                cache_dir=ctx.workspace.state_dir / "cache" / "examples",
            )
            handle.engine = analysis.engine
            handle.model = analysis.model
            handle.version = analysis.version[:64] or f"narratives {__version__}"
            write_analysis(ctx.workspace, narrative_id, analysis)
            handle.output = {
                "empty": analysis.empty,
                "title": analysis.title,
                "top": {slug: c.top for slug, c in analysis.campaigns.items() if c.on_topic},
                "notes": analysis.flagged_notes,
            }
        return StageResult(STAGE, "done", analysis)


def run(ctx: Context, narrative_id: str, *, force: bool = False) -> Analysis:
    """Analyse a transcribed narrative; skipped (the stored Analysis returned) when done."""
    return AnalyseStage().run(ctx, narrative_id, force=force).record


def correct_tag(
    ctx: Context,
    narrative_id: str,
    campaign: str,
    tag: str,
    applies: bool,
    actor: str,
) -> Analysis:
    """Record an editor's tag correction (with an audit row) and re-score the narrative."""
    get_campaign(ctx.workspace, campaign).tag(tag)  # NotFound for an unknown campaign or tag
    # The audit's "before" is what the editor saw: the stored analysis as it is.
    stored = read_analysis(ctx.workspace, narrative_id)
    if stored is None:
        raise NotFound(f"narrative {narrative_id[:12]} has not been analysed yet")
    fit = stored.fit(campaign)
    before = None
    for t in fit.tags if fit else []:
        if t.name == tag:
            before = {"score": t.score, "applies": t.applies, "corrected": t.corrected}
    with ctx.db.begin() as conn:
        conn.execute(
            tag_corrections.insert().values(
                narrative_id=narrative_id,
                campaign=campaign,
                tag=tag,
                applies=bool(applies),
                actor=actor,
                at=utcnow(),
            )
        )
        audit_record(
            conn,
            actor=actor,
            action="tag.correct",
            object_type="narrative",
            object_id=narrative_id,
            before=before,
            after={"campaign": campaign, "tag": tag, "applies": bool(applies)},
            detail=f"{campaign}/{tag}: {'applies' if applies else 'does not apply'}",
        )
    return run(ctx, narrative_id, force=True)
