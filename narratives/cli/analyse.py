"""`narrative analyse`: summaries, titles, campaign tags and content notes of narratives."""

from __future__ import annotations

import click

from ..errors import NarrativesError
from ._common import console, echo_json, err_console, get_context, narrative_ids

__all__ = ["register", "analyse"]


@click.command("analyse")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every transcribed narrative.")
@click.option("--force", is_flag=True, help="Analyse again even if done.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per narrative (the Analysis).")
def analyse(ids, all_, force, as_json):
    """Summarise, title, tag and flag transcribed narratives (writes analysis.json).

    A narrative that fails is reported and the others go on; the exit status is then 1.
    """
    from .. import analyse as stage

    ctx = get_context()
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
