"""The ``cleanroom`` command line.

This module only builds the top-level parser and maps errors to exit codes (:func:`exit_code`,
the one place that does); each command group lives in its own module exposing
``register(subparsers)``, whose ``run`` parses its flags, calls the library and prints. The CLI
catches only :class:`~cleanroom.errors.CleanroomError`: anything else is a bug and keeps its
traceback.

Exit codes: 0 success, 1 a failure of the operation (the platform refused or failed, a step
broke), 2 bad input or usage.

An error is one line on stderr, ``error: …``, never a traceback. With ``--json`` it is also one
JSON object on stdout, with the same exit code::

    {"error": {"code": "ImportFailed", "message": "…", "exit_code": 2,
               "cause": {"code": "BudgetExhausted", "message": "…"}}}

(``code`` is the error's class in :mod:`cleanroom.errors`, or ``UsageError`` for a command line
that does not parse, or ``Interrupted``; ``cause`` only when the platform refused or failed).
A reader that goes away (``cleanroom … | head``) ends the command quietly. gRPC's own log lines
(its C core's) and Dask's are left out unless ``--verbose`` is given, anywhere on the line.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, Final, NoReturn

from cleanroom import __version__
from cleanroom._fork_server import available_cpus, start_fork_server
from cleanroom._output import printable
from cleanroom.errors import CleanroomError, InvalidInput, PlatformError

# Defined in cleanroom.crypto.x25519, which the CLI imports only when it needs it.
X25519_ENV_VAR = "CLEANROOM_X25519"

__all__ = [
    "COMMANDS",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "console_main",
    "error_object",
    "exit_code",
    "main",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_VERBOSE_FLAG = "--verbose"
_JSON_FLAG = "--json"
# gRPC's C core reads this when it starts: ERROR keeps its INFO lines (a failed TLS handshake
# logs one before the client's own error says the same) off the terminal.
_GRPC_VERBOSITY = "GRPC_VERBOSITY"
_BLAS_THREADS = "OPENBLAS_NUM_THREADS"
_NUMPY_HUGE_PAGES = "NUMPY_MADVISE_HUGEPAGE"


def exit_code(error: CleanroomError) -> int:
    """The exit code of a command that failed with ``error``, by its place in the error tree.

    Bad input from the user (:class:`~cleanroom.errors.InvalidInput`: a file, a column, an
    address, an option) is a usage error; everything else, including whatever the platform
    refused or failed (:class:`~cleanroom.errors.PlatformError`, which is never an
    ``InvalidInput`` even when the platform found the request invalid), is a failure.
    """
    return EXIT_USAGE if isinstance(error, InvalidInput) else EXIT_FAILURE


def error_object(code: str, message: str, exit_status: int, **extra: Any) -> dict[str, Any]:
    """The object ``--json`` prints on stdout when a command fails (see the module's doc)."""
    return {"error": {"code": code, "message": message, "exit_code": exit_status, **extra}}


def _error_object(error: CleanroomError) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if isinstance(error, PlatformError):
        extra["cause"] = {"code": type(error.error).__name__, "message": str(error.error)}
    return error_object(type(error).__name__, str(error), exit_code(error), **extra)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors also print the JSON error object under --json."""

    json_errors = False  # set by main for the command line it parses

    def error(self, message: str) -> NoReturn:
        if _Parser.json_errors:
            print(json.dumps(error_object("UsageError", f"{self.prog}: {message}", EXIT_USAGE)))
        super().error(message)


#: The commands, each registered by the module ``cleanroom.cli.<name>``.
COMMANDS: tuple[str, ...] = ("demo", "platform", "match", "receipt")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Return the top-level parser.

    Args:
        command: register only this command's module (one of :data:`COMMANDS`), so a run
            imports what it needs and not the others (``demo`` and ``platform`` pull in the
            store, the server and the synthetic data, which a ``match`` would load for
            nothing); ``None`` or an unknown name registers every command (help, usage
            errors).
    """
    parser = _Parser(
        prog="cleanroom",
        description="Privacy-preserving clean-room matching (ECDH private set intersection).",
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        nargs=0,
        help="show the version and the X25519 backend this machine runs, then exit",
    )
    parser.add_argument(
        _VERBOSE_FLAG,
        action="store_true",
        help="also show gRPC's and Dask's own log lines (left out by default; may be given "
        "anywhere on the command line)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in (command,) if command in COMMANDS else COMMANDS:
        importlib.import_module(f"cleanroom.cli.{name}").register(subparsers)
    return parser


class _VersionAction(argparse.Action):
    """``--version``: cleanroom's version, and which X25519 backend runs here and why."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from cleanroom.crypto.x25519 import backend_info  # only when asked: it loads OpenSSL

        print(f"cleanroom {__version__}")
        try:
            print(backend_info())
        except CleanroomError as exc:
            parser.exit(EXIT_FAILURE, f"error: {exc}\n")
        parser.exit(EXIT_OK)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code.

    Args:
        argv: arguments without the program name; ``None`` means ``sys.argv[1:]``.

    Returns:
        The process exit code.

    Raises:
        SystemExit: ``--help``, ``--version``, or a command line that does not parse (2).
    """
    arguments = sys.argv[1:] if argv is None else list(argv)
    verbose = _VERBOSE_FLAG in arguments
    arguments = [argument for argument in arguments if argument != _VERBOSE_FLAG]
    json_errors = _JSON_FLAG in arguments
    _Parser.json_errors = json_errors
    command = next((a for a in arguments if not a.startswith("-")), None)
    if command == "match" and _match_needs_workers(arguments):
        start_fork_server()  # it loads the crypto modules while this process imports the rest
    parser = build_parser(command)
    args = parser.parse_args(arguments)
    args.verbose = verbose
    args.command_line = ["cleanroom", *([_VERBOSE_FLAG] if verbose else []), *arguments]
    try:
        if os.environ.get(X25519_ENV_VAR):
            # A forced X25519 backend that cannot run here fails the command at once, not in
            # the middle of a session (unset, the choice is automatic and cannot fail).
            from cleanroom.crypto.x25519 import backend_info

            backend_info()
        code: int = args.run(args)
    except CleanroomError as exc:
        # Messages quote files, the other party and certificates: one line, nothing that acts.
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        if json_errors:
            print(json.dumps(_error_object(exc)))
        return exit_code(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        if json_errors:
            print(json.dumps(error_object("Interrupted", "interrupted", EXIT_INTERRUPTED)))
        return EXIT_INTERRUPTED
    return code


_EARLY_FORK_SERVER_BYTES: Final = 1 << 20
"""A list file this large holds more records than the Advertiser reads before it starts its
worker processes (a block of them), so ``match`` starts their fork server at once."""


def _match_needs_workers(arguments: Sequence[str]) -> bool:
    """Whether a ``match`` command line hashes a list large enough for the worker processes.

    A guess from the arguments before they are parsed (a prefix of an option name is not
    recognized): a wrong one costs a fork server started for nothing, or the time this saves,
    never a result.
    """
    if _option(arguments, "--dask-scheduler") is not None:
        return False
    # One worker (given, or the default on a single core) runs every job without a pool.
    if (_option(arguments, "--workers") or str(available_cpus())) == "1":
        return False
    path = _option(arguments, "--input")
    try:
        return path is not None and os.stat(path).st_size >= _EARLY_FORK_SERVER_BYTES
    except (OSError, ValueError):  # no such file, or a path the OS cannot take
        return False


def _option(arguments: Sequence[str], name: str) -> str | None:
    """The value given as ``name VALUE`` or ``name=VALUE`` (the last one), if any."""
    value = None
    for at, argument in enumerate(arguments):
        if argument == name and at + 1 < len(arguments):
            value = arguments[at + 1]
        elif argument.startswith(f"{name}="):
            value = argument.removeprefix(f"{name}=")
    return value


def console_main() -> NoReturn:
    """The ``cleanroom`` console script: :func:`main`, then exit with its code."""
    if _VERBOSE_FLAG not in sys.argv[1:]:
        os.environ.setdefault(_GRPC_VERBOSITY, "ERROR")  # before anything imports grpc
    # numpy's OpenBLAS starts a thread per core as it loads, and they spin for a while: CPU
    # taken from the work, in this process and in the workers' fork server. cleanroom does no
    # linear algebra; set before anything imports numpy, and inherited by the workers.
    os.environ.setdefault(_BLAS_THREADS, "1")
    # numpy asks for huge pages behind its large arrays. A command's arrays are fresh memory,
    # zeroed by the kernel at first touch; with huge pages that took more of the kernel's time
    # and the match finished later (benchmarks/RESULTS.md). Inherited by the workers.
    os.environ.setdefault(_NUMPY_HUGE_PAGES, "0")
    try:
        code = main()
        sys.stdout.flush()  # here, where a reader that went away can still be caught
    except BrokenPipeError:
        # The reader closed the pipe (`| head`): stop as other tools do, without a traceback,
        # and keep the interpreter from failing again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_FAILURE
    # Whatever is alive now lives until exit anyway. Freezing it spares the interpreter's final
    # garbage collection a pass over every object of the command's imports and data, which
    # every command would otherwise pay on its way out.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    console_main()
