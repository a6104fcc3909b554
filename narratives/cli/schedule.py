"""`narrative schedule ...`: put approved drafts on the calendar, list, cancel and move them.

The issue's short forms work too: `narrative schedule DRAFT_ID --at ...` is `schedule add`,
and `narrative schedule --campaign SLUG --fill` is `schedule fill`.
"""

from __future__ import annotations

import click
from rich.table import Table

from narratives.cli._common import (
    actor_option,
    console,
    echo_json,
    err_console,
    get_context,
    read_only,
    require_actor,
)
from narratives.core.campaigns import get_campaign
from narratives.records.delivery import Delivery, DeliveryState
from narratives.store.delivery_queries import list_deliveries
from narratives.workflow import scheduling

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
_at_option = click.option(
    "--at", metavar='"YYYY-MM-DD HH:MM"', help="Wall-clock time (in --tz, default the campaign's)."
)
_tz_option = click.option(
    "--tz", metavar="ZONE", help="IANA time zone of --at, e.g. Europe/Lisbon."
)
_next_option = click.option(
    "--next-slot", is_flag=True, help="The campaign's next free weekly posting slot."
)


def _local(d: Delivery) -> str:
    try:
        zone = get_campaign(get_context().workspace, d.campaign).slots.zone
    except Exception:
        return d.scheduled_at.isoformat(timespec="minutes")
    return d.scheduled_at.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")


def _show(items: list[Delivery], as_json: bool) -> None:
    if as_json:
        for d in items:
            echo_json({**d.to_dict(), "local_time": _local(d)})
        return
    if not items:
        console.print("No deliveries.")
        return
    table = Table("id", "draft", "campaign", "channel", "state", "when (campaign time)", "note")
    for d in items:
        note = d.last_error or ""
        if d.state == DeliveryState.FAILED and d.retry_at:
            note = f"retry {d.retry_at.isoformat(timespec='seconds')}: {note}"
        table.add_row(
            str(d.id), str(d.draft_id), d.campaign, d.channel, d.state, _local(d), note[:80]
        )
    console.print(table)


class _ScheduleGroup(click.Group):
    """Accepts `schedule DRAFT_ID ...` (add) and `schedule --campaign SLUG --fill` (fill)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            if args[0].isdigit():
                args = ["add", *args]
            elif "--fill" in args:
                args = ["fill", *[a for a in args if a != "--fill"]]
        return super().parse_args(ctx, args)


@click.group("schedule", cls=_ScheduleGroup)
def schedule_group() -> None:
    """Schedule approved drafts: at a time, in the next free slot, or fill all free slots.

    \b
      narrative schedule 12 --at "2026-12-01 18:30" --tz Europe/Lisbon
      narrative schedule 12 --next-slot
      narrative schedule --campaign neural-mandate --fill
      narrative schedule list --campaign neural-mandate
    """


@schedule_group.command("add")
@click.argument("draft_id", type=int)
@_at_option
@_tz_option
@_next_option
@actor_option
@_json_option
def add_cmd(draft_id, at, tz, next_slot, actor, as_json):
    """Schedule approved draft DRAFT_ID --at a time or in the --next-slot."""
    d = scheduling.schedule(
        get_context(), draft_id, at=at, tz=tz, next_slot=next_slot, actor=require_actor(actor)
    )
    _show([d], as_json)


@schedule_group.command("fill")
@click.option("--campaign", "campaign", required=True, metavar="SLUG", help="The campaign.")
@actor_option
@_json_option
def fill_cmd(campaign, actor, as_json):
    """Queue every approved, unscheduled draft of a campaign into its free slots.

    Drafts that cannot be scheduled (no consent for the channel, scheduled meanwhile by
    someone else) are skipped; each is named on stderr with the reason.
    """
    result = scheduling.fill(get_context(), campaign, actor=require_actor(actor))
    _show(result.deliveries, as_json)
    for draft_id, why in result.skipped:
        err_console.print(f"[yellow]draft {draft_id} skipped:[/yellow] {why}", highlight=False)


@schedule_group.command("list")
@click.option("--campaign", metavar="SLUG", help="Only this campaign.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in DeliveryState]),
    help="Only these states (repeatable; default: all).",
)
@_json_option
@read_only
def list_cmd(campaign, states, as_json):
    """List deliveries by time, with failures and their reasons."""
    with get_context().db.connect() as conn:
        items = list_deliveries(conn, campaign=campaign, states=states or None)
    _show(items, as_json)


@schedule_group.command("cancel")
@click.argument("delivery_id", type=int)
@click.option("--reason", help="Why (kept in the audit log).")
@actor_option
@_json_option
def cancel_cmd(delivery_id, reason, actor, as_json):
    """Cancel a delivery that has not gone out."""
    d = scheduling.cancel(get_context(), delivery_id, actor=require_actor(actor), reason=reason)
    _show([d], as_json)


@schedule_group.command("move")
@click.argument("delivery_id", type=int)
@_at_option
@_tz_option
@_next_option
@actor_option
@_json_option
def move_cmd(delivery_id, at, tz, next_slot, actor, as_json):
    """Give a scheduled or failed delivery a new time (a failed one starts afresh)."""
    d = scheduling.move(
        get_context(), delivery_id, at=at, tz=tz, next_slot=next_slot, actor=require_actor(actor)
    )
    _show([d], as_json)


def register(cli: click.Group) -> None:
    cli.add_command(schedule_group)
