"""`narrative consent ...`: record, show, import and withdraw a narrator's consent, and mark
what anonymised mode hides (`redact`, `disguise`)."""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path

import click
from rich.table import Table

from narratives.cli._common import (
    actor_option,
    console,
    echo_json,
    get_context,
    read_only,
    require_actor,
    resolve_narrative_id,
)
from narratives.core.errors import EXIT_FAILED_ITEMS, UsageError
from narratives.policy import anonymise
from narratives.policy import consent as ledger
from narratives.policy.sidecar import sidecar_path
from narratives.records.consent import Consent
from narratives.records.redactions import Term
from narratives.store import redactions
from narratives.workflow import takedown


def _confirm(question: str) -> None:
    """Ask on the terminal; "no" aborts. Without a terminal to ask on, a usage error that
    names --yes, not Click's bare "Aborted!"."""
    try:
        agreed = click.confirm(question)
    except click.Abort:
        if sys.stdin is not None and sys.stdin.isatty():
            raise  # Ctrl-C or Ctrl-D at the prompt: the user chose to stop
        raise UsageError(
            "no answer to the confirmation: standard input is not a terminal",
            hint="pass --yes to go ahead without asking",
        ) from None
    if not agreed:
        raise click.Abort()


def _when(value: str | None, option: str) -> datetime | date | None:
    if not value:
        return None
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option}: cannot read {value!r}", hint="write a date like 2027-06-30"
        ) from None


def _channels(value: str) -> list[str]:
    items = [c.strip().lower() for c in value.split(",") if c.strip()]
    bad = [c for c in items if c not in ledger.CHANNELS]
    if bad or not items:
        raise UsageError(
            f"--channels: unknown channel {', '.join(bad) or '(none)'}",
            hint=f"a comma-separated list of {', '.join(ledger.CHANNELS)}",
        )
    return items


def _print(c: Consent | None, narrative_id: str, terms: list[Term]) -> None:
    if c is None:
        console.print(f"[red]No consent recorded[/] for {narrative_id[:12]}: nothing may go out.")
        return
    colour = {"active": "green", "withdrawn": "red", "expired": "yellow"}[c.status()]
    table = Table(show_header=False, title=f"consent for {narrative_id[:12]}")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("status", f"[{colour}]{c.status()}[/]")
    table.add_row("given by", c.given_by)
    table.add_row("given at", f"{c.given_at:%Y-%m-%d %H:%M} UTC")
    table.add_row("method", c.method.replace("_", " "))
    table.add_row("channels", ", ".join(c.channels) or "none")
    table.add_row("narrator", "anonymous" if c.anonymous else "may be named")
    table.add_row("expires", f"{c.expires_at:%Y-%m-%d %H:%M} UTC" if c.expires_at else "never")
    if c.withdrawn_at:
        table.add_row("withdrawn", f"{c.withdrawn_at:%Y-%m-%d %H:%M} UTC")
    if c.notes:
        table.add_row("notes", c.notes)
    if c.anonymous and terms:
        table.add_row("hidden", ", ".join(sorted({t.text for t in terms})))
    console.print(table)
    report = c.takedown
    if report is not None:
        console.print(
            f"It covers less: taken down {len(report.withdrawn)} published, cancelled "
            f"{len(report.cancelled)} scheduled"
            + (
                f"; [yellow]unfinished, retried by the scheduler:[/] {len(report.errors)}"
                if report.errors
                else ""
            )
        )


@click.group()
def consent() -> None:
    """The narrator's consent: who agreed, to which channels, named or anonymous, until when."""


@consent.command("set")
@click.argument("narrative_id")
@click.option("--by", "given_by", required=True, help="Who gave consent (the narrator).")
@click.option(
    "--method",
    required=True,
    type=click.Choice(ledger.METHODS),
    help="How consent was given.",
)
@click.option("--channels", required=True, help=f"Comma-separated: {','.join(ledger.CHANNELS)}.")
@click.option(
    "--named/--anonymous",
    default=False,
    help="May the narrator be named? Default: anonymous (names are bleeped and replaced).",
)
@click.option("--expires", help="Date (or ISO time, UTC unless it says) the consent ends.")
@click.option("--given-at", help="When consent was given (default: now).")
@click.option("--notes", help="Anything else agreed.")
@actor_option
def set_cmd(narrative_id, given_by, method, channels, named, expires, given_at, notes, actor):
    """Record or replace the consent for NARRATIVE_ID."""
    ctx = get_context()
    nid = resolve_narrative_id(narrative_id)
    c = takedown.set_consent(
        ctx,
        nid,
        given_by=given_by,
        method=method,
        channels=_channels(channels),
        anonymous=not named,
        given_at=_when(given_at, "--given-at"),
        expires_at=_when(expires, "--expires"),
        notes=notes,
        actor=require_actor(actor),
    )
    _print(c, nid, [])


