"""The ``staterelay`` console script: the command line, and Ctrl-C at any moment of start-up.

Importing the command line takes a moment on a small machine; a Ctrl-C then would end in a
traceback from whatever module was loading. Here it ends quietly instead: nothing has been
done yet, so one line says so and the exit status is 0.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line (the console script and ``python -m staterelay``)."""
    try:
        from staterelay.cli import main as command_line
    except KeyboardInterrupt:
        print("staterelay: interrupted while starting; nothing was done", file=sys.stderr)  # noqa: T201
        sys.exit(0)
    command_line()
