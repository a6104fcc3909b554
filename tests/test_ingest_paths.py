"""Finding recordings: symlink loops, FIFOs, folders named `work`, and nothing found at all."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.errors import BadRecording
from narratives.stages.ingest import find_recordings, hash_file


def _run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "good.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "A short dream."], check=True)
    return path


@pytest.mark.slow
def test_a_symlink_loop_and_a_fifo_fail_while_the_good_recording_finishes(tmp_path, clip):
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "good.wav").write_bytes(clip.read_bytes())
    (rec / "loop.wav").symlink_to("loop.wav")
    os.mkfifo(rec / "pipe.wav")
    # Named directly as well as found by the walk.
    result = _run("transcribe", str(rec), str(rec / "loop.wav"), str(rec / "pipe.wav"), "--json")
    assert result.exit_code == 1
    items = [json.loads(line) for line in result.stdout.splitlines()]
    by_name = {}
    for item in items:
        by_name.setdefault(item["path"].rsplit("/", 1)[-1], []).append(item)
    assert [i["status"] for i in by_name["good.wav"]] == ["ok"]
    assert all(i["status"] == "failed" for i in by_name["loop.wav"] + by_name["pipe.wav"])
    assert all("symlink loop" in i["error"] for i in by_name["loop.wav"])
    assert all("not a regular file" in i["error"] for i in by_name["pipe.wav"])


def test_hash_file_refuses_a_fifo_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.wav")
    with pytest.raises(BadRecording, match="not a regular file"):
        hash_file(tmp_path / "pipe.wav")


def test_only_the_workspace_output_folder_is_skipped(tmp_path, workspace):
    for folder in (tmp_path / "work", workspace.root / "recordings" / "work"):
        folder.mkdir(parents=True)
        (folder / "story.wav").write_bytes(b"not decoded here")
    (workspace.narrative_dir("ab" * 32)).mkdir(parents=True)
    (workspace.narrative_dir("ab" * 32) / "video.mp4").write_bytes(b"an output")

    found = [f.path for f in find_recordings([tmp_path, workspace.root], skip=[workspace.work_dir])]
    assert found == [tmp_path / "work" / "story.wav", workspace.root / "recordings/work/story.wav"]


def test_no_recordings_found_is_an_error_and_json_stays_valid(tmp_path):
    (tmp_path / "notes.txt").write_text("not a recording")
    for extra in ([], ["--json"]):
        result = _run("process", str(tmp_path), *extra)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert f"no recordings found under {tmp_path}" in result.stderr
