"""`narrative analyse`: summaries, titles, campaign tags and content notes of narratives."""

from __future__ import annotations

import click

from narratives.cli._common import (
    actor_option,
    console,
    echo_json,
    err_console,
    get_context,
    narrative_ids,
    note_stale_defaults,
    require_actor,
    resolve_narrative_id,
)
from narratives.core.errors import NarrativesError
from narratives.policy.campaign_assignments import check_slugs
from narratives.policy.routing import routes
from narratives.store.narrative_files import read_analysis
from narratives.workflow import assignments
from narratives.workflow.review import correct_tag

__all__ = ["register", "analyse", "tag"]


@click.command("analyse")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every transcribed narrative.")
@click.option("--force", is_flag=True, help="Analyse again even if done.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per narrative (the Analysis).")
def analyse(ids, all_, force, as_json):
    """Summarise, title, tag and flag transcribed narratives (writes analysis.json).

    A narrative that fails is reported and the others go on; the exit status is then 1.
    """
    # The analyse stage loads NumPy, scikit-learn and the models' code: not for `--help`.
    from narratives.stages.analyse import stage

    ctx = get_context()
    note_stale_defaults(ctx)
    failed = 0
    for nid in narrative_ids(ids, all_, done="transcribe"):
        try:
            result = stage.run(ctx, nid, force=force)
        except NarrativesError as exc:
            failed += 1
            if as_json:
                echo_json({"narrative_id": nid, "error": str(exc), "hint": exc.hint})
            else:
                err_console.print(f"[red]{nid[:12]} failed:[/red] {exc}", highlight=False)
            continue
        if as_json:
            echo_json(result.to_dict())
        elif result.empty:
            console.print(f"{nid[:12]}  [dim]{result.reason}[/dim]", highlight=False)
        else:
            tags = ", ".join(
                f"{slug}: {c.top} ({_score(c):.2f})" if c.on_topic else f"{slug}: off-topic"
                for slug, c in result.campaigns.items()
            )
            notes = ", ".join(result.flagged_notes) or "none"
            console.print(f"{nid[:12]}  [bold]{result.title}[/bold]", highlight=False)
            console.print(f"    {result.summary_text}", highlight=False)
            console.print(f"    tags: {tags}; notes: {notes}", highlight=False)
    if failed:
        raise click.exceptions.Exit(1)


def _score(campaign_tags) -> float:
    return next(t.score for t in campaign_tags.tags if t.name == campaign_tags.top)


def register(cli: click.Group) -> None:
    cli.add_command(analyse)
    cli.add_command(tag)


@click.command("tag")
@click.argument("narrative_id", metavar="ID")
@click.argument("campaign")
@click.argument("tag")
@click.option(
    "--applies/--does-not-apply",
    default=True,
    help="Whether the tag applies to the story (default: it applies).",
)
@actor_option
@click.option("--json", "as_json", is_flag=True, help="The campaign's re-scored tags as JSON.")
def tag(narrative_id, campaign, tag, applies, actor, as_json):
    """Correct a campaign tag of story ID: the story becomes an example for (or against) the
    tag, so later analyses learn from it, and the story is re-scored now (audited).

    Tags only suggest campaigns: `narrative assign` says which campaign a story is for. When
    the correction changes where the story goes, the drafts of a campaign it leaves that
    await review are rejected, and a campaign it joins gets its video and drafts now.
    Exit codes: 0 done, 1 a video or draft failed, 2 unknown campaign, 5 no such story or
    tag, 7 not an active user.
    """
    ctx = get_context()
    actor = require_actor(actor)
    (campaign,) = check_slugs(ctx, [campaign])  # exit 2, naming the known ones
    nid = resolve_narrative_id(narrative_id)
    before = [r.campaign for r in routes(ctx, nid)]
    correct_tag(ctx, nid, campaign, tag, applies, actor=actor)
    change = assignments.route_change(ctx, nid, before, actor=actor)
    made = None
    if change.gained:
        made = assignments.make_outputs(
            ctx, nid, campaigns=change.gained, progress=lambda m: err_console.print(m), actor=actor
        )
    fit = read_analysis(ctx.workspace, nid).campaigns[campaign]
    if as_json:
        echo_json(
            {
                "narrative_id": nid,
                "campaign": campaign,
                **_fit_json(fit),
                "gained": change.gained,
                "lost": change.lost,
                "drafts": [n.to_json() for n in change.notes],
                "outputs": None if made is None else _made_json(made),
            }
        )
    else:
        _say_change(nid, change, made)
    if made is not None and made.errors:
        raise click.exceptions.Exit(1)
    if as_json:
        return
    scores = ", ".join(
        f"{t.name} {t.score:.2f}{' (corrected)' if t.corrected is not None else ''}"
        for t in fit.tags
    )
    verdict = "fits" if fit.on_topic else "does not fit"
    console.print(f"{nid[:12]} {verdict} {campaign} by its tags: {scores}", highlight=False)


def _say_change(nid: str, change, made) -> None:
    for slug in change.lost:
        err_console.print(f"{nid[:12]}: its tags no longer send it to {slug}", highlight=False)
    for note in change.notes:
        err_console.print(f"  draft {note.draft_id}: {note.message}", highlight=False)
    for slug in change.gained:
        err_console.print(f"{nid[:12]}: its tags now send it to {slug}", highlight=False)
    if made is not None:
        err_console.print(
            f"  made {made.videos} video(s) and {made.drafts} draft(s)", highlight=False
        )
        for e in made.errors:
            err_console.print(f"  [red]failed:[/red] {e}", highlight=False)


def _made_json(made) -> dict:
    return {"videos": made.videos, "drafts": made.drafts, "errors": made.errors}


def _fit_json(fit) -> dict:
    return {
        "on_topic": fit.on_topic,
        "top": fit.top,
        "threshold": fit.threshold,
        "tags": [
            {"name": t.name, "score": t.score, "applies": t.applies, "corrected": t.corrected}
            for t in fit.tags
        ],
    }
