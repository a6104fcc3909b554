"""`narrative campaigns list|show|check|update`: the campaign definitions in `campaigns/*.toml`."""

from __future__ import annotations

import click
import jinja2
from rich.table import Table

from narratives.cli._common import console, echo_json, get_context, read_only
from narratives.core.campaigns import Campaign, get_campaign, load_campaign_file
from narratives.core.errors import EXIT_FAILED_ITEMS, EXIT_USAGE, ConfigError, ModelNotAvailable
from narratives.records.video import campaign_formats
from narratives.stages.draft.templates import check_template, post_environment


@click.group()
def campaigns() -> None:
    """Campaigns: who runs them, their tags, channels and posting slots."""


@campaigns.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@read_only
def list_(as_json: bool) -> None:
    """List the workspace's campaigns."""
    ctx = get_context()
    found, errors = _load_all(ctx)
    if as_json:
        for c in found:
            echo_json(_summary(c))
    else:
        table = Table("slug", "name", "owner", "channels", "tags", box=None)
        for c in found:
            table.add_row(
                c.slug,
                c.name,
                c.owner,
                ", ".join(c.channel_names),
                ", ".join(t.name for t in c.tags),
            )
        console.print(table)
    for message in errors:
        click.secho(f"Error: {message}", fg="red", err=True)
    if errors:
        raise SystemExit(EXIT_USAGE)


@campaigns.command()
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True, help="The whole campaign as JSON.")
@read_only
def show(slug: str, as_json: bool) -> None:
    """Show one campaign in full."""
    ctx = get_context()
    c = get_campaign(ctx.workspace, slug)
    if as_json:
        echo_json(c.model_dump(mode="json"))
        return
    click.echo(f"{c.name} ({c.slug}), run by {c.owner}")
    click.echo(f"  {c.description}")
    click.echo(f"  link: {c.link}   language: {c.language}")
    click.echo(f"  hashtags: {' '.join('#' + h for h in c.hashtags) or '-'}")
    click.echo(f"  AI disclosure: {c.ai_disclosure or '-'}")
    click.echo(f"  tags (a narrative is on topic from {c.tag_threshold:.2f}):")
    for t in c.tags:
        click.echo(f"    {t.name}: {t.description}")
    click.echo(f"  slots ({c.slots.timezone}): {', '.join(c.slots.weekly) or '-'}")
    if c.channels.bluesky:
        b = c.channels.bluesky
        click.echo(
            f"  bluesky: @{b.handle} on {b.service}, password in ${b.password_env}, "
            f"template {b.template}"
        )
    if c.channels.rss:
        r = c.channels.rss
        click.echo(f"  rss: {r.title!r} by {r.author}, template {r.template}")
    formats = ", ".join(campaign_formats(c)) or "none (no channel)"
    size = c.look.resolution or ctx.settings.render.resolution
    rate = c.look.fps or ctx.settings.render.fps
    click.echo(f"  video: {formats}, {size} px, {rate} fps, at most {c.max_video_seconds:g} s")
    click.echo(f"  anonymous narrators' voice: {c.voice}")


@campaigns.command()
@read_only
def check() -> None:
    """Validate every campaign file and its templates; exit 2 on any error."""
    # The analysis modules load NumPy and scikit-learn: only for `check`, not for `--help`.
    from narratives.stages.analyse.content_notes import note_specs
    from narratives.stages.analyse.tagging import EXAMPLES_FILE, check_examples, read_examples
    from narratives.workflow.upgrade import stale_defaults

    ctx = get_context()
    found, errors = _load_all(ctx)
    env = post_environment(ctx.workspace)
    for c in found:
        for channel in c.channel_names:
            name = getattr(c.channels, channel).template
            try:
                # Rendered with sample variables, not only compiled: a misspelt variable
                # or a bad expression is found here rather than when drafting.
                check_template(env, c, channel)
            except ConfigError as exc:
                missing = isinstance(exc.__cause__, jinja2.TemplateNotFound) and (
                    exc.__cause__.name == name
                )
                if missing:
                    errors.append(f"{c.path}: channels.{channel}.template: no templates/{name}")
                else:
                    errors.append(str(exc))
    errors += _voice_errors(found)
    slugs = [c.slug for c in found]
    for slug in sorted({s for s in slugs if slugs.count(s) > 1}):
        errors.append(f"campaign slug {slug!r} is used twice")
    remarks: list[str] = []
    examples, found_errors = read_examples(ctx.workspace.campaigns_dir)
    errors += found_errors
    notes = [n.name for n in note_specs(ctx.settings.analyse)]
    label_errors, remarks = check_examples(examples, found, notes)
    errors += label_errors
    remarks += stale_defaults(ctx.workspace, found)
    for remark in remarks:
        click.echo(f"Note: {remark}", err=True)
    for message in errors:
        click.secho(f"Error: {message}", fg="red", err=True)
    if not found and not errors:
        click.echo("No campaigns in campaigns/.")
    if errors:
        raise SystemExit(EXIT_USAGE)
    click.echo(f"{len(found)} campaign(s) OK: {', '.join(slugs)}")
    if examples:
        click.echo(f"{len(examples)} example stories in campaigns/{EXAMPLES_FILE}")


