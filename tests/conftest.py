"""Shared fixtures. Every test runs in its own temporary workspace (NARRATIVES_HOME), so no
test touches a real one; models are loaded once per session by the fixtures that need them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.pds_fixtures",
    "tests.postgres_fixtures",
    "tests.browser_fixtures",
    "tests.appview_fixtures",
]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "media" / "samples"
TEST_OUTPUT = REPO / "test-output"

#: Where a model gets loaded (module, object, attribute). Tests that reach one are `slow`.
MODEL_LOADERS = (
    ("transformers", "AutoModel", "from_pretrained"),
    ("transformers", "AutoModelForSeq2SeqLM", "from_pretrained"),
    ("faster_whisper", None, "WhisperModel"),
    ("whisper", None, "load_model"),
    ("spacy", None, "load"),
    ("onnxruntime", None, "InferenceSession"),  # the Piper voice (engines/tts.py)
)


def _fast_tier(config) -> bool:
    """Whether this run leaves out the slow tests (`make test-fast`: `-m "not slow ..."`)."""
    return "not slow" in (config.getoption("markexpr") or "")


def pytest_configure(config):
    """In the fast tier every model loader refuses, so a test (or fixture) that loads a model
    fails there and says to mark it `slow`: the fast tier stays fast as tests are added."""
    if not _fast_tier(config):
        return
    import importlib

    def refuse(*args, **kwargs):
        pytest.fail("this test loads a model: mark it @pytest.mark.slow")

    for module, owner, attr in MODEL_LOADERS:
        target = importlib.import_module(module)
        setattr(getattr(target, owner) if owner else target, attr, refuse)


@pytest.fixture(autouse=True)
def workspace(tmp_path_factory, monkeypatch):
    """A fresh workspace made by `narrative init` for each test."""
    from narratives.core.workspace import init_workspace

    root = tmp_path_factory.mktemp("ws")
    ws = init_workspace(root, force=True)
    # Settings from the developer's shell (NARRATIVES_DATABASE__URL, ...) must not reach tests.
    for name in [k for k in os.environ if k.upper().startswith("NARRATIVES_") and "__" in k]:
        monkeypatch.delenv(name)
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
