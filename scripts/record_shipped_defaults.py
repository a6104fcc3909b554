"""Record what every version shipped as tagging defaults (narratives/workflow/upgrade.py).

    .venv/bin/python scripts/record_shipped_defaults.py [--check]

Reads every committed version of the shipped example stories and campaign files from git
(where they live now, `narratives/defaults/campaigns/`, and where they lived before,
`campaigns/`) and the working tree's, and writes narratives/defaults/shipped-history.json:
the SHA-256 of each examples file shipped (the current one last), the identity
(`example_key`) of every example line ever shipped with the version it first shipped in, and
each shipped campaign's current and earlier `tag_threshold`. Run it after
changing the shipped examples or thresholds, before committing.

`--check` only verifies, without git, that the working tree's shipped files are the ones the
history calls current (exit 1 if not).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from narratives.core.workspace import DEFAULTS_ROOT  # noqa: E402
from narratives.workflow.upgrade import HISTORY_FILE, example_key, read_history  # noqa: E402

SHIPPED = DEFAULTS_ROOT / "campaigns"
#: Where the shipped campaigns lived before they moved into the package.
FORMER = ("campaigns",)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout


def _versions(name: str) -> list[str]:
    """Every committed text of campaigns file `name`, oldest first, at either place."""
    here = str(SHIPPED.relative_to(REPO))
    out = []
    for folder in (*FORMER, here):
        path = f"{folder}/{name}"
        for commit in reversed(_git("log", "--format=%H", "--", path).split()):
            try:
                out.append(_git("show", f"{commit}:{path}"))
            except subprocess.CalledProcessError:
                continue  # the commit that deleted it
    return out


def _lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if isinstance(d, dict) and "text" in d:
            out.append(d)
    return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def current_state() -> dict:
    """What the working tree ships now: the examples file's digest and each threshold."""
    examples = (SHIPPED / "examples.jsonl").read_text(encoding="utf-8")
    thresholds = {}
    for path in sorted(SHIPPED.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        thresholds[data["slug"]] = data["tag_threshold"]
    return {"examples": _sha(examples), "thresholds": thresholds}


def build() -> dict:
    now = current_state()
    examples = (SHIPPED / "examples.jsonl").read_text(encoding="utf-8")
    # Each distinct examples file in the order it shipped, the working tree's last.
    versions: list[str] = []
    for text in [*_versions("examples.jsonl"), examples]:
        if text.strip() and text not in versions:
            versions.append(text)
    versions = [t for t in versions if _sha(t) != now["examples"]] + [examples]
    first: dict[str, int] = {}
    for i, text in enumerate(versions):
        for d in _lines(text):
            first.setdefault(example_key(d), i)
    thresholds = {}
    for path in sorted(SHIPPED.glob("*.toml")):
        values = set()
        for text in _versions(path.name):
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError:
                continue
            if data.get("slug") and "tag_threshold" in data:
                values.add(data["tag_threshold"])
        slug = tomllib.loads(path.read_text(encoding="utf-8"))["slug"]
        current = now["thresholds"][slug]
        thresholds[slug] = {"current": current, "earlier": sorted(values - {current})}
    return {
        "examples": {
            "versions": [{"sha256": _sha(t), "stories": len(_lines(t))} for t in versions],
            "first_shipped_in": dict(sorted(first.items())),
        },
        "tag_threshold": thresholds,
    }


def check() -> list[str]:
    """Why the recorded history does not describe the working tree's shipped files."""
    history, now = read_history(), current_state()
    problems = []
    if history["examples"]["versions"][-1]["sha256"] != now["examples"]:
        problems.append("the shipped examples.jsonl is not the one recorded as current")
    for slug, value in now["thresholds"].items():
        if history["tag_threshold"].get(slug, {}).get("current") != value:
            problems.append(f"{slug}: tag_threshold {value} is not the one recorded as current")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check the recorded history")
    args = parser.parse_args()
    if args.check:
        problems = check()
        for p in problems:
            print(p)
        print("up to date" if not problems else "run scripts/record_shipped_defaults.py")
        return 1 if problems else 0
    history = build()
    HISTORY_FILE.write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    e = history["examples"]
    thresholds = ", ".join(
        f"{s} {t['current']} (earlier {t['earlier']})" for s, t in history["tag_threshold"].items()
    )
    print(
        f"wrote {HISTORY_FILE.relative_to(REPO)}: {len(e['versions'])} example sets, "
        f"{len(e['first_shipped_in'])} example lines; thresholds {thresholds}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
