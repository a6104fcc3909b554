"""Consent and anonymity on the draft page: the consent panel, recording or updating consent,
withdrawing it, and marking the names and places anonymised mode hides.

The ledger (`narratives.policy.consent`) and anonymisation (`narratives.policy.anonymise`) do the
work and write the audit rows; this module validates the form fields first so a slip (no
channel ticked, a malformed date) is a plain 400 with a sentence, not a configuration error.
Withdrawal takes posts down, so its form needs a ticked confirmation box: a confirm step that
works without JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from narratives.core.errors import ConfigError, Conflict, UsageError
from narratives.policy import anonymise, consent
from narratives.records.analysis import Analysis, Entity
from narratives.records.consent import Consent, WithdrawalReport
from narratives.records.draft import Draft
from narratives.records.redactions import Term
from narratives.store import redactions
from narratives.store.context import Context
from narratives.web.security import current_user
from narratives.web.views.base import Endpoint, View, draft_id
from narratives.workflow import review, takedown

__all__ = ["ConsentPanel", "ConsentView", "METHOD_LABELS", "WithdrawnPage", "consent_panel"]

METHOD_LABELS = {"form": "Signed form", "recording": "On the recording", "in_person": "In person"}
#: The kinds an editor picks from; `person` is what the analysis finds and reads the same.
_KINDS = {"name": "Name", "place": "Place"}
_MAX_TERM = 200
#: A withdrawal reason is a note in the audit log, not an essay.
_MAX_REASON = 2000


@dataclass
class ConsentPanel:
    """The draft page's consent and hidden-terms panels."""

    #: The consent as recorded, or None.
    record: Consent | None
    status: str | None
    #: The form's date: a withdrawn consent can only be replaced by one given later.
    given: str
    anonymous: bool
    found_terms: list[Term]
    marked_terms: list[Term]
    #: Hidden names the draft still contains, and where (only when the narrator is anonymous).
    leaks: list[str]
    #: Names and places only one detector found (the NER model or the heuristic), with why.
    unsure: list[Entity]
    methods: dict[str, str]
    kinds: dict[str, str]
    channels: tuple[str, ...]
    #: The narrator's own choice of voice ("synthetic", "disguised"), or None: the campaign's.
    voice_mode: str | None = None


@dataclass
class WithdrawnPage:
    draft: Draft
    report: WithdrawalReport


def consent_panel(ctx: Context, draft: Draft, analysis: Analysis | None) -> ConsentPanel:
    nid = draft.narrative_id
    current = consent.get_consent(ctx, nid)
    anonymous = current is None or current.anonymous
    found = anonymise.analysis_terms(analysis)
    marked = redactions.marked_terms(ctx, nid)
    # Where each hidden name still is (issue 14): the same leak check as at publish.
    root, terms = ctx.workspace.root, found + marked
    found_leaks = anonymise.artefact_leaks(root, draft.content, terms) if anonymous else []
    leaks = sorted({f"{x.term} (in {x.where})" for x in found_leaks})
    unsure = [e for e in (analysis.entities if analysis else []) if e.unsure]
    withdrawn = current is not None and current.withdrawn_at is not None
    return ConsentPanel(
        record=current,
        status=current.status() if current else None,
        # A withdrawn consent can only be replaced by one given later: default to today.
        given="" if current is None or withdrawn else f"{current.given_at:%Y-%m-%d}",
        anonymous=anonymous,
        found_terms=sorted({t.text: t for t in found}.values(), key=lambda t: t.text),
        marked_terms=marked,
        leaks=leaks,
        unsure=unsure,
        methods=METHOD_LABELS,
        kinds=_KINDS,
        channels=consent.CHANNELS,
        voice_mode=redactions.voice_mode(ctx, nid),
    )


