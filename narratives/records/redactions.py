"""What an anonymised narrative hides in its video: a record anonymisation produces and the
renderer reads, so neither needs the other."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Redactions"]


@dataclass(frozen=True)
class Redactions:
    """What an anonymised narrative hides: audio intervals (source seconds) bleeped with a
    1 kHz tone, and caption words replaced (matched case-insensitively, punctuation kept)."""

    intervals: Sequence[tuple[float, float]] = ()
    replacements: Mapping[str, str] = field(default_factory=dict)

    def replace(self, text: str) -> str:
        if not self.replacements:
            return text
        table = {k.casefold(): v for k, v in self.replacements.items()}

        def sub(m: re.Match[str]) -> str:
            return table.get(m.group(0).casefold(), m.group(0))

        return re.sub(r"\w+(?:['’]\w+)*", sub, text)
