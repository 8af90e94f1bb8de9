"""The ``kettle`` command line (also ``python -m kettle``): ollama's CLI for kettle.

``main(argv) -> exit code``. Commands: serve, create, show, run, stop, pull,
list (ls), ps, cp, rm; ``--version``. Each talks to the server at
``KETTLE_HOST`` when one answers, and otherwise does the same work in this
process (``backend.py``). A ``KettleError`` is printed as ``Error: <message>``
on stderr with exit code 1, never as a traceback; Ctrl-C exits with 130.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kettle.cli.commands import INTERRUPTED, IO
from kettle.errors import KettleError

__all__ = ["main", "IO"]


def main(argv: Sequence[str] | None = None, io: IO | None = None) -> int:
    """Run one ``kettle`` command line; returns its exit code."""
    from kettle.cli.commands import cmd_version
    from kettle.cli.parser import build_parser

    io = io or IO()
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:  # --help, or a usage error argparse has printed
        return e.code if isinstance(e.code, int) else 2
    try:
        if args.version:
            return cmd_version(io)
        if args.command is None:
            parser.print_help(io.stdout)
            return 0
        return args.handler(args, io)
    except KettleError as e:
        io.stderr.write(f"Error: {e}\n")
        return 1
    except KeyboardInterrupt:
        io.stderr.write("\n")
        return INTERRUPTED
    except BrokenPipeError:
        return 1
