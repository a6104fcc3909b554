"""The review app's pages, one module per page or page group, each with the dataclass its
template renders (see `base.py`)."""

from __future__ import annotations

from narratives.web.views.assign import AssignView
from narratives.web.views.base import View
from narratives.web.views.compare import CompareView
from narratives.web.views.consent import ConsentView
from narratives.web.views.draft import DraftView
from narratives.web.views.draft_actions import DraftActions
from narratives.web.views.engagement import EngagementView
from narratives.web.views.files import FilesView
from narratives.web.views.gates import GatesView
from narratives.web.views.login import LoginView
from narratives.web.views.queue import QueueView
from narratives.web.views.schedule import ScheduleView
from narratives.web.views.transcript import TranscriptView

__all__ = ["VIEWS"]

#: Every page group of the app, in the order its routes are matched.
VIEWS: tuple[type[View], ...] = (
    LoginView,
    QueueView,
    DraftView,
    CompareView,
    DraftActions,
    GatesView,
    EngagementView,
    ScheduleView,
    ConsentView,
    AssignView,
    FilesView,
    TranscriptView,
)
