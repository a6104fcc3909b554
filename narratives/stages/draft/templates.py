"""Post templates: the Jinja2 environment drafts are rendered in, the `---` line that splits a
thread, and checking a campaign's templates before any narrative is drafted.

Templates (`templates/posts/*.j2`) are rendered with autoescape off (posts are plain text; each
channel escapes at publish time) and StrictUndefined (a misspelt variable is an error, not a
silently empty post), in a sandbox. A Bluesky template may ask for a thread by putting a line
`---` between posts; an RSS template defines the blocks `title`, `summary` and `content`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, TypeVar

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from narratives.core.campaigns import BLUESKY, Campaign
from narratives.core.errors import ConfigError
from narratives.core.workspace import Workspace

__all__ = [
    "POST_SEPARATOR",
    "RSS_BLOCKS",
    "split_posts",
    "join_posts",
    "post_environment",
    "load_template",
    "render_block",
    "rendering",
    "item_link",
    "sample_variables",
    "check_template",
]

#: A line holding only this separates the posts of a thread (templates, editors, CLI).
POST_SEPARATOR = "---"
_SEPARATOR_LINE = re.compile(r"^[ \t]*-{3,}[ \t]*$", re.MULTILINE)
#: The blocks an RSS template defines, one per field of the item.
RSS_BLOCKS = ("title", "summary", "content")

_T = TypeVar("_T")


def split_posts(text: str) -> list[str]:
    """Split text at `---` lines into stripped, non-empty posts (no length check)."""
    posts = []
    for part in _SEPARATOR_LINE.split(text.replace("\r\n", "\n")):
        part = re.sub(r"\n{3,}", "\n\n", part.strip())
        if part:
            posts.append(part)
    return posts


def join_posts(posts: list[str]) -> str:
    """The inverse of `split_posts`, for editing a thread as one text."""
    return f"\n\n{POST_SEPARATOR}\n\n".join(posts)


def post_environment(workspace: Workspace) -> jinja2.Environment:
    """The Jinja2 environment for post templates: plain text, strict, sandboxed."""
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(workspace.templates_dir)),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def load_template(
    env: jinja2.Environment, name: str, campaign: Campaign
) -> tuple[jinja2.Template, str]:
    """(the template, the SHA-256 of its source); ConfigError when missing or malformed."""
    try:
        source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        return env.get_template(name), hashlib.sha256(source.encode("utf-8")).hexdigest()
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(
            f"campaign {campaign.slug}: template {name!r} not found in templates/",
            hint="create it or fix `template` under [channels.*] in the campaign file",
        ) from exc
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"templates/{name}:{exc.lineno}: {exc.message}") from exc


def _template_line(exc: BaseException, name: str) -> str:
    """':12' for the template line the error came from (Jinja2 puts template frames in the
    traceback under the template's file name), or ''."""
    tb, line = exc.__traceback__, ""
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(name):
            line = f":{tb.tb_lineno}"
        tb = tb.tb_next
    return line


def rendering(campaign: Campaign, name: str, fn: Callable[..., _T], *args: Any) -> _T:
    """Render, turning any template failure into a ConfigError naming the template and line:
    an undefined or misspelt variable, a missing include, a sandbox refusal, `title + 1`."""
    try:
        return fn(*args)
    except ConfigError:
        raise
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError) as exc:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise ConfigError(
            f"templates/{name}{_template_line(exc, name)} (campaign {campaign.slug}): {message}",
            hint="see `narrative campaigns check` and the variables listed in templates/posts/",
        ) from exc


def render_block(template: jinja2.Template, name: str, variables: dict[str, Any]) -> str:
    """One block of an RSS template, blank runs squeezed."""
    if name not in template.blocks:
        raise ConfigError(f"RSS template {template.name!r} needs a `{{% block {name} %}}`")
    text = "".join(template.blocks[name](template.new_context(variables)))
    return re.sub(r"\n{3,}", "\n\n", text.strip())


def item_link(campaign: Campaign, narrative_id: str) -> str:
    # A stable per-story address under the campaign's public site; ids are hashes of the audio.
    return f"{campaign.link.rstrip('/')}/{narrative_id[:16]}"


def sample_variables(campaign: Campaign) -> dict[str, Any]:
    """Variables like a real narrative's, for checking a campaign's templates before use."""
    return {
        "narrative_id": "0" * 64,
        "title": "A sample title",
        "quote": "A sample quote.",
        "summary": "A sample summary.",
        "transcript": "A sample transcript.\n\nIn two paragraphs.",
        "language": campaign.language,
        "hashtags": [f"#{h}" for h in campaign.hashtags],
        "tags": [t.name for t in campaign.tags[:1]],
        "link": item_link(campaign, "0" * 64),
        "content_warning": "grief",
        "ai_disclosure": campaign.ai_disclosure,
        "campaign": {
            "slug": campaign.slug,
            "name": campaign.name,
            "owner": campaign.owner,
            "link": campaign.link,
        },
        "has_video": True,
        "video_cut": True,
        "video_length": "0:45",
        "recording_length": "3:10",
        "voice_recreated": True,
    }


def check_template(env: jinja2.Environment, campaign: Campaign, channel: str) -> None:
    """Load and render a campaign's template for `channel` with sample variables, so a
    misspelt variable or a broken expression shows before any narrative is drafted."""
    name = getattr(campaign.channels, channel).template
    template, _ = load_template(env, name, campaign)
    variables = sample_variables(campaign)
    if channel == BLUESKY:
        rendering(campaign, name, template.render, variables)
    else:
        for key in RSS_BLOCKS:
            rendering(campaign, name, render_block, template, key, variables)
