"""`narrative publish DRAFT_ID --now`: a manual post through the scheduler's own code path."""

from __future__ import annotations

import click

from narratives.cli._common import actor_option, console, echo_json, get_context, require_actor
from narratives.core.errors import ChannelError, InvalidState, UsageError
from narratives.workflow.publishing import publish_draft_now


@click.command("publish")
@click.argument("draft_id", type=int)
@click.option("--now", "now", is_flag=True, help="Publish at once (required).")
@actor_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def publish_cmd(draft_id, now, actor, as_json):
    """Publish approved draft DRAFT_ID now, exactly as the scheduler would.

    A transient failure leaves the delivery failed with a retry time, for the scheduler to
    retry; a permanent one records the reason on the draft. Exit status 8 (channel error) if
    it did not go out, 6 if a withdrawal or another process took the delivery over meanwhile.
    """
    if not now:
        raise UsageError("pass --now to publish at once", hint="or use `narrative schedule`")
    outcome = publish_draft_now(get_context(), draft_id, actor=require_actor(actor))
    d = outcome.delivery
    if as_json:
        echo_json(
            {
                "status": outcome.status,
                "error": outcome.error,
                "delivery": d.to_dict() if d else None,
            }
        )
    elif outcome.status == "found_existing":
        # An earlier attempt had landed every post: nothing was posted twice.
        console.print(
            f"Draft {draft_id} was found already on the server (delivery {d.id}); "
            "nothing was posted again."
        )
    elif outcome.status == "published":
        console.print(f"Published draft {draft_id} (delivery {d.id}).")
    else:
        console.print(f"[red]Not published[/red] ({outcome.status}): {outcome.error or ''}")
    if outcome.status in ("skipped", "withdrawn"):
        raise SystemExit(InvalidState.exit_code)
    if outcome.status not in ("published", "found_existing"):
        raise SystemExit(ChannelError.exit_code)


def register(cli: click.Group) -> None:
    cli.add_command(publish_cmd)
