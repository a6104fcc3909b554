"""`narrative render`: make (or remake) the campaign videos of narratives."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from narratives.cli._common import echo_json, err_console, get_context, narrative_ids
from narratives.core.errors import NarrativesError
from narratives.policy.campaign_assignments import check_slugs, explicit
from narratives.policy.routing import routes
from narratives.records.video import FORMATS, Video
from narratives.stages.pool import render_many

if TYPE_CHECKING:
    from rich.progress import TaskID

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
    type=click.Choice(FORMATS),
    help="Only this format (repeatable); default: the format each campaign's channels "
    "publish (vertical) plus its [look] formats.",
)
@click.option(
    "--campaign",
    "campaigns",
    multiple=True,
    metavar="SLUG",
    help="Render for this campaign (repeatable); default: the campaigns the story is "
    "assigned to, or else those its tags fit.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Encode again even if a finished video has the same inputs (without it, only "
    "videos whose inputs changed are made again).",
)
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
    ctx = get_context()
    # An unknown campaign is a usage error naming the known ones, before any work.
    campaigns = tuple(check_slugs(ctx, campaigns))
    options = {
        "reencode": force,
        "formats": list(formats) or None,
        "campaigns": list(campaigns) or None,
    }
    # Without --campaign the analysis says which campaigns a narrative is for.
    chosen = narrative_ids(ids, all_, done="transcribe" if campaigns else "analyse")
    report = _Report(ctx, campaigns, as_json)
    with report.progress:
        overall = report.progress.add_task("narratives", total=len(chosen), unit="done")
        if workers > 1 and len(chosen) > 1:
            for outcome in render_many(ctx, chosen, workers=workers, **options):
                if outcome.error is not None:
                    report.fail(outcome.narrative_id, outcome.error, outcome.hint)
                else:
                    report.show(outcome.narrative_id, outcome.videos)
                report.progress.advance(overall)
        else:
            _render_each(ctx, chosen, options, report, overall)
    if report.failed:
        raise click.exceptions.Exit(1)


def _render_each(
    ctx, chosen: list[str], options: dict[str, Any], report: _Report, overall: TaskID
) -> None:
    """Render the narratives one after another in this process, with a bar per video."""
    # The render stage loads NumPy, Pillow and the video writer: imported when rendering,
    # not for `--help`.
    from narratives.stages.render import stage

    for i, nid in enumerate(chosen):
        report.progress.update(overall, completed=i)
        try:
            results = stage.run(
                ctx,
                nid,
                progress=lambda key, d, t, nid=nid: report.frames(nid, key, d, t),
                **options,
            )
        except NarrativesError as exc:
            report.fail(nid, str(exc), exc.hint)
            continue
        report.show(nid, results)
    report.progress.update(overall, completed=len(chosen))


class _Report:
    """What the command prints: a line (or JSON line) per video, failures, progress bars."""

    def __init__(self, ctx, campaigns: tuple[str, ...], as_json: bool) -> None:
        # rich.progress takes ~50 ms to import: only when rendering, not for `--help`.
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.ctx, self.campaigns, self.as_json = ctx, campaigns, as_json
        self.failed = 0
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=as_json,
        )
        self._tasks: dict[str, TaskID] = {}

    def frames(self, nid: str, key: str, done: int, total: int) -> None:
        name = f"{nid[:12]} {key}"
        if name not in self._tasks:
            self._tasks[name] = self.progress.add_task(name, total=total, unit="frames")
        self.progress.update(self._tasks[name], completed=done, total=total)

    def fail(self, nid: str, error: str, hint: str | None) -> None:
        self.failed += 1
        if self.as_json:
            echo_json({"narrative_id": nid, "error": error, "hint": hint})
        else:
            err_console.print(f"[red]{nid[:12]} failed:[/red] {error}")

    def show(self, nid: str, results: list[Video]) -> None:
        ctx = self.ctx
        unused = _unrouted(ctx, nid, self.campaigns)
        for r in results:
            self._video(nid, r, unused)
        if not results and not self.as_json:
            self.progress.console.print(
                f"{nid[:12]}: nothing to render (no campaign, no channel of its campaigns "
                "publishes video and no [look] formats ask for one, or no words; "
                "--campaign SLUG --format FORMAT renders one on request)"
            )
        if self.as_json:
            return  # the JSON lines carry the note
        for slug in sorted(unused & {r.campaign for r in results}):
            err_console.print(
                f"[yellow]note:[/yellow] {escape(_note(ctx, nid, slug))}", highlight=False
            )

    def _video(self, nid: str, r: Video, unused: set[str]) -> None:
        out = {
            "narrative_id": nid,
            "campaign": r.campaign,
            "format": r.format,
            "skipped": r.skipped,
            # False: the story is not routed to this campaign, so no draft uses the video.
            "routed": r.campaign not in unused,
            **r.output(self.ctx.workspace.root),
        }
        if r.campaign in unused:
            out["note"] = _note(self.ctx, nid, r.campaign)
        if self.as_json:
            echo_json(out)
            return
        note = " (already rendered)" if r.skipped else ""
        cut = " cut to fit" if r.cut else ""
        self.progress.console.print(
            f"{nid[:12]} {r.campaign}/{r.format}: {out['video']} "
            f"{r.width}x{r.height} {r.duration:.1f} s{cut}{note}"
        )
        if r.missing_glyphs:
            self.progress.console.print(
                f"  [yellow]warning:[/yellow] no font draws {r.missing_glyphs!r}: "
                "left out of the burned-in captions (the .vtt keeps them)"
            )


def _unrouted(ctx, nid: str, campaigns: tuple[str, ...]) -> set[str]:
    """The named campaigns the narrative does not go to (no draft will use their videos)."""
    if not campaigns:
        return set()
    return set(campaigns) - {r.campaign for r in routes(ctx, nid)}


def _note(ctx, nid: str, slug: str) -> str:
    """What a user should know about a video for a campaign the story does not go to."""
    return (
        f"{nid[:12]} {_why_not(ctx, nid, slug)}, so no draft will use this video. To make "
        f"{slug}'s drafts: `narrative assign {nid[:12]} --campaign {slug}`"
    )


def _why_not(ctx, nid: str, slug: str) -> str:
    """Why the narrative does not go to `slug`, in words."""
    chosen = explicit(ctx, nid)
    if chosen.get(slug) is False:
        return f"was unassigned from {slug}"
    assigned = sorted(s for s, yes in chosen.items() if yes)
    if assigned:
        return f"is assigned to {', '.join(assigned)} only"
    return f"is not assigned to {slug} and its tags do not fit it"


def register(cli: click.Group) -> None:
    cli.add_command(render)
