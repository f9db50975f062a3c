"""``cleanroom demo``: the whole story in one command (the story itself: :mod:`cleanroom.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cleanroom.cli import EXIT_FAILURE, EXIT_OK
from cleanroom.demo import (
    DEFAULT_RECORDS,
    DEFAULT_SEED,
    DEFAULT_USERS,
    DEFAULT_WORKDIR,
    MAX_SIZE,
    MIN_RECORDS,
    MIN_USERS,
    run_demo,
)

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``demo`` command."""
    description = (
        "The whole story in one command: generate a platform and an advertiser list, import, "
        "rotate the key epoch, serve over mTLS on loopback, match in count and audience modes "
        "(exactly with epsilon 0, then with the default policy) and compare every result with "
        "the plaintext ground truth."
    )
    parser = subparsers.add_parser(
        "demo",
        help="the whole story end to end, checked against the truth",
        description=description,
    )
    parser.add_argument(
        "--users",
        type=int,
        default=DEFAULT_USERS,
        help=f"platform users (default: %(default)s; {MIN_USERS} to {MAX_SIZE:,})",
    )
    parser.add_argument(
        "--records",
        type=int,
        default=DEFAULT_RECORDS,
        help=f"advertiser records (default: %(default)s; {MIN_RECORDS} to {MAX_SIZE:,})",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="seed of the synthetic data only"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="folder for everything the demo makes; wiped at the start (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="processes for hashing and encryption in each command (default: all CPUs)",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    """``cleanroom demo``: 0 only if every exact check held."""
    held = run_demo(
        users=args.users,
        records=args.records,
        seed=args.seed,
        workdir=args.workdir,
        workers=args.workers,
    )
    return EXIT_OK if held else EXIT_FAILURE
