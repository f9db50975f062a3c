"""Helpers shared by the command groups: argument types, the --db subcommand, output, engines."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from cleanroom._fork_server import too_many_workers
from cleanroom.cli._logging import quiet_dask_logs
from cleanroom.crypto import BatchEngine
from cleanroom.errors import InvalidInput
from cleanroom.policy import LARGEST_COUNT

__all__ = [
    "LONGEST_WAIT",
    "add_dask_scheduler_option",
    "batch_engine",
    "byte_size",
    "dask_scheduler_address",
    "db_command",
    "non_negative_float",
    "positive_float",
    "positive_int",
    "print_json",
    "seconds",
    "seconds_or_zero",
    "worker_count",
]


def db_command(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    """Add a subcommand that works on the platform database (``--db PATH``)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text
    )
    parser.add_argument("--db", required=True, type=Path, help="the platform database file")
    return parser


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 and at most :data:`LARGEST_COUNT`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    if value > LARGEST_COUNT:
        raise argparse.ArgumentTypeError(f"{value} is too large (at most {LARGEST_COUNT})")
    return value


def worker_count(text: str) -> int:
    """An argparse type: a number of worker processes, at least 1 and not more than a few per
    CPU core this process may use."""
    value = positive_int(text)
    problem = too_many_workers(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def byte_size(text: str) -> int:
    """An argparse type: a positive number of bytes, whole or with a binary unit: ``8G``,
    ``512MiB``, ``1.5GB`` (K, M, G, T are powers of 1024, with or without ``B``/``iB``)."""
    spelled = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = spelled[-1:] if spelled[-1:] in _SIZE_UNITS else ""
    number = spelled[: len(spelled) - len(unit)].strip()
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size (bytes, or a number with K, M, G or T: e.g. 8G)"
        ) from None
    size = int(value * _SIZE_UNITS[unit]) if math.isfinite(value) else 0
    if size < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size")
    return size


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_float(text: str) -> float:
    """An argparse type: a number above 0 (NaN refused)."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a number of at least 0 (NaN refused)."""
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


LONGEST_WAIT: Final = 1e9
"""The most seconds a timeout, deadline or interval may be (about 31 years): waits and timers
past it overflow (gRPC took a deadline of 1e300 s as one already passed)."""


def seconds(text: str) -> float:
    """An argparse type: a timeout, deadline or interval, above 0 and at most
    :data:`LONGEST_WAIT`."""
    return _at_most_longest_wait(text, positive_float(text))


def seconds_or_zero(text: str) -> float:
    """An argparse type: as :func:`seconds`, 0 allowed."""
    return _at_most_longest_wait(text, non_negative_float(text))


def _at_most_longest_wait(text: str, value: float) -> float:
    if value > LONGEST_WAIT:
        raise argparse.ArgumentTypeError(f"{text} s is too long (at most {LONGEST_WAIT:.0e} s)")
    return value


def print_json(data: object) -> None:
    """Print ``data`` as one indented JSON object on stdout."""
    print(json.dumps(data, indent=2))


def dask_scheduler_address(text: str) -> str:
    """An argparse type: ``tls://HOST:PORT``, or ``tcp://HOST:PORT`` to a loopback host.

    The key travels inside the cluster's tasks, so plaintext ``tcp://`` is refused beyond this
    machine, as ``--insecure`` is for the platform's own service.
    """
    # Imported here: the service layer's modules are not needed to build the parser.
    from cleanroom.advertiser import parse_server_address
    from cleanroom.tls import is_loopback

    scheme, separator, rest = text.strip().partition("://")
    if not separator or scheme not in ("tls", "tcp"):
        raise argparse.ArgumentTypeError(
            f"bad scheduler address {text!r}: expected tls://HOST:PORT (or tcp://HOST:PORT on "
            "this machine)"
        )
    try:
        address = parse_server_address(rest)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(
            str(exc).replace("bad server address", "bad scheduler address", 1)
        ) from None
    if scheme == "tcp" and not is_loopback(address.host):
        raise argparse.ArgumentTypeError(
            f"tcp:// sends the key in plaintext: use tls://{address} (see the README), or tcp:// "
            "only to a loopback address"
        )
    return f"{scheme}://{address}"


def add_dask_scheduler_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--dask-scheduler ADDRESS``: run the batch engine's large jobs on a Dask cluster."""
    parser.add_argument(
        "--dask-scheduler",
        type=dask_scheduler_address,
        metavar="tls://HOST:PORT",
        help="hash and encrypt on this Dask cluster instead of local processes (its workers "
        "see the key: trusted hosts, TLS; tcp:// only on loopback)",
    )


@contextmanager
def batch_engine(
    workers: int | None, dask_scheduler: str | None = None, *, verbose: bool = False
) -> Iterator[BatchEngine | None]:
    """The engine of ``--workers`` / ``--dask-scheduler``, closed afterwards.

    Yields ``None`` (the process-wide default engine) when neither is given. Dask's own log
    records are kept off stderr unless ``verbose``: a failure is the command's one-line error.

    Raises:
        InvalidInput: both are given.
        ClusterUnreachable: the Dask scheduler cannot be reached or has no workers.
    """
    if dask_scheduler is not None:
        if workers is not None:
            raise InvalidInput("give either --workers or --dask-scheduler, not both")
        # Imported only here: distributed is slow to import, and only a cluster run needs it.
        from cleanroom.crypto.cluster import CLUSTER_CHUNK_SIZE, DaskExecutor

        if not verbose:
            quiet_dask_logs()
        engine = BatchEngine(executor=DaskExecutor(dask_scheduler), chunk_size=CLUSTER_CHUNK_SIZE)
    elif workers is None:
        yield None  # the process-wide default engine
        return
    else:
        engine = BatchEngine(workers=workers)
    try:
        yield engine
    finally:
        engine.close()
