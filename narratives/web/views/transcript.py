"""The transcript page: an editor corrects a story's transcript (misheard words, sentence
breaks), one sentence per line, and the story's analysis, videos and drafts are made again
from the correction off the request (`narratives.workflow.corrections`).

The form carries the version of the text it was read from, so a second editor's correction
is refused (409) rather than silently undoing the first's. Remaking the outputs takes from
seconds to minutes, so it runs on one worker thread (`Remakes`), like the output jobs after an
assignment; the page says what is being made.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from narratives.core.clock import utcnow
from narratives.core.errors import Conflict, NarrativesError
from narratives.records.draft import Draft
from narratives.store.narrative_files import read_analysis, read_transcript
from narratives.web.security import current_user
from narratives.web.views.base import Endpoint, Site, View, text
from narratives.workflow import corrections, review

__all__ = ["Remake", "Remakes", "TranscriptPage", "TranscriptView"]

log = logging.getLogger(__name__)

_NID = re.compile(r"[0-9a-f]{64}")


@dataclass
class Remake:
    """Making a story's analysis, videos and drafts again after a correction."""

    narrative_id: str
    actor: str
    queued_at: datetime
    #: queued | running | done | failed
    state: str = "queued"
    step: str = ""
    errors: list[str] = field(default_factory=list)
    finished_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class Remakes:
    """One worker thread that remakes stories' outputs after corrections, in order; a story
    corrected again while its remake waits is remade once."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._lock = threading.Condition()
        self._latest: dict[str, Remake] = {}
        self._queue: list[Remake] = []
        self._worker: threading.Thread | None = None

    def submit(self, narrative_id: str, actor: str) -> None:
        with self._lock:
            if any(r.narrative_id == narrative_id for r in self._queue):
                return
            job = Remake(narrative_id, actor, utcnow())
            self._latest[narrative_id] = job
            self._queue.append(job)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="narratives-corrections", daemon=True
                )
                self._worker.start()

    def latest(self, narrative_id: str) -> Remake | None:
        with self._lock:
            job = self._latest.get(narrative_id)
            return replace(job, errors=list(job.errors)) if job else None

    def wait(self, timeout: float | None = None) -> bool:
        """Until nothing is queued or running (tests)."""
        with self._lock:
            return self._lock.wait_for(
                lambda: not self._queue and not any(j.active for j in self._latest.values()),
                timeout,
            )

    def _set(self, job: Remake, **values) -> None:
        with self._lock:
            for k, v in values.items():
                setattr(job, k, v)
            self._lock.notify_all()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._worker = None
                    return
                job = self._queue.pop(0)
            self._set(job, state="running", step="starting")
            errors: list[str] = []
            try:
                out = corrections.rederive(
                    self.site.ctx,
                    job.narrative_id,
                    actor=job.actor,
                    progress=lambda m, job=job: self._set(job, step=m),
                )
                errors = list(out.errors)
            except NarrativesError as exc:
                errors = [f"{exc} ({exc.hint})" if exc.hint else str(exc)]
            except Exception:  # a bug: the page says so, the log has the traceback
                log.exception("remaking the outputs of %s failed", job.narrative_id)
                errors = ["an unexpected error stopped it; the server's log has the details"]
            self._set(
                job,
                state="failed" if errors else "done",
                step="",
                errors=errors,
                finished_at=utcnow(),
            )


@dataclass
class CorrectionRow:
    at: datetime
    actor: str
    action: str
    diff: str


@dataclass
class TranscriptPage:
    narrative_id: str
    title: str
    text: str
    version: str
    corrected: bool
    lines: int
    drafts: list[Draft]
    remake: Remake | None
    history: list[CorrectionRow]


class TranscriptView(View):
    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self.remakes = Remakes(site)

    def endpoints(self) -> list[Endpoint]:
        path = "/narratives/{narrative_id}/transcript"
        return [
            Endpoint("GET", path, self.page, "page"),
            Endpoint("POST", path, self.save, "action"),
        ]

    def _nid(self, request: Request) -> str:
        nid = str(request.path_params["narrative_id"]).lower()
        if not _NID.fullmatch(nid):
            raise HTTPException(404)
        return nid

    def page(self, request: Request) -> HTMLResponse:
        nid = self._nid(request)
        return self.render(request, "transcript.html", self.transcript_page(nid))

    def save(self, request: Request, form: FormData) -> RedirectResponse:
        nid = self._nid(request)
        user = current_user(request)
        try:
            result = corrections.correct(
                self.ctx,
                nid,
                text(form, "text"),
                actor=user.name,
                # No version sent is not "no check": it would let a form that never read
                # the text overwrite a newer correction. "missing" is never a version.
                seen=text(form, "version").strip() or "missing",
            )
        except Conflict as exc:
            request.session["flash_error"] = f"{exc}. {exc.hint}." if exc.hint else str(exc)
            return RedirectResponse(f"/narratives/{nid}/transcript", status_code=303)
        if result.changed:
            self.remakes.submit(nid, user.name)
            words = result.words_changed
            request.session["flash"] = (
                f"Correction saved ({words} word{'s' if words != 1 else ''} changed). The "
                "summary, quote, title, videos and drafts are being made again from it."
            )
        else:
            request.session["flash"] = "The transcript is unchanged."
        return RedirectResponse(f"/narratives/{nid}/transcript", status_code=303)

    def transcript_page(self, nid: str) -> TranscriptPage:
        ctx = self.ctx
        found = read_transcript(ctx.workspace, nid)
        if found is None:
            raise HTTPException(404)
        analysis = read_analysis(ctx.workspace, nid)
        form = corrections.text_form(found)
        drafts = [d for d in review.list_drafts(ctx) if d.narrative_id == nid]
        history = [
            CorrectionRow(
                h["at"],
                h["actor"],
                "corrected" if h["action"] == "transcript.correct" else "dropped the correction",
                h.get("detail") or "",
            )
            for h in reversed(corrections.history(ctx, nid))
        ]
        return TranscriptPage(
            narrative_id=nid,
            title=(analysis.title if analysis else "") or "Untitled story",
            text=form,
            version=corrections.text_version(found),
            corrected=corrections.is_corrected(ctx, nid),
            lines=form.count("\n"),
            drafts=drafts,
            remake=self.remakes.latest(nid),
            history=history,
        )
