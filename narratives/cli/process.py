"""`narrative process` (the whole pipeline) and `narrative transcribe` (its first stage)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from narratives.cli._common import (
    actor_option,
    console,
    echo_json,
    err_console,
    get_context,
    note_stale_defaults,
    shown_name,
)
from narratives.core.config import Settings
from narratives.core.errors import EXIT_FAILED_ITEMS, EXIT_OK
from narratives.policy.campaign_assignments import check_slugs
from narratives.stages.ingest import (
    RECORDING_EXTENSIONS,
    find_recordings,
    hash_file,
    workspace_outputs,
)
from narratives.stages.pipeline import STAGES, ItemResult, process_paths
from narratives.store.context import Context
from narratives.workflow import corrections


def _checked_settings(ctx: Context, settings: Settings | None) -> Settings:
    """The batch's settings; a bad model or language fails the command before any file is
    touched."""
    # PyAV and the Whisper engines: only imported when a batch runs.
    from narratives.engines import whisper

    settings = settings or ctx.settings
    return settings.model_copy(update={"transcribe": whisper.check_settings(settings.transcribe)})


def _count_recordings(ctx: Context, paths: Sequence[Path]) -> int:
    """How many recordings `paths` hold; none is an error (exit 1) with a hint."""
    total = sum(1 for _ in find_recordings(paths, skip=workspace_outputs(ctx.workspace)))
    if not total:
        click.secho(
            "Error: no recordings found under " + ", ".join(str(p) for p in paths),
            fg="red",
            err=True,
        )
        click.echo(
            "Hint: recordings end in " + " ".join(sorted(RECORDING_EXTENSIONS)) + "; hidden "
            "files and folders are skipped",
            err=True,
        )
        click.get_current_context().exit(EXIT_FAILED_ITEMS)
    return total


class _Bars:
    """Progress bars on stderr: recordings done, and a bar per story in progress (two at
    once while one story renders and the next is transcribed: a bar per pipeline thread)."""

    def __init__(self, total: int) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        )
        self.overall = self.progress.add_task("recordings", total=total)
        #: thread -> [its bar, the file it is on]
        self.lanes: dict[int, list[Any]] = {}

    def _lane(self) -> list[Any]:
        me = threading.get_ident()
        if me not in self.lanes:
            self.lanes[me] = [self.progress.add_task("", total=1.0, visible=False), ""]
        return self.lanes[me]

    def on_event(self, event: str, detail: Any) -> None:
        """The pipeline's `progress` callback (called from the pipeline's threads)."""
        lane = self._lane()
        if event == "file":
            lane[1] = shown_name(Path(detail).name)
            self.progress.update(lane[0], description=lane[1], completed=0, visible=True)
            for other in self.lanes.values():  # the story moved on from the other thread
                if other is not lane and other[1] == lane[1]:
                    other[1] = ""
                    self.progress.update(other[0], visible=False)
        elif event == "stage":
            self.progress.update(lane[0], description=f"{lane[1]}: {detail}", completed=0)
        elif event == "fraction":
            self.progress.update(lane[0], completed=detail)


def _run_batch(
    paths: Sequence[Path],
    *,
    force: bool,
    stages: Sequence[str],
    settings: Settings | None = None,
    as_json: bool,
    with_transcript: bool,
    workers: int = 1,
    campaigns: Sequence[str] = (),
    actor: str = "intake",
    by_reference: bool | None = None,
    cluster: str | None = None,
) -> list[ItemResult]:
    """Run the pipeline on `paths` with progress bars; one JSON line per result with
    `as_json`, as each ends."""
    ctx = get_context()
    # An unknown campaign is a usage error before any file is touched.
    campaigns = check_slugs(ctx, campaigns)
    settings = _checked_settings(ctx, settings)
    bars = _Bars(_count_recordings(ctx, paths))
    results: list[ItemResult] = []
    with bars.progress:
        for result in process_paths(
            ctx,
            paths,
            force=force,
            stages=stages,
            settings=settings,
            progress=bars.on_event,
            workers=workers,
            campaigns=campaigns,
            actor=actor,
            by_reference=by_reference,
            cluster=cluster or ctx.settings.cluster.address or None,
        ):
            results.append(result)
            bars.progress.advance(bars.overall)
            if as_json:
                echo_json(result.to_json(with_transcript=with_transcript))
    return results


def _stages_text(stages: dict[str, str]) -> str:
    """ "all done" rather than four times "done"; otherwise each stage and what happened."""
    if stages and len(set(stages.values())) == 1:
        return f"all {next(iter(stages.values()))}"
    return ", ".join(f"{k} {v}" for k, v in stages.items())


def _best(r: ItemResult) -> str:
    """The closest campaigns of an unassigned story, e.g. "closest: neural-mandate
    (mandate-voice 0.41)"."""
    shown = [
        f"{s['campaign']} ({s['top']} {s['score']:.2f})"
        for s in (r.suggestions or [])[:2]
        if s.get("top") and s.get("score") is not None
    ]
    return "fits no campaign" + (f"; closest: {', '.join(shown)}" if shown else "")


