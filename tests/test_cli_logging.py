"""`-v` / `-q` set how much a command logs to stderr (issue 16, item 7)."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from narratives.cli import cli, logs


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize(
    ("verbose", "quiet", "base", "level"),
    [
        (0, 0, logging.WARNING, logging.WARNING),
        (1, 0, logging.WARNING, logging.INFO),
        (2, 0, logging.WARNING, logging.DEBUG),
        (5, 0, logging.WARNING, logging.DEBUG),
        (0, 1, logging.WARNING, logging.ERROR),
        (1, 1, logging.WARNING, logging.WARNING),
        (0, 0, logging.INFO, logging.INFO),  # the scheduler service
        (0, 1, logging.INFO, logging.WARNING),
        (0, 9, logging.INFO, logging.CRITICAL),
    ],
)
def test_levels(verbose, quiet, base, level):
    assert logs.level_for(verbose, quiet, base=base) == level


def test_default_is_quiet_about_progress(workspace):
    res = run("status")
    assert res.exit_code == 0, res.output
    assert "INFO" not in res.output


def test_verbose_shows_what_it_works_on(workspace):
    res = run("-v", "status")
    assert res.exit_code == 0, res.output
    assert f"INFO narratives.cli._common: workspace {workspace.root}" in res.output


def test_quiet_cancels_verbose_and_hides_warnings(workspace, capsys):
    assert "INFO" not in run("-v", "-q", "status").output
    run("-q", "status")
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "narratives-cli")
    assert handler.level == logging.ERROR
    logging.getLogger("narratives.test").warning("a warning nobody asked for")
    logging.getLogger("narratives.test").error("an error")
    err = capsys.readouterr().err
    assert "an error" in err and "a warning nobody asked for" not in err


def test_one_handler_however_many_commands(workspace):
    for _ in range(3):
        run("-v", "status")
    named = [h for h in logging.getLogger().handlers if h.get_name() == "narratives-cli"]
    assert len(named) == 1


def test_every_level_option_is_in_help():
    out = run("--help").output
    assert "-v, --verbose" in out and "-q, --quiet" in out
