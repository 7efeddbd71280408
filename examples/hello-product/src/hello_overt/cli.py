"""Command-line entry point: ``hello-overt [NAME] [--shout] [--version]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from hello_overt import __version__
from hello_overt.greeting import greet


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``hello-overt`` command."""
    parser = argparse.ArgumentParser(
        prog="hello-overt",
        description="Print a greeting. A small product for Overt's build conveyor.",
    )
    parser.add_argument("name", nargs="?", default=None, help="who to greet (default: world)")
    parser.add_argument("--shout", action="store_true", help="greet in capital letters")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command and return its exit status."""
    args = build_parser().parse_args(argv)
    print(greet(args.name, shout=args.shout))
    print(f"(hello-overt {__version__})")
    return 0