def _routes_text(r: ItemResult) -> str:
    if not r.campaigns:
        return ""
    return "; for " + ", ".join(
        c["campaign"] + (" (assigned)" if c["reason"] == "assigned" else "") for c in r.campaigns
    )


def _summary(results: list[ItemResult]) -> None:
    table = Table(title="narrative process")
    table.add_column("recording")
    table.add_column("id", no_wrap=True)
    table.add_column("status")
    table.add_column("stages / reason", overflow="fold")
    colour = {"ok": "green", "skipped": "cyan", "failed": "red", "unassigned": "yellow"}
    for r in results:
        if r.status == "failed":
            detail = r.error
        elif r.status == "unassigned":
            detail = f"{_stages_text(r.stages)}; {_best(r)}"
        else:
            detail = _stages_text(r.stages) + _routes_text(r)
        # File names and errors are the user's text, not markup: `[draft] story.wav`.
        table.add_row(
            shown_name(r.path.name),
            (r.id or "-")[:12],
            f"[{colour[r.status]}]{r.status}[/]",
            escape(detail or ""),
        )
    console.print(table)
    counts = {
        s: sum(1 for r in results if r.status == s)
        for s in ("ok", "skipped", "unassigned", "failed")
    }
    line = f"done {counts['ok']}, skipped {counts['skipped']} (already done), "
    if counts["unassigned"]:
        line += f"unassigned {counts['unassigned']}, "
    console.print(line + f"failed {counts['failed']}")
    lost = [r for r in results if r.status == "unassigned"]
    if lost:
        stories = "story fits" if len(lost) == 1 else "stories fit"
        console.print(
            f"[yellow]{len(lost)} {stories} no campaign:[/] "
            "`narrative assign ID --campaign SLUG` for each of",
            highlight=False,
        )
        for r in lost:
            console.print(f"  {(r.id or '-')[:12]}  {shown_name(r.path.name)}", highlight=False)
    # The drafts this run made (or regenerated), not every draft of the workspace.
    made = sum(r.new_drafts for r in results)
    if made:
        drafts = "draft awaits" if made == 1 else "drafts await"
        console.print(
            f"{made} {drafts} review: `narrative drafts list` or `narrative serve`.",
            highlight=False,
        )


def _exit(results: list[ItemResult]) -> None:
    ctx = click.get_current_context()
    ctx.exit(EXIT_FAILED_ITEMS if any(r.status == "failed" for r in results) else EXIT_OK)


def _discard_corrections(paths: Sequence[Path], actor: str) -> None:
    """Drop the transcript corrections of the known recordings under `paths` (their later
    stages are then redone from the engine's transcript)."""
    ctx = get_context()
    for found in find_recordings(paths, skip=workspace_outputs(ctx.workspace)):
        if found.error is None:
            nid, _size = hash_file(found.path)
            if corrections.discard(ctx, nid, actor=actor):
                err_console.print(f"{nid[:12]}: transcript correction dropped", highlight=False)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Redo stages that are already done.")
