"""`narrative --help` is quick because it imports no command module (issue 16, item 7): the
root group lists commands from a table in `narratives.cli`, and each command's module loads when
that command runs. These tests keep the table honest; bench/cli_startup.py measures the time."""

from __future__ import annotations

import json
import subprocess
import sys

import narratives.cli as cli_module
from narratives.cli import cli

#: Heavy libraries `narrative --help` must not import.
HEAVY = ("sqlalchemy", "numpy", "av", "PIL", "apscheduler", "atproto", "torch", "transformers",
         "moviepy", "starlette", "uvicorn", "rich", "pydantic", "jinja2", "spacy")  # fmt: skip


def _all_commands() -> dict:
    return {name: cli.get_command(None, name) for name in cli.list_commands(None)}


def test_every_command_is_in_the_table():
    loaded = _all_commands()
    assert all(loaded.values())
    assert set(cli.commands) == set(cli_module._COMMANDS), "add new commands to _COMMANDS"
    assert cli_module._COMMAND_MODULES == [], "modules listed here load on every start"


def test_the_table_says_what_each_command_says():
    for name, command in _all_commands().items():
        for limit in range(30, 80, 7):
            assert cli_module._short_help(name, limit) == command.get_short_help_str(limit), (
                f"{name}: update its line in narratives.cli._COMMANDS"
            )
        module = sys.modules[f"narratives.cli.{cli_module._COMMANDS[name][0]}"]
        assert command in vars(module).values(), f"{name} is not defined in {module.__name__}"


def test_help_imports_no_command_module_and_no_heavy_library():
    code = (
        "import sys, json\n"
        "from narratives.cli import main\n"
        "sys.argv = ['narrative', '--help']\n"
        "try:\n    main()\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('narratives') or"
        " m.split('.')[0] in " + repr(HEAVY) + ")))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    help_text, modules = proc.stdout.rsplit("\n", 2)[0], json.loads(proc.stdout.splitlines()[-1])
    for name in cli_module._COMMANDS:
        assert f"  {name} " in help_text
    heavy = [m for m in modules if m.split(".")[0] in HEAVY]
    assert heavy == [], heavy
    ours = [m for m in modules if m.startswith("narratives.cli.") and m != "narratives.cli.logs"]
    assert ours == [], ours


def test_a_command_loads_only_its_own_module():
    code = (
        "import sys\n"
        "from narratives.cli import main\n"
        "sys.argv = ['narrative', 'status', '--help']\n"
        "try:\n    main()\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('narratives.cli.')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.splitlines()[-1]
    assert "narratives.cli.workspace_cmds" in loaded
    assert "narratives.cli.process" not in loaded and "narratives.cli.serve" not in loaded


def test_no_command_help_loads_a_heavy_library():
    """`narrative X --help` for every X: models, video and network libraries load when a
    command runs, never to show its help."""
    heavy = ("numpy", "torch", "av", "PIL", "apscheduler", "atproto", "matplotlib",
             "distributed", "spacy", "transformers", "moviepy", "uvicorn", "starlette")  # fmt: skip
    code = (
        "import json, sys\n"
        "from narratives.cli import cli\n"
        "found = {}\n"
        "for name in cli.list_commands(None):\n"
        "    try:\n"
        "        cli.main([name, '--help'], prog_name='narrative', standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"    found[name] = [m for m in {heavy!r} if m in sys.modules]\n"
        "    if found[name]:\n"
        "        break\n"
        "print(json.dumps(found))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    assert set(found) == set(cli_module._COMMANDS)
    assert {name: libs for name, libs in found.items() if libs} == {}
