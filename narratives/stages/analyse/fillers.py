"""Filler words trimmed from quoted speech ("um", ", you know,", a leading "So,").

The same words go whether the whole transcript or one sentence of it is trimmed, so a trimmed
sentence stays a substring of the trimmed transcript.
"""

from __future__ import annotations

import re

__all__ = ["trim_fillers"]

_HESITATION = r"(?:u+m+|u+h+|e+r+m+|e+r+|h+m+|m+h?m+)"
# A run of discourse markers and hesitations opening a sentence ("So, um, I work nights").
# Markers that are ordinary words ("so many", "well done", "I mean it") need their comma.
_OPENING = re.compile(
    r"(?:^|(?<=[.!?]\s))"
    rf"(?:(?:(?:so|well|okay|ok|like|you know|i mean|anyway),|{_HESITATION}\b[,.]?)\s+)+"
    r"(\w)",
    re.IGNORECASE,
)
_HESITATION_MID = re.compile(
    rf"(?:,\s*)?(?<![\w'-]){_HESITATION}(?![\w'-])(?:\s*,)?", re.IGNORECASE
)
# ", you know," between clauses keeps one comma; ", you know." at the end keeps none.
_YOU_KNOW = re.compile(r",\s*(?:you know|i mean)(?:(\s*,)|(?=\s*[.!?]))", re.IGNORECASE)


def trim_fillers(text: str) -> str:
    """Remove filler words ("um", "uh", ", you know,", a leading "So,") without changing meaning.

    Applied to a whole transcript or to one sentence of it, it trims the same words, so a trimmed
    sentence is a substring of the trimmed transcript.
    """
    out = _OPENING.sub(lambda m: m.group(1).upper(), text)
    out = _HESITATION_MID.sub(" ", out)
    out = _YOU_KNOW.sub(lambda m: "," if m.group(1) else "", out)
    out = re.sub(r"\s+", " ", out)
    out = re.sub(r"\s+([,.!?;:])", r"\1", out)
    out = re.sub(r",([.!?;:])", r"\1", out)
    out = re.sub(r"^[\s,.;:]+", "", out)
    # A hesitation removed at a sentence's start leaves a lowercase letter behind.
    out = re.sub(r"(^|[.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), out)
    return out.strip()
