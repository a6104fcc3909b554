"""`narrative transcript show|edit|discard`: read and correct a story's transcript.

`edit` opens $EDITOR (or takes `--from-file`) on the transcript as plain text, one sentence per
line; corrected words keep the timing of the words they replace. The correction is stored
beside the engine's transcript and audited with a diff, and the story's analysis, videos and
drafts are made again from it (`narratives.workflow.corrections`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from narratives.cli._common import (
    actor_option,
    echo_json,
    err_console,
    get_context,
    read_only,
    require_actor,
    resolve_narrative_id,
)
from narratives.core.errors import EXIT_FAILED_ITEMS, NotFound, UsageError
from narratives.store.context import Context
from narratives.store.narrative_files import read_transcript
from narratives.workflow import corrections

__all__ = ["register", "transcript"]

_HEADER = (
    "# Correct the transcript: one sentence per line. Fix misheard words and where sentences\n"
    "# break; corrected words keep the timing of the words they replace. Lines starting with\n"
    "# '# ' are ignored. Save and quit to apply; an unchanged text changes nothing.\n"
)


def _say(text: str) -> None:
    err_console.print(escape(text), highlight=False)


def _load(ctx: Context, nid: str):
    found = read_transcript(ctx.workspace, nid)
    if found is None:
        raise NotFound(
            f"narrative {nid[:12]} has no transcript yet",
            hint="run `narrative process` on its recording first",
        )
    return found


@click.group()
def transcript() -> None:
    """Read and correct a story's transcript."""


@transcript.command("show")
@click.argument("narrative_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@read_only
def show(narrative_id: str, as_json: bool) -> None:
    """Print story ID's transcript, one sentence per line (as `edit` shows it).

    Exit codes: 0 done, 5 no such story or no transcript yet.
    """
    ctx = get_context()
    nid = resolve_narrative_id(narrative_id)
    found = _load(ctx, nid)
    text = corrections.text_form(found)
    if as_json:
        echo_json(
            {
                "narrative_id": nid,
                "text": text,
                "version": corrections.text_version(found),
                "corrected": corrections.is_corrected(ctx, nid),
            }
        )
    else:
        click.echo(text, nl=False)


@transcript.command("edit")
@click.argument("narrative_id", metavar="ID")
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Take the corrected text from FILE ('-' for stdin) instead of opening $EDITOR.",
)
@click.option(
    "--no-outputs",
    is_flag=True,
    help="Only store the correction; the next `narrative process` makes analysis, videos "
    "and drafts again.",
)
@actor_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def edit(
    narrative_id: str,
    from_file: Path | None,
    no_outputs: bool,
    actor: str | None,
    as_json: bool,
) -> None:
    """Correct story ID's transcript in $EDITOR (one sentence per line), then make its
    analysis, videos and drafts again from the correction.

    Drafts an editor has edited keep the editor's text. A re-run of `narrative process
    --force` keeps the correction (add --discard-corrections to drop it).
    Exit codes: 0 done (or nothing changed), 1 stored but a video or draft failed, 2 empty
    text or no editor, 5 no such story or no transcript, 6 someone else corrected it while
    you edited (run again), 7 not a user here.
    """
    ctx = get_context()
    actor = require_actor(actor)
    nid = resolve_narrative_id(narrative_id)
    found = _load(ctx, nid)
    version = corrections.text_version(found)
    before = corrections.text_form(found)
    if from_file is not None:
        text = _read_file(from_file)
    else:
        edited = click.edit(_HEADER + before, extension=".txt", require_save=True)
        # Closed without saving: nothing changes. Our header's lines are dropped.
        text = before if edited is None else edited
        text = "\n".join(line for line in text.splitlines() if not line.startswith("# "))
    result = corrections.correct(ctx, nid, text, actor=actor, seen=version)
    outputs = corrections.Rederived()
    if result.changed and not no_outputs:
        outputs = corrections.rederive(ctx, nid, actor=actor, progress=_say)
        for error in outputs.errors:
            err_console.print(f"[red]failed:[/red] {escape(error)}", highlight=False)
    if as_json:
        echo_json(
            {
                "narrative_id": nid,
                "changed": result.changed,
                "words_changed": result.words_changed,
                "diff": result.diff,
                "version": corrections.text_version(result.transcript),
                "analysed": outputs.analysed,
                "videos": outputs.videos,
                "drafts": outputs.drafts,
                "errors": outputs.errors,
            }
        )
    elif not result.changed:
        click.echo(f"{nid[:12]}: the transcript is unchanged.")
    else:
        click.echo(f"{nid[:12]}: corrected ({result.words_changed} word(s) changed).")
        if not no_outputs:
            click.echo(
                f"Made again: analysis, {outputs.videos} video(s), {outputs.drafts} draft(s)."
            )
    if outputs.errors:
        raise click.exceptions.Exit(EXIT_FAILED_ITEMS)


@transcript.command("discard")
@click.argument("narrative_id", metavar="ID")
@click.option("--no-outputs", is_flag=True, help="Do not make analysis, videos, drafts again.")
@actor_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def discard(narrative_id: str, no_outputs: bool, actor: str | None, as_json: bool) -> None:
    """Drop the editors' correction of story ID: the engine's transcript counts again.

    Exit codes: 0 done (or there was none), 1 a video or draft failed, 5 no such story.
    """
    ctx = get_context()
    actor = require_actor(actor)
    nid = resolve_narrative_id(narrative_id)
    dropped = corrections.discard(ctx, nid, actor=actor)
    outputs = corrections.Rederived()
    if dropped and not no_outputs:
        outputs = corrections.rederive(ctx, nid, actor=actor, progress=_say)
    if as_json:
        echo_json({"narrative_id": nid, "discarded": dropped, "errors": outputs.errors})
    else:
        click.echo(f"{nid[:12]}: " + ("correction dropped." if dropped else "no correction."))
    if outputs.errors:
        raise click.exceptions.Exit(EXIT_FAILED_ITEMS)


def _read_file(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"{path}: cannot read the corrected transcript: {exc}",
            hint="give a UTF-8 text file, one sentence per line",
        ) from exc


def register(cli: click.Group) -> None:
    cli.add_command(transcript)
