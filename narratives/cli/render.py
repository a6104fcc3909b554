"""`narrative render`: make (or remake) the campaign videos of narratives."""

from __future__ import annotations

import click
from rich.markup import escape

from narratives.cli._common import echo_json, err_console, get_context, narrative_ids
from narratives.core.errors import NarrativesError

__all__ = ["register", "render"]


@click.command("render")
@click.argument("ids", nargs=-1)
@click.option(
    "--all",
    "all_",
    is_flag=True,
    help="Every analysed narrative (every transcribed one with --campaign).",
)
@click.option(
    "--format",
    "formats",
    multiple=True,
    type=click.Choice(["vertical", "square"]),
    help="Only this format (repeatable); default: each campaign's formats.",
)
@click.option(
    "--campaign",
    "campaigns",
    multiple=True,
    metavar="SLUG",
    help="Render for this campaign (repeatable); default: the campaigns the story is "
    "assigned to, or else those its tags fit.",
)
@click.option("--force", is_flag=True, help="Render again even if the video exists.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Render this many narratives at once, in separate processes (the cores are shared "
    "out among their encoders).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per video.")
def render(ids, all_, formats, campaigns, force, workers, as_json):
    """Render captioned audiogram videos (MP4, WebVTT, PNG thumbnail) for narratives.

    Videos go to media/work/<id>/video-<campaign>-<format>.mp4. A narrative that fails is
    reported and the others go on; the exit status is then 1.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from narratives.stages.pipeline import render_many
    from narratives.stages.render import stage
    from narratives.workflow.assignments import check_slugs

    ctx = get_context()
    # An unknown campaign is a usage error naming the known ones, before any work.
    campaigns = tuple(check_slugs(ctx, campaigns))
    failed = 0
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    )
    options = {
        "force": force,
        "formats": list(formats) or None,
        "campaigns": list(campaigns) or None,
    }
    # Without --campaign the analysis says which campaigns a narrative is for.
    chosen = narrative_ids(ids, all_, done="transcribe" if campaigns else "analyse")

    def show(nid: str, results: list[stage.VideoResult]) -> None:
        unused = _unrouted(ctx, nid, campaigns)
        for r in results:
            out = {
                "narrative_id": nid,
                "campaign": r.campaign,
                "format": r.format,
                "skipped": r.skipped,
                # False: the story is not routed to this campaign, so no draft uses the video.
                "routed": r.campaign not in unused,
                **r.output(ctx.workspace),
            }
            if r.campaign in unused:
                out["note"] = _note(ctx, nid, r.campaign)
            if as_json:
                echo_json(out)
                continue
            note = " (already rendered)" if r.skipped else ""
            cut = " cut to fit" if r.cut else ""
            progress.console.print(
                f"{nid[:12]} {r.campaign}/{r.format}: {out['video']} "
                f"{r.width}x{r.height} {r.duration:.1f} s{cut}{note}"
            )
            if r.missing_glyphs:
                progress.console.print(
                    f"  [yellow]warning:[/yellow] no font draws {r.missing_glyphs!r}: "
                    "left out of the burned-in captions (the .vtt keeps them)"
                )
        if not results and not as_json:
            progress.console.print(f"{nid[:12]}: nothing to render")
        if as_json:
            return  # the JSON lines carry the note
        for slug in sorted(unused & {r.campaign for r in results}):
            err_console.print(
                f"[yellow]note:[/yellow] {escape(_note(ctx, nid, slug))}", highlight=False
            )

    def fail(nid: str, error: str, hint: str | None) -> None:
        nonlocal failed
        failed += 1
        if as_json:
            echo_json({"narrative_id": nid, "error": error, "hint": hint})
        else:
            err_console.print(f"[red]{nid[:12]} failed:[/red] {error}")

    with progress:
        tasks: dict[str, int] = {}
        overall = progress.add_task("narratives", total=len(chosen), unit="done")

        def report(nid: str, key: str, done: int, total: int) -> None:
            name = f"{nid[:12]} {key}"
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total, unit="frames")
            progress.update(tasks[name], completed=done, total=total)

        if workers > 1 and len(chosen) > 1:
            for outcome in render_many(ctx, chosen, workers=workers, **options):
                if outcome.error is not None:
                    fail(outcome.narrative_id, outcome.error, outcome.hint)
                else:
                    show(outcome.narrative_id, outcome.videos)
                progress.advance(overall)
        else:
            for i, nid in enumerate(chosen):
                progress.update(overall, completed=i)
                try:
                    results = stage.run(
                        ctx,
                        nid,
                        progress=lambda key, d, t, nid=nid: report(nid, key, d, t),
                        **options,
                    )
                except NarrativesError as exc:
                    fail(nid, str(exc), exc.hint)
                    continue
                show(nid, results)
            progress.update(overall, completed=len(chosen))
    if failed:
        raise click.exceptions.Exit(1)


def _unrouted(ctx, nid: str, campaigns: tuple[str, ...]) -> set[str]:
    """The named campaigns the narrative does not go to (no draft will use their videos)."""
    if not campaigns:
        return set()
    from narratives.workflow.assignments import routes

    return set(campaigns) - {r.campaign for r in routes(ctx, nid)}


def _note(ctx, nid: str, slug: str) -> str:
    """What a user should know about a video for a campaign the story does not go to."""
    return (
        f"{nid[:12]} {_why_not(ctx, nid, slug)}, so no draft will use this video. To make "
        f"{slug}'s drafts: `narrative assign {nid[:12]} --campaign {slug}`"
    )


def _why_not(ctx, nid: str, slug: str) -> str:
    """Why the narrative does not go to `slug`, in words."""
    from narratives.workflow.assignments import explicit

    chosen = explicit(ctx, nid)
    if chosen.get(slug) is False:
        return f"was unassigned from {slug}"
    assigned = sorted(s for s, yes in chosen.items() if yes)
    if assigned:
        return f"is assigned to {', '.join(assigned)} only"
    return f"is not assigned to {slug} and its tags do not fit it"


def register(cli: click.Group) -> None:
    cli.add_command(render)
