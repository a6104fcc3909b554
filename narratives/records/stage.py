"""The stage contract: every step of the pipeline is a `Stage`, and running one gives a
`StageResult` that says what happened, so the pipeline never has to look at the database to
learn whether a stage did work.

A stage raises a `NarrativesError` for a user-facing failure; whoever runs it (the pipeline)
turns that into a `failed` result and the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["Stage", "StageResult", "StageStatus"]

#: done: it worked and recorded a run; skipped: its `done` run still holds; failed: it raised.
StageStatus = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class StageResult:
    """What one stage did for one narrative."""

    stage: str
    status: StageStatus
    #: What the stage produced (a Transcript, an Analysis, videos, drafts), reused or new.
    record: Any = None
    error: str | None = None
    #: Wall time of the call, filled in by whoever timed it.
    seconds: float | None = None

    @property
    def worked(self) -> bool:
        return self.status == "done"


class Stage(Protocol):
    """One step from a narrative's files to the next record.

    `ctx` is the store's `Context` (typed loosely: records sit below the store). A stage whose
    `done` run still fits is skipped unless `force`.
    """

    @property
    def name(self) -> str: ...

    def run(self, ctx: Any, narrative_id: str, *, force: bool = False) -> StageResult: ...
