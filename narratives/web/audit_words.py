"""The audit log in words: what each row did ("approved", "moved a scheduled post"), with its
before and after ("State: Pending review → Approved", "Channels: bluesky → bluesky, rss") and a
text diff for edits and transcript corrections; and the model's tag scores from before the
editors corrected them (a correction re-scores the story, so the stored score moves).

The pages never show raw keys such as `consent.set`: an action this module does not know
still reads as words ("consent set").
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from narratives.store import audit
from narratives.store.context import Context
from narratives.web.templating import DELIVERY_LABELS, STATE_LABELS

__all__ = [
    "AuditRow",
    "Revision",
    "audit_row",
    "revisions",
    "revision_diff",
    "tag_model_scores",
    "ACTION_WORDS",
]

#: Every action the stores write, as the pages say it.
ACTION_WORDS = {
    "draft.create": "created the draft",
    "draft.regenerate": "regenerated",
    "draft.edit": "edited",
    "draft.approve": "approved",
    "draft.reject": "rejected",
    "draft.request_changes": "requested changes",
    "draft.comment": "commented",
    "draft.reopen": "sent it back to review",
    "draft.send_back": "sent it back to review",
    "campaign.assign": "assigned a campaign",
    "campaign.unassign": "unassigned a campaign",
    "consent.set": "recorded the consent",
    "consent.import": "took the consent from its sidecar file",
    "consent.withdraw": "withdrew consent",
    "tag.correct": "corrected a tag",
    "transcript.correct": "corrected the transcript",
    "transcript.discard": "dropped the transcript correction",
    "redaction.add": "marked a term to hide",
    "redaction.remove": "stopped hiding a term",
    "redaction.voice": "changed the voice disguise",
    "redaction.voice_mode": "chose how the narrator is heard",
    "narrative.erase": "erased the story",
    "narrative.export": "exported the story",
    "narrative.take_in_again": "took the story in again",
    "schedule": "scheduled a post",
    "cancel": "cancelled a scheduled post",
    "move": "moved a scheduled post",
    "publish": "published",
    "publish_failed": "publishing failed",
    "recover": "took back a stuck post",
    "missed": "marked a post missed",
    "withdraw": "took a post down",
}

_FIELD_LABELS = {
    "state": "State",
    "scheduled_at": "Time",
    "retry_at": "Retry",
    "given_by": "Given by",
    "given_at": "Given on",
    "method": "How",
    "channels": "Channels",
    "anonymous": "Anonymous",
    "expires_at": "Expires",
    "withdrawn_at": "Withdrawn",
    "notes": "Notes",
    "campaign": "Campaign",
    "assigned": "Assigned",
    "source": "From",
    "reason": "Reason",
}
#: Shown as a diff, or not at all (bookkeeping, or said by the action itself).
_SKIP = {"content", "text", "body", "version", "revision", "draft_id", "words", "changed"}
_MAX_VALUE = 80


@dataclass
class AuditRow:
    """One audit entry as the draft page's history table shows it."""

    at: datetime
    actor: str
    #: What was done, in words.
    action: str
    #: "" for the draft itself, else what the entry is about ("story", "delivery 3").
    scope: str
    #: Before → after of each field that changed, in words.
    changes: list[str]
    #: What an edit or a transcript correction changed, as unified-diff lines.
    diff: str
    detail: str | None


def _value(key: str, value: Any) -> str:
    if value is None or value == "" or value == []:
        return "none"
    if key == "state":
        return STATE_LABELS.get(value) or DELIVERY_LABELS.get(value) or str(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:.2f}"
    text = str(value)
    if key.endswith("_at") and len(text) >= 16 and text[4] == "-" and text[10] in "T ":
        return text[:10] + " " + text[11:16] + " UTC"
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def _changes(action: str, before: Any, after: Any) -> list[str]:
    if action == "tag.correct" and isinstance(after, dict):
        verdict = "applies" if after.get("applies") else "does not apply"
        score = before.get("score") if isinstance(before, dict) else None
        model = f"model score {score:.2f}" if isinstance(score, int | float) else "no score"
        return [f"{after.get('tag')} ({after.get('campaign')}): {model} · editor: {verdict}"]
    if action in ("redaction.add", "redaction.remove"):
        row = after if isinstance(after, dict) else before if isinstance(before, dict) else {}
        term = row.get("text")
        return [f"“{_value('term', term)}” ({row.get('kind', 'name')})"] if term else []
    if action == "redaction.voice":
        return [f"Voice disguise: {_value('voice', before)} → {_value('voice', after)}"]
    before = before if isinstance(before, dict) else {}
    after = after if isinstance(after, dict) else {}
    out = []
    if "state" in after and before.get("state") != after.get("state"):
        old = _value("state", before.get("state")) if before.get("state") else "new"
        out.append(f"{old} → {_value('state', after['state'])}")
    if action == "draft.comment" and after.get("body"):
        out.append(f"“{_value('body', after['body'])}”")
    for key in sorted(set(before) | set(after)):
        if key in _SKIP or key == "state" or before.get(key) == after.get(key):
            continue
        label = _FIELD_LABELS.get(key, key.replace("_", " ").capitalize())
        if key not in before and before:
            out.append(f"{label}: {_value(key, after.get(key))}")
        elif not before:
            if after.get(key) not in (None, "", []):
                out.append(f"{label}: {_value(key, after.get(key))}")
        else:
            out.append(f"{label}: {_value(key, before.get(key))} → {_value(key, after.get(key))}")
    return out[:8]


