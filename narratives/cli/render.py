"""`narrative render`: make (or remake) the campaign videos of narratives."""

from __future__ import annotations

import click

from ..errors import NarrativesError
from ._common import echo_json, err_console, get_context, narrative_ids

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
    help="Render for this campaign (repeatable); default: the campaigns the analysis found.",
)
@click.option("--force", is_flag=True, help="Render again even if the video exists.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per video.")
def render(ids, all_, formats, campaigns, force, as_json):
    """Render captioned audiogram videos (MP4, WebVTT, PNG thumbnail) for narratives.

    Videos go to media/work/<id>/video-<campaign>-<format>.mp4. A narrative that fails is
    reported and the others go on; the exit status is then 1.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from .. import render as stage

    ctx = get_context()
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
    # Without --campaign the analysis says which campaigns a narrative is for.
    chosen = narrative_ids(ids, all_, done="transcribe" if campaigns else "analyse")
    with progress:
        tasks: dict[str, int] = {}
        overall = progress.add_task("narratives", total=len(chosen), unit="done")

        def report(nid: str, key: str, done: int, total: int) -> None:
            name = f"{nid[:12]} {key}"
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total, unit="frames")
            progress.update(tasks[name], completed=done, total=total)

        for i, nid in enumerate(chosen):
            progress.update(overall, completed=i)
            try:
                results = stage.run(
                    ctx,
                    nid,
                    force=force,
                    formats=list(formats) or None,
                    campaigns=list(campaigns) or None,
                    progress=lambda key, d, t, nid=nid: report(nid, key, d, t),
                )
            except NarrativesError as exc:
                failed += 1
                if as_json:
                    echo_json({"narrative_id": nid, "error": str(exc), "hint": exc.hint})
                else:
                    err_console.print(f"[red]{nid[:12]} failed:[/red] {exc}")
                continue
            for r in results:
                out = {
                    "narrative_id": nid,
                    "campaign": r.campaign,
                    "format": r.format,
                    "skipped": r.skipped,
                    **r.output(ctx.workspace),
                }
                if as_json:
                    echo_json(out)
                else:
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
        progress.update(overall, completed=len(chosen))
    if failed:
        raise click.exceptions.Exit(1)


def register(cli: click.Group) -> None:
    cli.add_command(render)
