"""`narrative consent ...`: record, show, import and withdraw a narrator's consent, and mark
what anonymised mode hides (`redact`, `disguise`) and how the narrator is heard (`voice`)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import click
from rich.table import Table

from narratives.cli._common import (
    actor_option,
    confirm_or_yes,
    console,
    echo_json,
    get_context,
    read_only,
    require_actor,
    resolve_narrative_id,
)
from narratives.cli.data import print_erasure
from narratives.core.errors import EXIT_FAILED_ITEMS, UsageError
from narratives.policy import anonymise
from narratives.policy import consent as ledger
from narratives.policy.sidecar import sidecar_path
from narratives.records.consent import Consent
from narratives.records.redactions import Term
from narratives.store import redactions
from narratives.workflow import erasure, takedown


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


#: `narrative consent voice` choices, as `consent show` words them.
_VOICE_WORDS = {
    "synthetic": "synthetic (a shipped voice re-creates their words; narrator's choice)",
    "disguised": "disguised (the recording, names bleeped; narrator's choice)",
    None: "the campaign's setting",
}


def _print(
    c: Consent | None, narrative_id: str, terms: list[Term], voice: str | None = None
) -> None:
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
    if c.anonymous:
        table.add_row("voice", _VOICE_WORDS.get(voice, str(voice)))
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
                # The narrator's choice ("synthetic", "disguised"), or null: the campaign's.
                "voice_mode": redactions.voice_mode(ctx, nid),
            }
        )
        return
    _print(c, nid, terms, redactions.voice_mode(ctx, nid))


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
@click.option(
    "--erase",
    "then_erase",
    is_flag=True,
    help="Then erase the narrator's data too (`narrative erase`): recording, transcripts, "
    "videos, drafts.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the takedown report as JSON.")
@actor_option
def withdraw(
    narrative_id: str, reason: str, yes: bool, then_erase: bool, as_json: bool, actor
) -> None:
    """Withdraw consent: cancel scheduled posts, delete published ones, drop feed items.

    With --erase, then erase the narrator's data (as `narrative erase`) once everything is
    down (with --json its report is a second JSON line); without it, the erase command is
    printed. Asks first on a terminal; a script passes --yes.
    """
    ctx = get_context()
    nid = resolve_narrative_id(narrative_id)
    if not yes:
        also = " and then erase the recording and everything made from it" if then_erase else ""
        confirm_or_yes(
            f"Withdraw consent for {nid[:12]} and take down everything published from it{also}?"
        )
    report = takedown.withdraw(ctx, nid, actor=require_actor(actor), reason=reason)
    if as_json:
        echo_json(report.to_dict())
    else:
        console.print(f"Consent for {nid[:12]} withdrawn.")
        console.print(f"  cancelled deliveries: {len(report.cancelled)}")
        console.print(f"  taken down: {len(report.withdrawn)}")
        if report.pending:
            console.print(
                f"  [yellow]pending:[/] {len(report.pending)} (being published right now; "
                "the publisher takes them down itself: check with `narrative consent show "
                f"{nid[:12]}` or run the withdrawal again)"
            )
        for uri in report.deleted_posts:
            console.print(f"    deleted {uri}")
        for slug in report.feeds_rebuilt:
            console.print(f"  feed rebuilt: {slug} (the feeds `narrative serve` publishes)")
        if report.feeds_rebuilt:
            # Static copies live wherever `feeds build` wrote them; the workspace does not
            # track them, so they are named here for the user to rebuild (issue 19).
            slugs = " ".join(f"--campaign {s}" for s in report.feeds_rebuilt)
            console.print(
                "  [yellow]static exports need a rebuild:[/] a copy made with `narrative feeds "
                f"build DIR` still lists the item until you run `narrative feeds build DIR {slugs}`"
                " again for each DIR"
            )
        for err in report.errors:
            console.print(f"  [red]not done:[/] {err}")
    if report.errors:
        click.echo(
            "Hint: run the withdrawal again once the problem is fixed; the scheduler also "
            "retries it.",
            err=True,
        )
        click.get_current_context().exit(EXIT_FAILED_ITEMS)
    if then_erase:
        erased = erasure.erase(ctx, nid, actor=require_actor(actor))
        if as_json:
            echo_json(erased.to_dict())
        else:
            print_erasure(erased)
    elif not as_json:
        console.print(
            f"The recording, transcripts and videos are still kept; to erase them too: "
            f"`narrative erase {nid[:12]}`",
            highlight=False,
        )


@consent.command("expire")
@click.option("--json", "as_json", is_flag=True, help="Print one takedown report per line.")
def expire_cmd(as_json: bool) -> None:
    """Take down now what expired consents no longer allow, and finish unfinished takedowns.

    The scheduler does this on every sync (about once a minute); without a scheduler running,
    run this from cron (e.g. every 5 minutes). Exit 1 if a takedown could not finish.
    """
    reports = takedown.expire_due(get_context(), actor="expiry")
    for r in reports:
        if as_json:
            echo_json(r.to_dict())
        else:
            console.print(
                f"{r.narrative_id[:12]} ({r.action}: {r.reason}): cancelled {len(r.cancelled)}, "
                f"taken down {len(r.withdrawn)}, pending {len(r.pending)}"
                + (f", not done: {'; '.join(r.errors)}" if r.errors else "")
            )
    if not reports and not as_json:
        console.print("Nothing has expired.")
    if any(r.errors for r in reports):
        click.get_current_context().exit(EXIT_FAILED_ITEMS)


@consent.command("redact")
@click.argument("narrative_id")
@click.argument("terms", nargs=-1)
@click.option("--place", is_flag=True, help="The terms are places (shown as [place]).")
@click.option("--remove", is_flag=True, help="Stop hiding these terms.")
@actor_option
def redact(narrative_id, terms: tuple[str, ...], place: bool, remove: bool, actor) -> None:
    """Mark names or details to hide in anonymised mode (none given: list them).

    A term is matched however it is written: case, accents, a possessive, spelled out
    ("D. M. I. T. R. I." also hides "Dmitri") or with inner full stops ("St. Ives"). A single
    letter, a common word or a title alone ("St") is refused with the reason (exit 2).
    """
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


@consent.command("voice")
@click.argument("narrative_id")
@click.argument("choice", type=click.Choice(["synthetic", "disguised", "campaign"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@actor_option
def voice_cmd(narrative_id: str, choice: str, as_json: bool, actor) -> None:
    """How the anonymous narrator is heard in published videos, as their consent chooses:
    synthetic (a shipped voice speaks their redacted words; no sample of the recording is
    published), disguised (the recording, names bleeped, pitch shifted if `disguise` is set),
    or campaign (the campaign's `voice` setting). Preferred over the campaign's; a named
    narrator is heard as recorded. Audited; the videos are rendered again when next made."""
    ctx = get_context()
    nid = resolve_narrative_id(narrative_id)
    mode = None if choice == "campaign" else choice
    if mode == "synthetic":
        # The voice package is checked now, not first when a video is made.
        from narratives.engines.tts import check_voice

        check_voice()
    changed = redactions.set_voice_mode(ctx, nid, mode, actor=require_actor(actor))
    if as_json:
        echo_json({"narrative_id": nid, "voice_mode": mode, "changed": changed})
    else:
        click.echo(f"Voice for {nid[:12]}: {_VOICE_WORDS[mode]}.")
    recorded = ledger.get_consent(ctx, nid)
    if recorded is not None and not recorded.anonymous and not as_json:
        click.echo("The narrator may be named, so they are heard as recorded for now.", err=True)
    if changed:
        click.echo(
            f"Render again (`narrative render {nid[:12]}`) to apply; drafts made after that "
            "follow the new video.",
            err=True,
        )


def register(cli: click.Group) -> None:
    cli.add_command(consent)
