"""Whose voice a published video carries, and what the synthetic voice says for a hidden term.

A campaign's `voice` setting applies to anonymous narrators only (a named narrator is heard
as recorded):

- `disguised` (the default): the recorded voice, names bleeped with a tone, and the pitch
  shifted if an editor asked (`narrative consent disguise`). Light, but a determined attacker
  can still recognise the speaker.
- `synthetic`: a shipped neural voice (`engines.tts`) speaks the redacted transcript; no sample
  of the recorded voice is published, so a misheard name cannot leak through the audio.

The narrator's consent can make its own choice (`narrative consent voice`, or `voice = ...` in
the consent sidecar, kept by `store.redactions.set_voice_mode`). The stronger protection wins:
a narrator may ask for the synthetic voice in a disguised campaign, but a campaign that chose the
synthetic voice keeps it for every anonymous narrator (a consent record, typed in by staff, does
not lower a campaign's protection). A named narrator is still heard as recorded.

The synthetic voice says "someone" for `[name]` and "somewhere" for `[place]`: a neutral word
keeps the sentence whole, where a tone would sound like a fault; captions still show the
placeholder. No IO here.
"""

from __future__ import annotations

import re

from narratives.core.campaigns import Campaign

__all__ = ["DISGUISED", "ORIGINAL", "SPOKEN", "SYNTHETIC", "published_voice", "spoken"]

ORIGINAL, DISGUISED, SYNTHETIC = "original", "disguised", "synthetic"

#: Placeholder -> what the synthetic voice says in its place.
SPOKEN = {"[name]": "someone", "[place]": "somewhere"}
#: Any other bracketed placeholder a later kind of term may bring.
_OTHER = "something"
_PLACEHOLDER = re.compile(r"\[[^\[\]\s]{1,20}\]")


def published_voice(campaign: Campaign, anonymous: bool, chosen: str | None = None) -> str:
    """`original` for a named narrator; else `synthetic` when the campaign or the narrator's
    own choice (`chosen`, from the consent) says so, the stronger protection winning; else
    `disguised`."""
    if chosen not in (None, DISGUISED, SYNTHETIC):
        raise ValueError(f"unknown voice {chosen!r}: {DISGUISED!r} or {SYNTHETIC!r}")
    if not anonymous:
        return ORIGINAL
    return SYNTHETIC if SYNTHETIC in (chosen, campaign.voice) else DISGUISED


def spoken(text: str) -> str:
    """A word as the synthetic voice should say it: "[name]'s," -> "someone's,"."""
    return _PLACEHOLDER.sub(lambda m: SPOKEN.get(m.group(0).lower(), _OTHER), text)