@consent.command("show")
@click.argument("narrative_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@read_only
def show(narrative_id: str, as_json: bool) -> None:
    """Show the consent recorded for NARRATIVE_ID (and what anonymised mode hides)."""
    ctx = get_context()
    nid = resolve_narrative_id(narrative_id)
    c = ledger.get_consent(ctx, nid)
    terms = anonymise.terms_for(ctx, nid)
    if as_json:
        echo_json(
            {
                "narrative_id": nid,
                "consent": c.to_dict() if c else None,
                "hidden_terms": [
                    {"text": t.text, "kind": t.kind, "source": t.source} for t in terms
                ],
                "voice_semitones": redactions.voice_disguise(ctx, nid),
            }
        )
        return
    _print(c, nid, terms)


@consent.command("import")
@click.argument("narrative_id")
@click.argument("sidecar", type=click.Path(dir_okay=False, path_type=Path))
@actor_option
def import_cmd(narrative_id: str, sidecar: Path, actor: str | None) -> None:
    """Record the consent in SIDECAR (a story.consent.toml file), replacing any recorded."""
    ctx = get_context()
    nid = resolve_narrative_id(narrative_id)
    if not sidecar_path(sidecar).is_file():
        raise UsageError(f"{sidecar}: no such consent file")
    c = takedown.import_consent(ctx, nid, sidecar, actor=require_actor(actor), replace=True)
    _print(c, nid, [])


@consent.command("withdraw")
@click.argument("narrative_id")
@click.option("--reason", required=True, help="Why (goes in the audit log).")
@click.option("--yes", is_flag=True, help="Do not ask first (a script without a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the takedown report as JSON.")
@actor_option
def withdraw(narrative_id: str, reason: str, yes: bool, as_json: bool, actor) -> None:
    """Withdraw consent: cancel scheduled posts, delete published ones, drop feed items.

    Asks first on a terminal; a script passes --yes.
    """
    ctx = get_context()
    nid = resolve_narrative_id(narrative_id)
    if not yes:
        _confirm(f"Withdraw consent for {nid[:12]} and take down everything published from it?")
    report = takedown.withdraw(ctx, nid, actor=require_actor(actor), reason=reason)
    if as_json:
        echo_json(report.to_dict())
    else:
        console.print(f"Consent for {nid[:12]} withdrawn.")
        console.print(f"  cancelled deliveries: {len(report.cancelled)}")
        console.print(f"  taken down: {len(report.withdrawn)}")
        for uri in report.deleted_posts:
            console.print(f"    deleted {uri}")
        for slug in report.feeds_rebuilt:
            console.print(f"  feed rebuilt: {slug}")
        for err in report.errors:
            console.print(f"  [red]not done:[/] {err}")
    if report.errors:
        click.echo(
            "Hint: run the withdrawal again once the problem is fixed; the scheduler also "
            "retries it.",
            err=True,
        )
        click.get_current_context().exit(EXIT_FAILED_ITEMS)


@consent.command("redact")
@click.argument("narrative_id")
@click.argument("terms", nargs=-1)
@click.option("--place", is_flag=True, help="The terms are places (shown as [place]).")
@click.option("--remove", is_flag=True, help="Stop hiding these terms.")
@actor_option
def redact(narrative_id, terms: tuple[str, ...], place: bool, remove: bool, actor) -> None:
    """Mark names or details to hide in anonymised mode (none given: list them)."""
    ctx = get_context()
    nid = resolve_narrative_id(narrative_id)
    for term in terms:
        if remove:
            redactions.unmark_term(ctx, nid, term, actor=require_actor(actor))
        else:
            kind = "place" if place else "name"
            redactions.mark_term(ctx, nid, term, kind=kind, actor=require_actor(actor))
    for t in anonymise.terms_for(ctx, nid):
        click.echo(f"{t.text}\t{t.placeholder}\t{t.source}")
    if terms:
        click.echo("Render and draft again (`narrative process --force`) to apply.", err=True)


@consent.command("disguise")
@click.argument("narrative_id")
@click.option("--semitones", type=float, default=-3.0, show_default=True, help="Pitch shift.")
@click.option("--off", is_flag=True, help="No voice disguise.")
@actor_option
def disguise(narrative_id: str, semitones: float, off: bool, actor) -> None:
    """Disguise the narrator's voice (pitch shift) in published videos."""
    ctx = get_context()
    nid = resolve_narrative_id(narrative_id)
    redactions.set_voice_disguise(ctx, nid, None if off else semitones, actor=require_actor(actor))
    click.echo("Voice disguise off." if off else f"Voice shifted by {semitones:+g} semitones.")
    click.echo("Render again (`narrative process --force`) to apply.", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(consent)
