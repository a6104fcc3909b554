"""`python -m narratives`: the `narrative` command, for when the script is not on PATH."""

from narratives.cli import main

main()
