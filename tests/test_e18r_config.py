"""Issue 18, item 2 (fast): which formats a campaign renders, at what size and rate, and the
config errors for bad `[look]` values. The renders themselves: test_e18r_render.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from narratives.core.campaigns import CHANNELS, load_campaign_file
from narratives.core.config import load_settings
from narratives.core.errors import ConfigError
from narratives.core.workspace import DEFAULTS_ROOT
from narratives.records.video import FORMATS, campaign_formats
from narratives.stages.render.layout import load_layout
from narratives.stages.render.video import frame_scale

SHIPPED = DEFAULTS_ROOT / "campaigns"


def _campaign_with(tmp_path: Path, look: str = "", *, channels: bool = True) -> Path:
    """The shipped emotional-equity campaign with `look` lines in place of `formats = []`
    (and, without `channels`, none of its channels)."""
    text = (SHIPPED / "emotional-equity.toml").read_text(encoding="utf-8")
    assert text.count("\nformats = []\n") == 1
    text = text.replace("\nformats = []\n", f"\n{look}\n")
    if not channels:
        text = text[: text.index("[channels.bluesky]")] + "[channels]\n"
    path = tmp_path / "emotional-equity.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_campaigns_render_only_what_their_channels_publish():
    assert {c.video_format for c in CHANNELS.values()} == {"vertical"}
    for path in sorted(SHIPPED.glob("*.toml")):
        campaign = load_campaign_file(path)
        assert campaign.look.formats == [], path
        assert campaign_formats(campaign) == ["vertical"], path
        assert campaign.look.resolution is None and campaign.look.fps is None
        # The comment telling staff how to ask for more stays in the file.
        assert 'formats = ["square"]' in path.read_text(encoding="utf-8")


def test_extras_add_to_the_channels_formats(tmp_path):
    old = load_campaign_file(_campaign_with(tmp_path, 'formats = ["vertical", "square"]'))
    assert campaign_formats(old) == ["vertical", "square"]  # an older workspace: both still
    extra = load_campaign_file(_campaign_with(tmp_path, 'formats = ["square"]'))
    assert campaign_formats(extra) == ["vertical", "square"]  # vertical first, for the drafts
    silent = load_campaign_file(_campaign_with(tmp_path, channels=False))
    assert silent.channel_names == [] and campaign_formats(silent) == []
    only = load_campaign_file(_campaign_with(tmp_path, 'formats = ["square"]', channels=False))
    assert campaign_formats(only) == ["square"]
    assert set(FORMATS) == {"vertical", "square"}


@pytest.mark.parametrize(
    ("look", "key", "says"),
    [
        ("resolution = 0", "look.resolution", "greater than or equal to 240"),
        ("resolution = 4320", "look.resolution", "less than or equal to 2160"),
        ("fps = 500", "look.fps", "less than or equal to 60"),
        ("fps = 0", "look.fps", "greater than or equal to 1"),
        ('fps = "fast"', "look.fps", "integer"),
        ('formats = ["landscape"]', "look.formats.0", "'vertical' or 'square'"),
    ],
)
def test_bad_look_values_are_config_errors_naming_file_and_key(tmp_path, look, key, says):
    path = _campaign_with(tmp_path, look)
    with pytest.raises(ConfigError) as err:
        load_campaign_file(path)
    text = str(err.value)
    assert text.startswith(str(path)), text
    assert re.search(rf"^\s+{re.escape(key)}: .*{re.escape(says)}", text, re.M), text


def test_bad_render_settings_name_the_settings_file(workspace):
    workspace.settings_path.write_text("[render]\nresolution = 100\nfps = 500\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(workspace)
    text = str(err.value)
    assert str(workspace.settings_path) in text
    assert "render.resolution" in text and "render.fps" in text
    workspace.settings_path.write_text("[render]\nresolution = 720\nfps = 24\n", encoding="utf-8")
    render = load_settings(workspace).render
    assert (render.resolution, render.fps) == (720, 24)


def test_new_workspaces_render_720_at_24_older_ones_keep_1080_at_30(workspace):
    # `narrative init` writes the measured defaults (see narratives.toml and the README).
    render = load_settings(workspace).render
    assert (render.resolution, render.fps) == (720, 24)
    # A workspace made by an older version wrote `fps = 30` and no resolution.
    workspace.settings_path.write_text('[render]\nfps = 30\npreset = "veryfast"\n')
    render = load_settings(workspace).render
    assert (render.resolution, render.fps) == (1080, 30)


def test_a_resolution_is_the_short_edge_of_every_layout():
    vertical, square = load_layout(None, "vertical"), load_layout(None, "square")
    assert (vertical.width, vertical.height, square.width) == (1080, 1920, 1080)
    s = frame_scale(vertical, 720)
    assert (round(vertical.width * s), round(vertical.height * s)) == (720, 1280)
    assert round(square.height * frame_scale(square, 720)) == 720
    # `[render] scale` (tests, previews) multiplies on top.
    assert frame_scale(vertical, 720, 0.5) == pytest.approx(s / 2)


def test_campaigns_show_says_what_is_rendered(workspace):
    from click.testing import CliRunner

    from narratives.cli import cli

    path = workspace.campaigns_dir / "neural-mandate.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("\nformats = []\n", '\nformats = ["square"]\nfps = 12\n'))
    shown = CliRunner().invoke(cli, ["campaigns", "show", "neural-mandate"])
    assert shown.exit_code == 0, shown.output
    assert "video: vertical, square, 720 px, 12 fps, at most" in shown.output
    shown = CliRunner().invoke(cli, ["campaigns", "show", "emotional-equity"])
    assert "video: vertical, 720 px, 24 fps, at most 90 s" in shown.output
