"""The exception hierarchy, drawn once.

Every error a user can cause or meet derives from `NarrativesError`; the CLI maps
`exit_code` to the process exit status and prints `str(exc)` plus `hint`, and the
web app maps `http_status` to an error page. Anything else is a bug and shows a
traceback only with `--debug`.
"""

from __future__ import annotations

__all__ = [
    "NarrativesError",
    "UsageError",
    "ConfigError",
    "WorkspaceError",
    "ModelNotAvailable",
    "BadRecording",
    "StageFailed",
    "UnreadableFile",
    "NotFound",
    "InvalidState",
    "ConsentError",
    "Conflict",
    "PermissionDenied",
    "ChannelError",
    "TransientChannelError",
    "PermanentChannelError",
    "EXIT_OK",
    "EXIT_FAILED_ITEMS",
    "EXIT_USAGE",
]

EXIT_OK = 0
#: Some inputs of a batch failed; the rest were processed.
EXIT_FAILED_ITEMS = 1
#: Bad command line or configuration: nothing was done.
EXIT_USAGE = 2


class NarrativesError(Exception):
    """Base of every error meant for a user's eyes."""

    exit_code = 3
    http_status = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(NarrativesError):
    """The command line or a request was malformed."""

    exit_code = EXIT_USAGE
    http_status = 400


class ConfigError(NarrativesError):
    """A settings or campaign file is invalid; the message names file and key."""

    exit_code = EXIT_USAGE
    http_status = 500


class WorkspaceError(NarrativesError):
    """The workspace is missing or unusable."""

    exit_code = EXIT_USAGE


class ModelNotAvailable(NarrativesError):
    """Model weights are not installed here; the hint says how to get them."""

    exit_code = 4


class BadRecording(NarrativesError):
    """A recording cannot be decoded or holds no usable audio."""

    exit_code = EXIT_FAILED_ITEMS
    http_status = 422


class StageFailed(NarrativesError):
    """A pipeline stage failed for one narrative (recorded on that narrative)."""

    exit_code = EXIT_FAILED_ITEMS


class UnreadableFile(StageFailed):
    """A narrative's file (transcript.json, analysis.json) exists but cannot be read or parsed;
    the message names the file."""


class NotFound(NarrativesError):
    """No narrative, draft, delivery or user with that id."""

    exit_code = 5
    http_status = 404


class InvalidState(NarrativesError):
    """The action is not allowed from the record's current state."""

    exit_code = 6
    http_status = 409


class Conflict(InvalidState):
    """Someone changed the record since the user read it (an edit, a regeneration)."""


class ConsentError(InvalidState):
    """The narrator's consent does not cover this use."""

    http_status = 403


class PermissionDenied(NarrativesError):
    """The user's role does not allow this action."""

    exit_code = 7
    http_status = 403


class ChannelError(NarrativesError):
    """Publishing to a channel failed."""

    exit_code = 8
    http_status = 502


class TransientChannelError(ChannelError):
    """Worth retrying later (network down, 5xx, rate limited)."""

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class PermanentChannelError(ChannelError):
    """Retrying cannot help (bad credentials, content rejected, too large)."""
