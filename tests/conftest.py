"""Shared fixtures. Every test runs in its own temporary workspace (NARRATIVES_HOME), so no
test touches a real one; models are loaded once per session by the fixtures that need them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.pds_fixtures", "tests.postgres_fixtures", "tests.browser_fixtures"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "media" / "samples"
TEST_OUTPUT = REPO / "test-output"


@pytest.fixture(autouse=True)
def workspace(tmp_path_factory, monkeypatch):
    """A fresh workspace made by `narrative init` for each test."""
    from narratives.core.workspace import init_workspace

    root = tmp_path_factory.mktemp("ws")
    ws = init_workspace(root, force=True)
    monkeypatch.setenv("NARRATIVES_HOME", str(root))
    monkeypatch.chdir(root)
    return ws


@pytest.fixture
def ctx(workspace):
    from narratives.store.context import Context

    return Context(workspace)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def test_output() -> Path:
    TEST_OUTPUT.mkdir(exist_ok=True)
    return TEST_OUTPUT


@pytest.fixture(scope="session")
def processed_samples(tmp_path_factory):
    """The six sample recordings run through transcription once per session, in a workspace
    of their own: {sample name: (narrative id, Transcript)}. Read-only for tests."""
    from narratives.core.workspace import init_workspace
    from narratives.stages.pipeline import process_paths
    from narratives.store.context import Context

    root = tmp_path_factory.mktemp("samples-ws")
    ctx = Context(init_workspace(root, force=True))
    out = {}
    for result in process_paths(ctx, [SAMPLES], stages=("transcribe",)):
        assert result.status == "ok", result.error
        out[result.path.stem] = (result.id, result.transcript)
    return ctx, out
