"""Consent sidecar files: `story.consent.toml` beside `story.m4a`, read on ingest.

**A sidecar cannot resurrect consent.** Once withdrawn, a consent can only be replaced by one
given after the withdrawal, so re-processing a folder whose `story.consent.toml` still says yes
changes nothing. Importing on ingest never overwrites a recorded consent.

A sidecar may say how the anonymous narrator is heard: `voice = "synthetic"` (a shipped voice
re-creates their words), `"disguised"` (the recording, names bleeped) or `"campaign"` (the
campaign's setting). It is recorded with the consent (`store.redactions.set_voice_mode`) and
preferred over the campaign's (`policy.voice`); a sidecar without it leaves the choice as it is.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from narratives.core.errors import ConfigError
from narratives.policy.consent import ConsentInput, save_consent, validate_consent
from narratives.records.consent import Consent
from narratives.store.consents import load_consent
from narratives.store.context import Context
from narratives.store.redactions import VOICE_MODES, set_voice_mode

__all__ = [
    "SIDECAR_SUFFIX",
    "SIDECAR_CAMPAIGNS_KEY",
    "SIDECAR_VOICE_KEY",
    "sidecar_path",
    "load_sidecar",
    "sidecar_campaigns",
    "sidecar_voice",
    "import_sidecar",
]

log = logging.getLogger(__name__)

#: `story.m4a` has its consent in `story.consent.toml` beside it.
SIDECAR_SUFFIX = ".consent.toml"


def sidecar_path(recording: Path) -> Path:
    """`story.m4a` → `story.consent.toml`, beside it."""
    recording = Path(recording)
    if recording.name.endswith(SIDECAR_SUFFIX):
        return recording
    return recording.with_name(recording.stem + SIDECAR_SUFFIX)


#: A sidecar key that is not about consent: the campaigns the recording is for, handed to
#: `narratives.workflow.assignments` by the pipeline (see `sidecar_campaigns`).
SIDECAR_CAMPAIGNS_KEY = "campaigns"
#: The narrator's choice of voice for anonymous videos, recorded beside the consent
#: (`sidecar_voice`); "campaign" leaves it to the campaign.
SIDECAR_VOICE_KEY = "voice"
_CAMPAIGN_VOICE = "campaign"


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    path = sidecar_path(Path(path))
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read consent: {exc}") from None


def load_sidecar(path: Path) -> ConsentInput | None:
    """Read a consent sidecar (`story.consent.toml`, or the one beside `story.m4a`).

    None when there is no such file, or when it only names campaigns (no consent in it);
    ConfigError naming the file and key when it is invalid. The `campaigns` and `voice` keys
    are not consent fields: `sidecar_campaigns` and `sidecar_voice` read them.
    """
    path = sidecar_path(Path(path))
    data = _read_sidecar(path)
    if data is None:
        return None
    _voice_of(data, path)  # a bad `voice` is named here too
    data = {k: v for k, v in data.items() if k not in (SIDECAR_CAMPAIGNS_KEY, SIDECAR_VOICE_KEY)}
    if not data:
        return None
    return validate_consent(data, str(path))


def sidecar_campaigns(path: Path) -> list[str]:
    """The campaign slugs a sidecar names (`campaigns = ["slug", ...]`), in order, or [].

    Only the form is checked here (a list of strings); whether the slugs exist is for the
    caller (`campaign_assignments.check_slugs`). ConfigError naming the file and key."""
    path = sidecar_path(Path(path))
    data = _read_sidecar(path)
    if not data or SIDECAR_CAMPAIGNS_KEY not in data:
        return []
    value = data[SIDECAR_CAMPAIGNS_KEY]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(
            f"{path}: invalid sidecar\n  {SIDECAR_CAMPAIGNS_KEY}: must be a list of campaign "
            'slugs, like campaigns = ["emotional-equity"]'
        )
    return list(dict.fromkeys(v.strip() for v in value))


def sidecar_voice(path: Path) -> str | None:
    """The voice a sidecar chooses: "synthetic", "disguised" or "campaign" (the campaign's),
    or None when it has no `voice` key. ConfigError naming the file and key for another value."""
    path = sidecar_path(Path(path))
    data = _read_sidecar(path)
    return _voice_of(data, path) if data else None


def _voice_of(data: dict[str, Any], path: Path) -> str | None:
    if SIDECAR_VOICE_KEY not in data:
        return None
    value = data[SIDECAR_VOICE_KEY]
    allowed = (*VOICE_MODES, _CAMPAIGN_VOICE)
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise ConfigError(
            f"{path}: invalid sidecar\n  {SIDECAR_VOICE_KEY}: got {value!r}; must be one of "
            + ", ".join(f'"{v}"' for v in allowed)
            + ' (like voice = "synthetic": a shipped voice re-creates the narrator\'s words)'
        )
    return value.strip().lower()


def import_sidecar(
    ctx: Context,
    narrative_id: str,
    recording_path: Path,
    actor: str = "import",
    *,
    replace: bool = False,
    on_change: Callable[[Consent | None, Consent], object] | None = None,
) -> Consent | None:
    """Record the consent in the recording's sidecar; returns the consent now in force.

    Returns None when there is no sidecar and no consent recorded. Without `replace`, an
    already recorded consent is kept as it is (re-processing a folder never changes consent);
    with it, the sidecar replaces it (still refused if the old one was withdrawn later). The
    sidecar's `voice` is recorded when its consent is, and only then.

    `on_change(before, after)` runs once a consent is recorded: `workflow.takedown` passes
    its takedown of what the new consent no longer covers. Ingest passes none: without
    `replace` a consent is recorded only where none was, and with no consent nothing could
    have been scheduled.
    """
    path = sidecar_path(Path(recording_path))
    given = load_sidecar(path)
    # Checked before anything is recorded: a bad voice leaves no half-imported consent.
    voice = sidecar_voice(path) if given is not None else None
    with ctx.db.begin() as conn:
        current = load_consent(conn, narrative_id)
        if given is None:
            return current
        if current is not None and not replace:
            if _same(current, given):
                return current
            log.warning(
                "%s: consent already recorded for %s differs; kept (use `narrative consent "
                "import` to replace it)",
                path,
                narrative_id[:12],
            )
            return current
        after = save_consent(
            conn, narrative_id, given, actor=actor, action="consent.import", detail=str(path)
        )
    if voice is not None:
        mode = None if voice == _CAMPAIGN_VOICE else voice
        set_voice_mode(ctx, narrative_id, mode, actor=actor)
    if on_change is not None:
        on_change(current, after)
    return after


def _same(c: Consent, given: ConsentInput) -> bool:
    return (
        c.given_by == given.given_by
        and c.method == given.method
        and tuple(c.channels) == tuple(given.channels)
        and c.anonymous == given.anonymous
        and c.expires_at == given.expires_at
        and (c.notes or None) == (given.notes or None)
        and (given.given_at is None or c.given_at == given.given_at)
    )
