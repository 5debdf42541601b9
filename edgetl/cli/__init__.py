"""The `edgetl` command: subcommands that are thin over the library.

Each subcommand module has ``HELP``, ``add_arguments(parser)`` and ``run(args) -> exit code`` and imports
heavy libraries only inside ``run``, so ``edgetl --help`` stays fast and loads no optional package.
Exit codes: 0 success, 1 a check failed (parity gate, accuracy budget), 2 a user error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from edgetl import __version__, interrupt
from edgetl.errors import EdgetlError, Interrupted

COMMANDS = ("train", "eval", "calibrate", "predict", "export", "bench", "parity", "info", "demo")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" only where it says something: not twice, not for None or an off switch."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or action.default == []:
            return text
        if isinstance(action.default, (list, tuple)):  # as typed: 1,8 for a list, 1:8:32 for MIN:OPT:MAX
            sep = ":" if isinstance(action.default, tuple) else ","
            return f"{text} (default: {sep.join(map(str, action.default))})"
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """A usage error is one line that names the fix, not the whole usage block above it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgetl", description="Fine-tune timm image classifiers and ship verified ONNX / TensorRT artifacts.")
    parser.add_argument("--version", action="version", version=f"edgetl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    for name in COMMANDS:
        module = importlib.import_module(f"edgetl.cli.{name}")
        cmd = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                             formatter_class=HelpFormatter)
        cmd.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the `edgetl` program: one Ctrl-C stops it, more are ignored (a caller keeps its own)
        interrupt.install_for_program()
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except EdgetlError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        if args.debug or not _stdout_closed():
            raise  # another pipe (a subprocess's): a real error
        if argv is None:  # the program exits now; its last flush must not meet the closed pipe either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # `edgetl predict --json | head`: as a shell reports a process SIGPIPE ended (128 + 13)
    except OSError as exc:  # permissions, a full disk, a file where a folder should be: the user's to fix
        if args.debug or exc.filename is None:
            raise
        print(f"error: {exc.filename}: {exc.strerror or exc}; check the path, its permissions and free space",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        if argv is None:  # the `edgetl` program itself, which exits now: see _exit_quietly
            _exit_quietly()
        if not isinstance(exc, Interrupted):  # an Interrupted stage has said what it kept
            print("interrupted", file=sys.stderr)
        return 130


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader left: polling its write end then reports an error."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # a captured stdout without a descriptor; no poll (Windows)
        return False


def _exit_quietly() -> None:
    """Ignore Ctrl-C from here to the end of the process, so an interrupted command exits 130.

    :class:`~edgetl.interrupt.CtrlC` ignores them until then, but while Python exits it puts back the default
    SIGINT action; an impatient second Ctrl-C then kills the process by signal instead (no exit status 130,
    atexit cleanup cut short). Only for the program's own command line: a caller of :func:`main` with
    arguments keeps its Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
