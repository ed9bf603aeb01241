"""The ``unblur`` command. Each sub-command imports what it needs when it runs,
so ``unblur --help`` is instant and a missing optional extra breaks only its command."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Sub-commands, each a module of unblur.commands with add_parser(sub) and run(args).
COMMANDS = ["deblur", "transfer", "models", "demo", "train", "serve", "bench", "eval", "synth", "cache", "export"]


class UsageError(Exception):
    """A mistake in what the user asked for: printed as one line, exit code 2."""


def _err(msg: str) -> None:
    print(f"unblur: error: {msg}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from unblur import __version__

    p = argparse.ArgumentParser(prog="unblur", description="Remove motion blur from photos.")
    p.add_argument("--version", action="version", version=f"unblur {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"unblur.commands.{name}").add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UsageError as err:
        _err(str(err))
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
