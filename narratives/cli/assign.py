"""`narrative assign` and `narrative unassign`: say which campaigns a story is for.

An assigned story always gets its campaigns' videos and drafts (made at once, progress on
stderr); tags then only rank it within the campaign. Unassigning withdraws the campaign's
drafts that still await review and leaves every draft an editor acted on, saying so.
"""

from __future__ import annotations

import click
from rich.markup import escape

from narratives.cli._common import (
    actor_option,
    echo_json,
    err_console,
    get_context,
    require_actor,
    resolve_narrative_id,
)
from narratives.core.errors import EXIT_FAILED_ITEMS
from narratives.policy import campaign_assignments, routing
from narratives.store.users import require_active
from narratives.workflow import assignments

__all__ = ["register", "assign", "unassign"]

_campaign_option = click.option(
    "--campaign",
    "campaigns",
    multiple=True,
    required=True,
    metavar="SLUG",
    help="The campaign (repeatable); `narrative campaigns list` shows them.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")


def _say(text: str) -> None:
    err_console.print(text, highlight=False)


def _routes_line(routes: list[routing.Route]) -> str:
    if not routes:
        return "fits no campaign (unassigned)"
    return "goes to " + ", ".join(
        f"{r.campaign} ({'assigned' if r.reason == 'assigned' else 'by its tags'})" for r in routes
    )


@click.command()
@click.argument("narrative_id", metavar="ID")
@_campaign_option
@click.option(
    "--no-outputs",
    is_flag=True,
    help="Only record the assignment; the next `narrative process` makes video and drafts.",
)
@actor_option
@_json_option
def assign(
    narrative_id: str,
    campaigns: tuple[str, ...],
    no_outputs: bool,
    actor: str | None,
    as_json: bool,
) -> None:
    """Assign story ID to a campaign, then make its video and drafts.

    Once a story has an assigned campaign it goes to exactly its assigned campaigns, whatever
    its tags say. Exit codes: 0 done, 1 the assignment holds but a video or draft failed,
    2 unknown campaign (the message lists the known ones), 5 no such story, 6 the story
    cannot be assigned (consent withdrawn, its transcription or analysis failed, no speech).
    """
    ctx = get_context()
    actor = require_actor(actor)
    slugs = campaign_assignments.check_slugs(ctx, campaigns)
    nid = resolve_narrative_id(narrative_id)
    before = {r.campaign: r for r in routing.routes(ctx, nid)}
    rows = [
        campaign_assignments.assign(ctx, nid, slug, actor=actor, source="cli") for slug in slugs
    ]
    for row in rows:
        verb = "assigned to" if row.changed else "was already assigned to"
        _say(f"{nid[:12]} {verb} {row.campaign}")
    after = routing.routes(ctx, nid)
    dropped = sorted(set(before) - {r.campaign for r in after})
    for slug in dropped:
        # Tags routed it there; an assignment now decides alone.
        _say(
            f"[yellow]note:[/yellow] {nid[:12]} no longer goes to {slug} by its tags (an "
            f"assigned story goes only to its assigned campaigns); its existing {slug} drafts "
            f"are left as they are. To keep {slug}: `narrative assign {nid[:12]} --campaign "
            f"{slug}`"
        )
    outputs = assignments.Outputs()
    if not no_outputs:
        outputs = assignments.make_outputs(ctx, nid, campaigns=slugs, progress=_say, actor=actor)
        for error in outputs.errors:
            err_console.print(f"[red]failed:[/red] {escape(error)}", highlight=False)
    if as_json:
        echo_json(
            {
                "narrative_id": nid,
                "assignments": [r.to_json() for r in rows],
                "campaigns": [r.to_json() for r in after],
                "no_longer": dropped,
                "videos": outputs.videos,
                "drafts": outputs.drafts,
                "new_drafts": outputs.new_drafts,
                "errors": outputs.errors,
            }
        )
    else:
        click.echo(f"{nid[:12]} {_routes_line(after)}.")
        if not no_outputs:
            click.echo(
                f"{', '.join(slugs)}: {outputs.videos} video(s), {outputs.drafts} draft(s) "
                f"({outputs.new_drafts} new); review them with `narrative drafts list "
                "--state pending_review` or `narrative serve`."
            )
    if outputs.errors:
        raise click.exceptions.Exit(EXIT_FAILED_ITEMS)


@click.command()
@click.argument("narrative_id", metavar="ID")
@_campaign_option
@click.option(
    "--keep-drafts",
    is_flag=True,
    help="Leave the campaign's drafts pending review instead of rejecting them.",
)
@actor_option
@_json_option
def unassign(
    narrative_id: str,
    campaigns: tuple[str, ...],
    keep_drafts: bool,
    actor: str | None,
    as_json: bool,
) -> None:
    """Say story ID is not for a campaign (its tags no longer send it there either).

    The campaign's drafts of the story that still await review are rejected (withdrawn from
    review; --keep-drafts leaves them). Drafts an editor approved, scheduled or published are
    never changed: each is listed with the command that stops it. Exit codes: 0 done,
    2 unknown campaign, 5 no such story, 7 drafts to reject but USER is not a user here.
    """
    ctx = get_context()
    actor = require_actor(actor)
    slugs = campaign_assignments.check_slugs(ctx, campaigns)
    nid = resolve_narrative_id(narrative_id)
    if not keep_drafts and any(assignments.pending_drafts(ctx, nid, s) for s in slugs):
        # Rejecting is a review action: checked before anything changes.
        require_active(ctx, actor)
    before = {r.campaign for r in routing.routes(ctx, nid)}
    rows = [
        campaign_assignments.unassign(ctx, nid, slug, actor=actor, source="cli") for slug in slugs
    ]
    notes: dict[str, list[assignments.DraftNote]] = {}
    for row in rows:
        verb = "unassigned from" if row.changed else "was already unassigned from"
        _say(f"{nid[:12]} {verb} {row.campaign}")
        notes[row.campaign] = assignments.settle_drafts(
            ctx, nid, row.campaign, actor=actor, reject=not keep_drafts
        )
        for note in notes[row.campaign]:
            colour = "cyan" if note.action == "rejected" else "yellow"
            _say(f"  [{colour}]{escape(note.message)}[/]")
    after = routing.routes(ctx, nid)
    # Unassigning the last assigned campaign lets its tags route it again: make those now.
    gained = sorted({r.campaign for r in after} - before)
    outputs = assignments.Outputs()
    if gained:
        _say(f"{nid[:12]} now goes to {', '.join(gained)} by its tags: making video and drafts")
        outputs = assignments.make_outputs(ctx, nid, campaigns=gained, progress=_say, actor=actor)
        for error in outputs.errors:
            err_console.print(f"[red]failed:[/red] {escape(error)}", highlight=False)
    if as_json:
        echo_json(
            {
                "narrative_id": nid,
                "assignments": [r.to_json() for r in rows],
                "drafts": {slug: [n.to_json() for n in ns] for slug, ns in notes.items()},
                "campaigns": [r.to_json() for r in after],
                "unassigned": not after,
                "errors": outputs.errors,
            }
        )
    else:
        click.echo(f"{nid[:12]} {_routes_line(after)}.")
        if not after:
            click.echo(f"To give it a campaign: `narrative assign {nid[:12]} --campaign SLUG`.")
    if outputs.errors:
        raise click.exceptions.Exit(EXIT_FAILED_ITEMS)


def register(cli: click.Group) -> None:
    cli.add_command(assign)
    cli.add_command(unassign)
