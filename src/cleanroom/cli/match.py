"""``cleanroom match``: the advertiser matches its customer list against the platform's users.

::

    cleanroom match --server HOST:PORT --input FILE.csv --mode count|audience|ids
                    --tls-dir DIR | --insecure
                    [--column FIELD=NAME] [--ignore-column NAME] [--delimiter D]
                    [--prehashed KIND] [--default-region CC]
                    [--out matched.csv] [--report FILE.html] [--receipt FILE] [--suite ID]
                    [--timeout S] [--json]
                    [--workers N | --dask-scheduler tls://HOST:PORT] [--max-platform-set N]

The work is :meth:`cleanroom.advertiser.Advertiser.match` (its module says in which order, and
what overlaps what); this command parses the flags, calls it, and prints its report. Rows
without marketing consent are dropped while reading.

``--json`` prints one object on stdout::

    {"mode": "count", "count": 1234 | null, "reported_as": "1234" | "fewer than 100",
     "noise_applied": true, "epsilon_spent": 0.5, "epsilon_remaining": 7.5,
     "records_read": 10000, "without_consent": 800,
     "rejected": {"rows": 37, "by_reason": {"invalid_email": 20, ...},
                  "examples": [{"row": 12, "column": "email", "reason": "invalid_email",
                                "detail": "missing '@' ..."}, ...]},
     "sent": 9163, "identifiers_sent": 18000, "customers": 9160,
     "matched_rows": null | 812, "out": null | "matched.csv",
     "server": "...", "input": "...", "delimiter": ",",
     "columns": {"record_id": "record_id", "email": "E-Mail", ...},
     "unused_columns": ["first_name", ...], "suite": "...", "epoch_id": 3,
     "platform_set_size": 1000000,
     "phases": {"read_list": 0.4, "get_policy": 0.01, "wait_policy": 0.0, "normalize": 1.2,
                "plan_list": 0.1, "match": 11.2, "hash_encrypt_list": 3.1, "write_out": 0.1},
     "receipt": null | {"receipt": 1, "session": "…", "count": 1234, "audit_seq": 812, …},
     "receipt_verified": true, "receipt_file": null | "receipt.json",
     "warnings": ["12 identifiers not sent: the platform takes at most 3 per customer …"]}

``receipt`` is the platform's signed receipt for the session (its audit entry's sequence number
and hash with the session's facts); its signature is checked against the ``audit.pub`` in the
``--tls-dir`` folder when there is one, and a receipt that does not verify fails the run.
``--receipt FILE`` writes it, for ``cleanroom receipt verify`` and for holding the platform to
its log later (``cleanroom platform audit verify --receipt``).

``get_policy`` is the policy call's own duration, which overlaps ``read_list``; ``wait_policy``
is what was left of it after the list was read. ``plan_list`` groups the records and counts
them for the session's opening; ``hash_encrypt_list`` (U = E_a(H(x))) runs inside ``match``:
the session opens first, so the platform loads its set while the list is hashed. The object is
:meth:`~cleanroom.advertiser.MatchReport.to_dict`.

``warnings`` says what the advertiser should know though the match succeeded (they are printed
on stderr as well). ``records_read = without_consent + rejected.rows + sent``.
``rejected.by_reason`` counts every problem found: an ``invalid_<kind>`` value does not stop its
record from being sent if another identifier of the record is valid.

Exit codes (decided by :func:`cleanroom.cli.exit_code`): 0 done; 2 bad input (file, columns,
address, options); 1 the platform refused or failed the session (its message is printed), or
cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleanroom._output import NEUTRALIZED_CSV_HELP, printable
from cleanroom._textfile import parse_delimiter
from cleanroom.advertiser import (
    DEFAULT_MATCH_TIMEOUT,
    FIELDS,
    Advertiser,
    check_output_path,
    parse_column_mapping,
)
from cleanroom.cli import EXIT_OK
from cleanroom.cli._args import (
    add_dask_scheduler_option,
    batch_engine,
    positive_int,
    seconds,
    worker_count,
)
from cleanroom.crypto import SUITE_IDS
from cleanroom.errors import InvalidInput
from cleanroom.identifiers import KINDS
from cleanroom.policy import Mode
from cleanroom.protocol import DEFAULT_MAX_PLATFORM_SET_SIZE

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["register", "run_match"]


def register(subparsers: Any) -> None:
    """Add the ``match`` command."""
    description = (
        "Match a customer list (CSV: record_id,email,phone,maid,marketing_consent) against "
        "the platform's consented users by private set intersection."
    )
    parser = subparsers.add_parser(
        "match", help="match a customer list against the platform", description=description
    )
    parser.add_argument("--server", required=True, metavar="HOST:PORT", help="the platform")
    parser.add_argument("--input", required=True, type=Path, metavar="FILE.csv")
    parser.add_argument(
        "--mode",
        required=True,
        choices=[mode.value for mode in Mode],
        help="count: matched customers; audience: store matched users as an audience; "
        "ids: which of your records matched (the platform must allow it)",
    )
    parser.add_argument(
        "--tls-dir", type=Path, metavar="DIR", help="ca.crt, client.crt, client.key"
    )
    parser.add_argument(
        "--insecure", action="store_true", help="plaintext, only to a loopback address"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE.csv",
        help=f"ids mode (required there): write the matched rows here ({NEUTRALIZED_CSV_HELP})",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="FILE.html",
        help="also write the report as one self-contained HTML page (funnel, match rate, "
        "rejected rows, budget, receipt), to open in any browser",
    )
    parser.add_argument(
        "--receipt",
        type=Path,
        metavar="FILE",
        help="write the platform's signed receipt for the session here (JSON)",
    )
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="FIELD=NAME",
        help=f"read FIELD from column NAME (fields: {', '.join(FIELDS)})",
    )
    parser.add_argument(
        "--ignore-column",
        action="append",
        default=[],
        metavar="NAME",
        help="leave column NAME out; a column that is not read but looks like an identifier "
        "(e_mail, mobile, idfa, ...) stops the match unless mapped or ignored; repeatable",
    )
    parser.add_argument(
        "--delimiter",
        type=_delimiter,
        metavar="{,|;|tab||}",
        help="the list's field delimiter (default: found from its first lines)",
    )
    parser.add_argument(
        "--prehashed",
        action="append",
        default=[],
        choices=KINDS,
        metavar="KIND",
        help="the KIND column holds SHA-256 (hex or base64) of normalized values; repeatable",
    )
    parser.add_argument(
        "--default-region",
        metavar="CC",
        help="region of phone numbers without a country code (default: the platform's)",
    )
    parser.add_argument(
        "--suite", choices=SUITE_IDS, help="ciphersuite (default: the platform's preferred)"
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_MATCH_TIMEOUT,
        metavar="S",
        help="deadline of the session in seconds (default: %(default)g)",
    )
    parser.add_argument(
        "--workers",
        type=worker_count,
        help="processes for hashing and encryption (default: all CPUs; 1: this process)",
    )
    parser.add_argument(
        "--max-platform-set",
        type=positive_int,
        default=DEFAULT_MAX_PLATFORM_SET_SIZE,
        metavar="N",
        help="refuse a platform whose set is larger (about 100 bytes of memory and one scalar "
        "multiplication per element; default: %(default)s)",
    )
    add_dask_scheduler_option(parser)
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.set_defaults(run=run_match)


def run_match(args: argparse.Namespace) -> int:
    """``cleanroom match``: run one session and print its report."""
    columns = parse_column_mapping(args.column)
    if args.report is not None:
        check_output_path(args.report, args.input)
    if args.mode == Mode.IDS and args.out is None:
        # Refused here, before the session: an ids session tells the advertiser exactly which
        # records matched, and a run that keeps none of it is wasted on both sides.
        raise InvalidInput(
            "ids mode reveals which of your rows matched: give --out FILE.csv to write them"
        )
    with (
        _Progress() as progress,
        batch_engine(args.workers, args.dask_scheduler, verbose=args.verbose) as engine,
        Advertiser(
            args.server,
            args.tls_dir,
            insecure=args.insecure,
            engine=engine,
            timeout=args.timeout,
            max_platform_set=args.max_platform_set,
        ) as advertiser,
    ):
        report = advertiser.match(
            args.input,
            mode=args.mode,
            columns=columns,
            prehashed=args.prehashed,
            ignore_columns=args.ignore_column,
            delimiter=args.delimiter,
            region=args.default_region,
            out=args.out,
            receipt=args.receipt,
            progress=progress,
            suite=args.suite,
        )
    if args.report is not None:
        report.write_html(args.report, command=shlex.join(args.command_line))
    for warning in report.warnings:
        print(f"warning: {printable(warning)}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return EXIT_OK
    print("\n".join(map(printable, report.lines())))
    if args.report is not None:
        print(printable(f"  report:              {args.report} (open it in a browser)"))
    return EXIT_OK


def _delimiter(text: str) -> str:
    try:
        return parse_delimiter(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Progress:
    """One tqdm bar per phase on stderr, shown only on a terminal.

    Elsewhere (a pipe, a log file) nothing is shown, and tqdm is not even imported: a scripted
    run does not pay for loading it.
    """

    def __init__(self) -> None:
        self._bars: list[tqdm[Any]] = []
        self._shown = sys.stderr.isatty()

    def __call__(self, phase: str, total: int | None) -> Callable[[int], object]:
        if not self._shown:
            return _no_progress
        from tqdm import tqdm

        unit = "row" if total is None else "id"  # only the list's rows are not known in advance
        bar: tqdm[Any] = tqdm(total=total, desc=phase, unit=unit, unit_scale=True, file=sys.stderr)
        self._bars.append(bar)

        def update(done: int) -> None:
            bar.update(done)
            if total is not None and bar.n >= total:
                bar.close()

        return update

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for bar in self._bars:
            bar.close()


def _no_progress(done: int) -> None:
    del done
