"""`narrative init`, `status` and `show`: the workspace and what is in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from rich.markup import escape
from rich.table import Table

from narratives.cli._common import (
    console,
    echo_json,
    get_context,
    read_only,
    resolve_narrative_id,
    shown_name,
)
from narratives.core.campaigns import load_campaigns
from narratives.core.errors import UnreadableFile
from narratives.core.workspace import init_workspace
from narratives.policy.campaign_assignments import history
from narratives.policy.routing import is_unassigned, routes, suggestions, unassigned
from narratives.stages.pipeline import STAGES
from narratives.store.context import Context
from narratives.store.narrative_files import read_analysis, read_transcript
from narratives.store.schema import narrative_paths, narratives
from narratives.store.stage_runs import StageRun, is_interrupted, list_runs

__all__ = ["register"]


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite settings, campaigns and templates there.")
def init(directory: Path, force: bool) -> None:
    """Create a workspace in DIRECTORY from the shipped campaigns, templates and settings."""
    ws = init_workspace(directory, force=force)
    click.echo(f"Workspace ready at {ws.root}")
    click.echo(f"Use it with: export NARRATIVES_HOME={ws.root}")
    click.echo(f"         or: narrative --workspace {ws.root} COMMAND")


def _stage_states(runs: dict[str, list[StageRun]]) -> tuple[dict[str, str], list[str]]:
    """Each stage's state from its rows (pending, failed, interrupted, running, done, none),
    and the errors of the failed ones."""
    stages: dict[str, str] = {}
    errors: list[str] = []
    for stage in STAGES:
        rs = runs.get(stage, [])
        if not rs:
            stages[stage] = "pending"
        elif any(r.status == "failed" for r in rs):
            stages[stage] = "failed"
            errors += [f"{stage}: {r.error}" for r in rs if r.error]
        elif any(r.status == "interrupted" or is_interrupted(r) for r in rs):
            stages[stage] = "interrupted"
        elif any(r.status == "running" for r in rs):
            stages[stage] = "running"
        else:
            stages[stage] = "done"
    # A stage with nothing to do (no video for an off-topic story) leaves no rows; once a
    # later stage has run, say so instead of "pending".
    for i, stage in enumerate(STAGES):
        later = [stages[s] for s in STAGES[i + 1 :]]
        if stages[stage] == "pending" and any(v != "pending" for v in later):
            stages[stage] = "none"
    return stages, errors


def _status_rows(ctx: Context) -> list[dict]:
    campaigns = load_campaigns(ctx.workspace)
    # Analysed stories that no campaign gets: shown, never silently dropped.
    lost = {u.id: u for u in unassigned(ctx)}
    runs: dict[str, dict[str, list[StageRun]]] = {}
    for r in list_runs(ctx.db):
        runs.setdefault(r.narrative_id, {}).setdefault(r.stage, []).append(r)
    with ctx.db.connect() as conn:
        # Erased narratives are tombstones (`show ID` says so), not stories to work on.
        items = conn.execute(
            sa.select(narratives)
            .where(narratives.c.erased_at.is_(None))
            .order_by(narratives.c.created_at)
        ).all()
    out = []
    for n in items:
        stages, errors = _stage_states(runs.get(n.id, {}))
        analysis, damaged = None, False
        if stages["analyse"] == "done":
            try:
                analysis = read_analysis(ctx.workspace, n.id)
            except UnreadableFile as exc:  # shown on its row; the other rows still list
                damaged = True
                errors.append(f"analyse: {exc}")
        row = {
            "id": n.id,
            "label": n.label,
            "duration": n.duration,
            "language": n.language,
            "stages": stages,
            "errors": errors,
            "campaigns": []
            if damaged
            else [r.to_json() for r in routes(ctx, n.id, analysis, campaigns=campaigns)],
            "unassigned": n.id in lost,
        }
        if n.id in lost:
            row["suggestions"] = [s.to_json() for s in lost[n.id].suggestions]
        out.append(row)
    return out


def _campaigns_cell(row: dict) -> str:
    if row["unassigned"]:
        return "[yellow]unassigned[/]"
    if not row["campaigns"]:
        return "[dim]-[/]"
    # An asterisk marks a campaign staff assigned (the others fit by tags).
    return escape(
        ", ".join(
            c["campaign"] + ("*" if c["reason"] == "assigned" else "") for c in row["campaigns"]
        )
    )


_STYLE = {
    "done": "green",
    "failed": "red",
    "pending": "dim",
    "running": "yellow",
    "interrupted": "magenta",
    "none": "dim",
}


def _status_table(root: Path, rows: list[dict]) -> Table:
    table = Table(title=f"Narratives in {root}")
    table.add_column("id", no_wrap=True, min_width=12)
    table.add_column("recording")
    table.add_column("length", justify="right")
    for stage in STAGES:
        table.add_column(stage)
    # Once stories are analysed, where each goes (a column only then: the table stays narrow).
    routed = any(row["campaigns"] or row["unassigned"] for row in rows)
    if routed:
        table.add_column("campaigns")
    for row in rows:
        length = f"{row['duration']:.1f}s" if row["duration"] else "-"
        table.add_row(
            row["id"][:12],
            shown_name(row["label"] or ""),
            length,
            *(f"[{_STYLE[row['stages'][s]]}]{row['stages'][s]}[/]" for s in STAGES),
            *([_campaigns_cell(row)] if routed else []),
        )
    return table


def _print_unassigned(rows: list[dict]) -> None:
    lost = [row for row in rows if row["unassigned"]]
    if not lost:
        return
    stories = "story fits" if len(lost) == 1 else "stories fit"
    console.print(
        f"[yellow]{len(lost)} {stories} no campaign:[/] "
        "`narrative assign ID --campaign SLUG` for each of",
        highlight=False,
    )
    for row in lost:
        best = row["suggestions"][0] if row["suggestions"] else None
        hint = (
            f"  closest: {best['campaign']} ({best['top']} {best['score']:.2f})"
            if best and best.get("top") and best.get("score") is not None
            else ""
        )
        console.print(
            f"  {row['id'][:12]}  {shown_name(row['label'] or '')}{escape(hint)}",
            highlight=False,
        )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per narrative.")
@read_only
def status(as_json: bool) -> None:
    """List narratives and the state of each stage (done, failed, pending)."""
    ctx = get_context()
    rows = _status_rows(ctx)
    if as_json:
        for row in rows:
            echo_json(row)
        return
    if not rows:
        click.echo("No narratives yet. Run `narrative process PATH` on some recordings.")
        return
    console.print(_status_table(ctx.workspace.root, rows))
    if any(c["reason"] == "assigned" for row in rows for c in row["campaigns"]):
        console.print("* assigned by staff; the other campaigns fit by tags", highlight=False)
    for row in rows:
        for err in row["errors"]:
            console.print(f"[red]{row['id'][:12]} {escape(err)}[/]", highlight=False)
    _print_unassigned(rows)


def _show_data(ctx: Context, nid: str) -> dict[str, Any]:
    """Everything `show` says about one narrative, as its JSON."""
    with ctx.db.connect() as conn:
        n = conn.execute(sa.select(narratives).where(narratives.c.id == nid)).one()
        paths = [
            r[0]
            for r in conn.execute(
                sa.select(narrative_paths.c.path).where(narrative_paths.c.narrative_id == nid)
            )
        ]
    folder = ctx.workspace.narrative_dir(nid)
    data: dict[str, Any] = {
        "id": nid,
        "label": n.label,
        "duration": n.duration,
        "language": n.language,
        "paths": paths,
        # The workspace's copy of the recording (relative to it); null: kept by reference.
        "stored_as": n.stored_as,
        "erased_at": n.erased_at,
        "stages": [
            {
                "stage": r.stage,
                "key": r.key,
                "status": r.status,
                "engine": r.engine,
                "model": r.model,
                "version": r.version,
                "seconds": r.seconds,
                "error": r.error,
            }
            for r in list_runs(ctx.db, nid)
        ],
        "files": sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else [],
    }
    # A damaged file is named under "problems"; what can be read is still shown.
    problems: list[str] = []
    unreadable: set[str] = set()
    records: dict[str, Any] = {}
    for key, read in (("transcript", read_transcript), ("analysis", read_analysis)):
        try:
            records[key] = read(ctx.workspace, nid)
        except UnreadableFile as exc:
            problems.append(str(exc))
            unreadable.add(key)
            records[key] = None
        if records[key] is not None:
            data[key] = records[key].to_dict()
    if problems:
        data["problems"] = problems
    analysis = records["analysis"]
    damaged = "analysis" in unreadable
    found = [] if damaged else routes(ctx, nid, analysis)
    data["campaigns"] = [r.to_json() for r in found]
    data["assignments"] = [a.to_json() for a in history(ctx, nid)]
    data["unassigned"] = not found and not damaged and is_unassigned(ctx, nid, analysis)
    if data["unassigned"]:
        data["suggestions"] = [s.to_json() for s in suggestions(ctx, nid, analysis)]
    return data


@click.command()
@click.argument("narrative_id")
@click.option("--json", "as_json", is_flag=True, help="Print the narrative as JSON.")
@read_only
def show(narrative_id: str, as_json: bool) -> None:
    """Show one narrative: its recordings, stages, transcript and analysis."""
    ctx = get_context()
    nid = resolve_narrative_id(narrative_id)
    data = _show_data(ctx, nid)
    if as_json:
        echo_json(data)
        return
    if data["erased_at"]:
        console.print(
            f"{nid}: [red]erased[/] on {data['erased_at']:%Y-%m-%d %H:%M} UTC (the audit log "
            "keeps a tombstone); `narrative process --force FILE` takes its recording in again."
        )
        return
    # Labels, paths, errors and transcript text are the user's, never markup.
    console.print(f"[bold]{shown_name(data['label'] or '')}[/]  {nid}")
    console.print(f"length {data['duration'] or 0:.1f}s, language {data['language'] or '-'}")
    if data["stored_as"]:
        console.print(f"  kept in the workspace: {shown_name(data['stored_as'])}", highlight=False)
    for p in data["paths"]:
        console.print(f"  recording: {shown_name(p)}", highlight=False)
    for s in data["stages"]:
        extra = (
            f" ({s['engine']} {s['model'] or ''}, {s['seconds'] or 0:.1f}s)" if s["engine"] else ""
        )
        key = escape(f"[{s['key']}]") if s["key"] else ""
        console.print(f"  {s['stage']}{key}: {s['status']}{extra}", highlight=False)
        if s["error"]:
            console.print(f"    [red]{escape(s['error'])}[/]", highlight=False)
    for problem in data.get("problems", []):
        console.print(f"  [red]{escape(problem)}[/]", highlight=False)
    _print_routes(data, nid)
    analysis = data.get("analysis")
    if analysis and analysis.get("empty"):
        reason = analysis.get("reason") or "nothing to analyse"
        console.print(f"\n{escape(reason)}", highlight=False)
    elif analysis:
        _print_analysis(analysis)
    if "transcript" in data:
        text = " ".join(s["text"].strip() for s in data["transcript"]["segments"])
        console.print(f"\n[bold]Transcript:[/] {escape(text or '(no speech)')}", highlight=False)


def _print_routes(data: dict, nid: str) -> None:
    say = lambda text: console.print(text, highlight=False)  # noqa: E731
    if data["campaigns"]:
        parts = [
            f"{c['campaign']} ({'assigned' if c['reason'] == 'assigned' else 'by its tags'})"
            for c in data["campaigns"]
        ]
        say(f"[bold]Campaigns:[/] {escape(', '.join(parts))}")
    elif data["unassigned"]:
        best = ", ".join(
            f"{s['campaign']} ({s['top']} {s['score']:.2f})"
            for s in data.get("suggestions", [])[:2]
            if s.get("top") and s.get("score") is not None
        )
        say(
            "[bold]Campaigns:[/] [yellow]unassigned[/] (fits no campaign"
            + (f"; closest: {escape(best)}" if best else "")
            + f"): `narrative assign {nid[:12]} --campaign SLUG`"
        )
    for a in data["assignments"]:
        verb = "assigned to" if a["assigned"] else "unassigned from"
        when = a["at"][:16].replace("T", " ")
        say(f"  {verb} {escape(a['campaign'])} by {escape(a['actor'])} ({a['source']}, {when})")


def _print_analysis(analysis: dict) -> None:
    say = lambda text: console.print(text, highlight=False)  # noqa: E731
    say(f"\n[bold]Title:[/] {escape(analysis.get('title') or '')}")
    # An end guessed from unpunctuated words may fall mid-sentence: say so beside it.
    check = " [yellow](sentence ends guessed: check them)[/]"
    guessed = not analysis.get("abstract") and any(
        s.get("guessed") for s in analysis.get("summary") or []
    )
    say(f"[bold]Summary:[/] {escape(analysis.get('summary_text') or '')}{check if guessed else ''}")
    quote = analysis.get("quote") or {}
    if quote.get("text"):
        say(
            f"[bold]Quote:[/] “{escape(quote['text'])}” ({quote['start']:.1f}–{quote['end']:.1f}s)"
            + (check if quote.get("guessed") else "")
        )
    for slug, fit in sorted((analysis.get("campaigns") or {}).items()):
        tags = escape(", ".join(f"{t['name']} {t['score']:.2f}" for t in fit.get("tags", [])[:3]))
        verdict = "on-topic" if fit.get("on_topic") else "off-topic"
        say(f"[bold]{escape(slug)}:[/] {verdict}; {tags}")
    notes = [n["name"] for n in analysis.get("content_notes") or [] if n.get("flagged")]
    if notes:
        say(f"[bold]Content notes:[/] {escape(', '.join(notes))}")
    entities = analysis.get("entities") or []
    if entities:
        say(
            "[bold]Names and places:[/] "
            + escape(", ".join(f"{e['text']} ({e['kind']})" for e in entities))
        )


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(status)
    cli.add_command(show)