@click.option(
    "--until",
    type=click.Choice(STAGES),
    default=STAGES[-1],
    show_default=True,
    help="Stop after this stage.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Narratives processed in parallel (one process and one thread each).",
)
@click.option(
    "--campaign",
    "campaigns",
    multiple=True,
    metavar="SLUG",
    help="The campaign these recordings are for (repeatable): they get its video and drafts "
    "whatever their tags say.",
)
@click.option(
    "--discard-corrections",
    is_flag=True,
    help="Drop the editors' transcript corrections of these recordings (kept otherwise, "
    "even with --force).",
)
@click.option(
    "--by-reference",
    is_flag=True,
    default=None,
    help="Remember where the recordings are instead of copying them into the workspace "
    '(large archives; default from [ingest] keep, which is "copy").',
)
@click.option(
    "--cluster",
    metavar="ADDRESS",
    help="Run the stages on a Dask cluster, e.g. tcp://10.0.0.5:8786 (default from [cluster] "
    "address). Its workers need this workspace at the same path and its database.",
)
@actor_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per recording on stdout.")
def process(
    paths: tuple[Path, ...],
    force: bool,
    until: str,
    workers: int,
    campaigns: tuple[str, ...],
    discard_corrections: bool,
    by_reference: bool | None,
    cluster: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Run every stage on the recordings in PATHS (files or folders, recursive).

    A story goes to the campaigns it is assigned to (--campaign, or `campaigns = [...]` in
    its consent sidecar), else to those its tags fit; one that fits none is `unassigned`.
    Recordings are copied into the workspace (media/recordings/) unless --by-reference.
    The recording of an erased narrative is refused unless --force.
    Exit code 0 when all succeeded, 1 when any recording failed (the rest are still
    processed) or none was found, 2 for usage errors, 4 when the model is not available.
    """
    stages = STAGES[: STAGES.index(until) + 1]
    if "analyse" in stages:
        note_stale_defaults(get_context())
    if discard_corrections:
        _discard_corrections(paths, actor or "intake")
    results = _run_batch(
        paths,
        force=force,
        stages=stages,
        as_json=as_json,
        with_transcript=False,
        workers=workers,
        campaigns=campaigns,
        actor=actor or "intake",
        by_reference=by_reference or None,
        cluster=cluster,
    )
    if not as_json:
        _summary(results)
    _exit(results)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--engine",
    type=click.Choice(["faster-whisper", "openai-whisper"]),
    help="Transcription engine (default from narratives.toml: faster-whisper).",
)
@click.option("--model", help="Whisper model: tiny.en, base, another size, or a local path.")
@click.option("--language", help="Language code such as en; default: detect.")
@click.option("--force", is_flag=True, help="Transcribe again even if already done.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per recording on stdout.")
def transcribe(paths, engine, model, language, force, as_json) -> None:
    """Transcribe the recordings in PATHS into timed transcripts and captions.

    Writes transcript.json, .txt, .srt and .vtt per narrative under media/work/<id>/.
    Exit code 0 when all succeeded, 1 when any failed or none was found, 2 for usage errors
    (such as an unknown language code), 4 when the model is not available.
    """
    # PyAV and the Whisper engines: only imported when this command runs.
    from narratives.engines.whisper import normalise_language

    ctx = get_context()
    if language:
        language = normalise_language(language, what="--language")
    update = {k: v for k, v in (("engine", engine), ("model", model), ("language", language)) if v}
    settings = ctx.settings.model_copy(
        update={"transcribe": ctx.settings.transcribe.model_copy(update=update)}
    )
    results = _run_batch(
        paths,
        force=force,
        stages=("transcribe",),
        settings=settings,
        as_json=as_json,
        with_transcript=True,
    )
    if not as_json:
        _summary(results)
    _exit(results)


def register(cli: click.Group) -> None:
    cli.add_command(process)
    cli.add_command(transcribe)