@campaigns.command()
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="What changed, as one JSON object.")
def update(dry_run: bool, as_json: bool) -> None:
    """Take this version's example stories and tag thresholds where the workspace still has
    an earlier version's.

    The examples (campaigns/examples.jsonl) and each campaign's tag_threshold are calibrated
    together; a workspace made by an earlier version keeps its copies when the package is
    upgraded. Example lines an earlier version shipped are replaced by this version's, and a
    tag_threshold still at an earlier version's default is set to this one's. Lines you added
    or relabelled, and thresholds you chose, are kept. Each changed file is copied aside first
    (NAME.before-update-TIME); a replaced file keeps its mode. Stories processed before keep
    their tags until processed again.
    Exit code 0, also when nothing needed changing; 1 when a threshold must be set by hand; 2
    when a campaign file does not load; 9 when a file cannot be written (the message says
    which were already updated and where the copies are).
    """
    from narratives.workflow.upgrade import update_defaults

    ctx = get_context()
    found, errors = _load_all(ctx)
    if errors:
        for message in errors:
            click.secho(f"Error: {message}", fg="red", err=True)
        raise SystemExit(EXIT_USAGE)
    result = update_defaults(ctx.workspace, found, dry_run=dry_run)
    if as_json:
        echo_json(result.to_json())
    else:
        _say_update(result)
    if result.by_hand:
        raise SystemExit(EXIT_FAILED_ITEMS)


def _say_update(result) -> None:
    would = "would be " if result.dry_run else ""
    for t in result.by_hand:
        click.secho(
            f"{t.path}: tag_threshold {t.before:g} is an earlier version's default, written in "
            f"a way this does not edit: set it to {t.after:g} by hand",
            fg="yellow",
            err=True,
        )
    if not result.changed:
        if not result.by_hand:
            click.echo("Nothing to update: no earlier version's example stories or thresholds.")
        return
    if result.added or result.removed:
        click.echo(
            f"campaigns/examples.jsonl: {result.added} example stories {would}added, "
            f"{result.removed} {would}removed, {result.kept_own} of your own kept"
        )
    for t in result.thresholds:
        click.echo(f"{t.path}: tag_threshold {t.before:g} {would}set to {t.after:g}")
    for b in result.backups:
        click.echo(f"the file as it was: {b}")
    if not result.dry_run:
        click.echo(
            "Stories processed before keep their tags and campaigns until processed again "
            "(`narrative process --force PATHS`)."
        )


def _voice_errors(found: list[Campaign]) -> list[str]:
    """A campaign asking for the synthetic voice needs the voice package, intact (its
    digests are checked here, not first when a video is made)."""
    synthetic = [c for c in found if c.voice == "synthetic"]
    if not synthetic:
        return []
    # The TTS adapter is only needed when a campaign asks for it.
    from narratives.engines.tts import check_voice

    try:
        check_voice()
    except ModelNotAvailable as exc:
        return [
            f'{c.path}: voice = "synthetic": {exc}' + (f" ({exc.hint})" if exc.hint else "")
            for c in synthetic
        ]
    return []


def _load_all(ctx) -> tuple[list[Campaign], list[str]]:
    """Every valid campaign, and the error of every invalid file (instead of stopping at one)."""
    found, errors = [], []
    folder = ctx.workspace.campaigns_dir
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        try:
            found.append(load_campaign_file(path))
        except ConfigError as exc:
            errors.append(str(exc))
    return found, errors


def _summary(c: Campaign) -> dict:
    return {
        "slug": c.slug,
        "name": c.name,
        "owner": c.owner,
        "channels": c.channel_names,
        "tags": [t.name for t in c.tags],
        "timezone": c.slots.timezone,
    }


def register(cli: click.Group) -> None:
    cli.add_command(campaigns)