class ConsentView(View):
    """Consent and redaction actions."""

    def endpoints(self) -> list[Endpoint]:
        base = "/drafts/{draft_id:id}"
        return [
            Endpoint("POST", f"{base}/consent", self.set_consent, "action"),
            Endpoint("POST", f"{base}/consent/withdraw", self.withdraw_consent, "action"),
            Endpoint("POST", f"{base}/hide", self.mark_term, "action"),
            Endpoint("POST", f"{base}/unhide", self.unmark_term, "action"),
        ]

    def set_consent(self, request: Request, form: FormData) -> Response:
        draft = review.get_draft(self.ctx, draft_id(request))
        given_by = _field(form, "given_by")
        method = _field(form, "method")
        channels = [c for c in form.getlist("channels") if isinstance(c, str)]
        named = _field(form, "named")
        if not given_by:
            raise UsageError("Say who gave consent (the narrator, or who signed for them).")
        if method not in consent.METHODS:
            raise UsageError("Choose how consent was given.")
        if not channels or not set(channels) <= set(consent.CHANNELS):
            raise UsageError(
                "Tick the channels the narrator agreed to.",
                hint="To stop all publishing, withdraw consent instead.",
            )
        if named not in ("0", "1"):
            raise UsageError("Choose whether the narrator may be named or must stay anonymous.")
        given: date | datetime | None = _date(form, "given_at", "The date consent was given,")
        expires = _date(form, "expires_at", "The expiry date")
        expected = _expected_version(form)
        before = consent.get_consent(self.ctx, draft.narrative_id)
        if before is not None and given is not None and given == before.given_at.date():
            given = before.given_at  # the same day as recorded: keep its time of day
        try:
            after = takedown.set_consent(
                self.ctx,
                draft.narrative_id,
                given_by=given_by,
                method=method,
                channels=channels,
                anonymous=named == "0",
                given_at=given,
                expires_at=expires,
                notes=_field(form, "notes") or None,
                actor=current_user(request).name,
                expected_version=expected,
            )
        except Conflict as exc:  # changed since the form was opened: show it as it is now
            return self._conflict(request, draft.id, exc)
        except ConfigError as exc:  # a value the ledger refuses (too long, ...)
            raise UsageError(str(exc)) from None
        note = ""
        if before is not None and before.anonymous != after.anonymous:
            note = " Drafts and videos follow the change the next time `narrative process` runs."
        if after.takedown is not None:
            note += " " + _takedown_sentence(after.takedown)
        return self.back(request, draft.id, "Consent saved." + note)

    def _conflict(self, request: Request, did: int, exc: Conflict) -> HTMLResponse:
        """The draft's page as it is now (the consent as recorded), saying the save lost."""
        from narratives.web.views.draft import draft_page  # it shows this module's panel

        page = draft_page(
            self.site, review.get_draft(self.ctx, did), viewer=current_user(request).name
        )
        page.refusal = str(exc)[:1].upper() + str(exc)[1:]
        page.refusal_hint = (
            "The consent panel below shows the consent as it is now: check it, then save "
            "again if it still needs changing."
        )
        return self.render(request, "draft.html", page, status=exc.http_status)

    def withdraw_consent(self, request: Request, form: FormData) -> HTMLResponse:
        draft = review.get_draft(self.ctx, draft_id(request))
        if _field(form, "confirm") != "yes":
            raise UsageError(
                "Consent was not withdrawn: tick “I understand this deletes published posts” "
                "to confirm.",
                hint="Go back to the draft and try again.",
            )
        report = takedown.withdraw(
            self.ctx,
            draft.narrative_id,
            actor=current_user(request).name,
            reason=_field(form, "reason")[:_MAX_REASON],
        )
        return self.render(request, "withdrawn.html", WithdrawnPage(draft=draft, report=report))

    def mark_term(self, request: Request, form: FormData) -> Response:
        draft = review.get_draft(self.ctx, draft_id(request))
        text = _field(form, "term")
        kind = _field(form, "kind") or "name"
        if kind not in _KINDS:
            raise UsageError("Choose whether it is a name or a place.")
        if len(text) > _MAX_TERM:
            raise UsageError(f"That is too long to hide as one term (at most {_MAX_TERM}).")
        redactions.mark_term(
            self.ctx, draft.narrative_id, text, kind=kind, actor=current_user(request).name
        )
        return self.back(
            request,
            draft.id,
            f"“{' '.join(text.split())}” will be hidden. Drafts and videos are redone the next "
            "time `narrative process` runs.",
        )

    def unmark_term(self, request: Request, form: FormData) -> Response:
        draft = review.get_draft(self.ctx, draft_id(request))
        text = _field(form, "term")[:_MAX_TERM]
        before = redactions.marked_terms(self.ctx, draft.narrative_id)
        after = redactions.unmark_term(
            self.ctx, draft.narrative_id, text, actor=current_user(request).name
        )
        if len(after) == len(before):
            return self.back(request, draft.id, f"“{text}” was not marked to hide.")
        return self.back(request, draft.id, f"“{text}” is no longer hidden.")


def _field(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.replace("\r\n", "\n").strip() if isinstance(value, str) else ""


def _expected_version(form: FormData) -> int | None | Literal["any"]:
    """The consent version the form was made from: a number, "none" (no consent was
    recorded), or no field at all ("any": a client that does not send one, like the CLI)."""
    if "consent_version" not in form:
        return "any"
    value = _field(form, "consent_version")
    if value == "none":
        return None
    if not value.isdigit() or len(value) > 9:
        raise UsageError(
            "The consent form is damaged (its version is not a number).",
            hint="Reload the draft page and try again.",
        )
    return int(value)


def _date(form: FormData, key: str, what: str) -> date | None:
    text = _field(form, key)
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{what} {text!r} is not a date.", hint="Write it like 2027-01-31."
        ) from None


def _takedown_sentence(report: WithdrawalReport) -> str:
    """What a narrower consent took back, for the editor who saved it."""
    parts = []
    if report.withdrawn:
        parts.append(f"{len(report.withdrawn)} published post(s) taken down")
    if report.cancelled:
        parts.append(f"{len(report.cancelled)} scheduled post(s) cancelled")
    text = ("It covers less: " + " and ".join(parts) + ".") if parts else ""
    if report.errors:
        text += " Some could not be taken down yet; the scheduler retries them."
    return text.strip()