def _content_lines(content: Any) -> list[str]:
    if not isinstance(content, dict):
        return [str(content)]
    if "posts" in content:
        texts = [p.get("text", "") if isinstance(p, dict) else str(p) for p in content["posts"]]
        return "\n---\n".join(texts).splitlines()
    parts = [str(content.get(k) or "") for k in ("title", "summary", "content")]
    return "\n---\n".join(parts).splitlines()


def _text_diff(before: list[str], after: list[str]) -> str:
    """What an edit changed, as unified-diff lines (- removed, + added)."""
    lines = difflib.unified_diff(before, after, "before", "after", n=1, lineterm="")
    return "\n".join(list(lines)[2:])


def audit_row(entry: dict[str, Any]) -> AuditRow:
    """An audit entry (a row of `audit_log` as a dict) in words."""
    action = entry.get("action") or ""
    before, after = entry.get("before"), entry.get("after")
    changes = _changes(action, before, after)
    diff = ""
    detail = entry.get("detail")
    b = before if isinstance(before, dict) else {}
    a = after if isinstance(after, dict) else {}
    if "content" in b and "content" in a and b["content"] != a["content"]:
        changes.insert(0, "text changed")
        diff = _text_diff(_content_lines(b["content"]), _content_lines(a["content"]))
    if action.startswith("transcript."):
        diff = _text_diff(str(b.get("text", "")).splitlines(), str(a.get("text", "")).splitlines())
        if isinstance(a.get("changed"), int):
            n = a["changed"]
            changes.append(f"{n} word{'s' if n != 1 else ''} changed")
        detail = None  # the diff says it
    kind = entry.get("object_type", "draft")
    scope = {"delivery": f"delivery {entry.get('object_id')}", "narrative": "story"}
    return AuditRow(
        at=entry["at"],
        actor=entry["actor"],
        action=ACTION_WORDS.get(action, action.replace(".", " ").replace("_", " ")),
        scope=scope.get(kind, kind if kind != "draft" else ""),
        changes=changes,
        diff=diff,
        detail=detail,
    )


def tag_model_scores(ctx: Context, narrative_id: str, campaign: str) -> dict[str, float]:
    """The model's score of each tag an editor corrected, as it was before the first
    correction (the audit row's `before`): shown beside the editor's verdict."""
    with ctx.db.connect() as conn:
        rows = audit.history(conn, "narrative", narrative_id)
    out: dict[str, float] = {}
    for r in rows:
        after, before = r.get("after"), r.get("before")
        if r["action"] != "tag.correct" or not isinstance(after, dict):
            continue
        if after.get("campaign") != campaign or after.get("tag") in out:
            continue
        score = before.get("score") if isinstance(before, dict) else None
        if isinstance(score, int | float) and before.get("corrected") is None:
            out[after["tag"]] = float(score)
    return out


@dataclass
class Revision:
    """One text of a draft, as an audit row that set its content left it."""

    #: 1 for the first text, counting only rows that changed it.
    number: int
    at: datetime
    actor: str
    #: What made it, in words ("created the draft", "edited").
    action: str
    lines: list[str]


def revisions(entries: list[dict[str, Any]]) -> list[Revision]:
    """A draft's texts in order, from its audit log (oldest first, as `review.history`
    returns it): every draft row whose `after` carries a `content`; a row that left the text
    as it was (a regeneration that produced the same words) is not a new revision."""
    out: list[Revision] = []
    for entry in entries:
        if entry.get("object_type", "draft") != "draft":
            continue
        after = entry.get("after")
        if not isinstance(after, dict) or "content" not in after:
            continue
        lines = _content_lines(after["content"])
        if out and out[-1].lines == lines:
            continue
        action = entry.get("action") or ""
        out.append(
            Revision(
                number=len(out) + 1,
                at=entry["at"],
                actor=entry["actor"],
                action=ACTION_WORDS.get(action, action.replace(".", " ").replace("_", " ")),
                lines=lines,
            )
        )
    return out


def revision_diff(older: Revision, newer: Revision) -> list[tuple[str, str]]:
    """What changed from `older` to `newer`, as unified-diff lines with their kind
    ("del", "add", "hunk" or "" for context), all lines of context so the whole text reads."""
    context = max(len(older.lines), len(newer.lines))
    lines = difflib.unified_diff(older.lines, newer.lines, n=context, lineterm="")
    out: list[tuple[str, str]] = []
    for line in list(lines)[2:]:
        kind = {"-": "del", "+": "add", "@": "hunk"}.get(line[:1], "")
        if kind != "hunk":
            out.append((kind, line))
    return out
