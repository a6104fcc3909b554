"""Fidelity (issue 7): an editor's edit that changes the narrator's quoted sentence is marked
"edited" on the review page.

The check is deliberately plain: the generated draft (`drafts.generated`) quoted the analysis
quote word for word, and the current text (`drafts.content`) no longer does. Whitespace does not
count; anything else, even one changed letter, does, because the quote must trace back to what
was said.
"""

from __future__ import annotations

from typing import Any

from narratives.policy import anonymise
from narratives.records.analysis import Analysis
from narratives.records.draft import Draft
from narratives.store import redactions

__all__ = ["quote_edited", "quote_forms"]


def _flat(text: str) -> str:
    return " ".join(text.split())


def _public_text(content: dict[str, Any] | None) -> str:
    content = content or {}
    parts = [p.get("text", "") for p in content.get("posts") or [] if isinstance(p, dict)]
    parts += [str(content.get(k) or "") for k in ("title", "summary", "content")]
    return _flat(" ".join(parts))


def quote_edited(draft: Draft, quotes: list[str]) -> bool:
    """True when the generated draft quoted the narrator and the current text no longer does
    word for word (issue 7: an edit that changes a quoted sentence is marked "edited").

    `quotes` are the analysis quote as written and as anonymised mode redacts it; the first one
    the generated text contains is the one checked. Whitespace differences do not count.
    """
    generated, current = _public_text(draft.generated), _public_text(draft.content)
    for quote in quotes:
        quote = _flat(quote)
        if quote and quote in generated:
            return quote not in current
    return False


def quote_forms(ctx: Any, narrative_id: str, analysis: Analysis | None) -> list[str]:
    """The analysis quote, and the same with the names anonymised mode hides replaced."""
    quote = analysis.quote.text if analysis is not None and analysis.quote else ""
    if not quote:
        return []
    terms = anonymise.analysis_terms(analysis) + redactions.marked_terms(ctx, narrative_id)
    redacted = anonymise.redact_text(quote, terms)
    return [quote] if redacted == quote else [quote, redacted]
