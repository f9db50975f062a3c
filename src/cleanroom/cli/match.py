"""``cleanroom match``: the advertiser matches its customer list against the platform's users.

::

    cleanroom match --server HOST:PORT --input FILE.csv --mode count|audience|ids
                    --tls-dir DIR | --insecure
                    [--column FIELD=NAME] [--prehashed KIND] [--default-region CC]
                    [--out matched.csv] [--receipt FILE] [--suite ID] [--timeout S] [--json]
                    [--workers N | --dask-scheduler tls://HOST:PORT]

Order of work: the list is read and checked whole while the platform's policy is fetched in
the background (its ``default_region`` normalizes phone numbers unless ``--default-region`` is
given; a bad list is reported before anything the platform says), the list is normalized and
checked against the policy, hashed and encrypted, and only then is the session opened. Rows
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
     "server": "...", "input": "...", "suite": "...", "epoch_id": 3,
     "platform_set_size": 1000000,
     "phases": {"read_list": 0.4, "get_policy": 0.01, "wait_policy": 0.0, "normalize": 1.2,
                "plan_list": 0.1, "match": 11.2, "hash_encrypt_list": 3.1, "write_out": 0.1},
     "receipt": null | {"receipt": 1, "session": "…", "count": 1234, "audit_seq": 812, …},
     "receipt_verified": true, "receipt_file": null | "receipt.json"}

``receipt`` is the platform's signed receipt for the session (its audit entry's sequence number
and hash with the session's facts); its signature is checked against the ``audit.pub`` in the
``--tls-dir`` folder when there is one, and a receipt that does not verify fails the run.
``--receipt FILE`` writes it, for ``cleanroom receipt verify`` and for holding the platform to
its log later (``cleanroom platform audit verify --receipt``).

``get_policy`` is the policy call's own duration, which overlaps ``read_list``; ``wait_policy``
is what was left of it after the list was read. ``plan_list`` groups the records and counts
them for the session's opening; ``hash_encrypt_list`` (U = E_a(H(x))) runs inside ``match``:
the session opens first, so the platform loads its set while the list is hashed.

``records_read = without_consent + rejected.rows + sent``. ``rejected.by_reason`` counts every
problem found: an ``invalid_<kind>`` value does not stop its record from being sent if another
identifier of the record is valid.

Exit codes: 0 done; 2 bad input (file, columns, address, options); 1 the platform refused or
failed the session (its message is printed), or cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped, unused-ignore]
from tqdm import tqdm

from cleanroom._files import write_atomically
from cleanroom._output import NEUTRALIZED_CSV_HELP, printable, quoted
from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom.advertiser import (
    DEFAULT_MATCH_TIMEOUT,
    FIELDS,
    MatchReport,
    PlatformClient,
    check_output_path,
    parse_column_mapping,
    parse_server_address,
    prepare_list,
    read_customer_list,
    write_matched_rows,
)
from cleanroom.cli import EXIT_FAILURE, EXIT_OK
from cleanroom.cli._args import (
    add_dask_scheduler_option,
    batch_engine,
    positive_float,
    positive_int,
)
from cleanroom.crypto import SUITE_IDS, default_engine, get_suite
from cleanroom.crypto.suites import Suite
from cleanroom.errors import (
    CleanroomError,
    ImportFailed,
    InvalidInput,
    InvalidMessage,
    LimitExceeded,
    PermissionDenied,
    PlatformUnreachable,
    PolicyRefused,
    ProtocolError,
    ReceiptInvalid,
    Unauthenticated,
    VersionMismatch,
)
from cleanroom.identifiers import KINDS
from cleanroom.policy import Mode
from cleanroom.protocol import (
    DEFAULT_MAX_PLATFORM_SET_SIZE,
    AdvertiserResult,
    AdvertiserRole,
    check_policy_info,
    session_terms,
)

__all__ = ["register", "run_match"]

_T = TypeVar("_T")

# What the platform sends back when it will not run the session as asked (DESIGN §9).
_REFUSALS = (
    InvalidInput,
    LimitExceeded,
    PermissionDenied,
    PolicyRefused,
    ProtocolError,
    Unauthenticated,
)


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
        help=f"ids mode: write the matched rows here ({NEUTRALIZED_CSV_HELP})",
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
        type=positive_float,
        default=DEFAULT_MATCH_TIMEOUT,
        metavar="S",
        help="deadline of the session in seconds (default: %(default)g)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
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
    mode = Mode(args.mode)
    address = parse_server_address(args.server)
    if args.insecure and args.tls_dir is not None:
        raise InvalidInput("give either --tls-dir or --insecure, not both")
    if args.out is not None:
        if mode is not Mode.IDS:
            raise InvalidInput(
                f"--out writes the matched rows, which only ids mode reveals, not {mode} mode"
            )
        check_output_path(args.out, args.input)
    if args.receipt is not None:
        check_output_path(args.receipt, args.input)
    mapping = parse_column_mapping(args.column)
    prehashed = frozenset(args.prehashed)
    phases: dict[str, float] = {}

    with _Progress() as progress, batch_engine(args.workers, args.dask_scheduler) as engine:
        in_session = False
        try:
            # The client closes first, which cancels a policy call still in flight, so leaving
            # the thread pool never waits for the platform.
            with (
                ThreadPoolExecutor(2, thread_name_prefix="match-background") as background,
                PlatformClient(
                    address,
                    tls_dir=args.tls_dir,
                    insecure=args.insecure,
                    match_timeout=args.timeout,
                ) as client,
            ):
                # Asked while the list is read: the platform's side of the call (counting its
                # set) overlaps the reading instead of following it. A bad list is still
                # reported first, before any answer from the platform.
                asked = background.submit(_timed_call, client.get_policy)
                with _timed(phases, "read_list"):
                    customers = read_customer_list(
                        args.input,
                        column_mapping=mapping,
                        prehashed=prehashed,
                        progress=progress("read list", None, "row"),
                    )
                workers = engine or default_engine()
                if len(customers.rows) > workers.chunk_size:
                    # A list too large for one chunk will be hashed on the workers: start them
                    # now, so their start-up overlaps the normalization, not the hashing. On a
                    # thread: the first worker waits for the fork server to load the crypto
                    # modules (about 0.2 s), which the normalization need not wait for. A
                    # failure to start shows again, and is reported, at the first real job.
                    background.submit(workers.start)
                with _timed(phases, "wait_policy"):
                    info, phases["get_policy"] = asked.result()
                suite = _choose_suite(info, args.suite)
                region = args.default_region or info.default_region or "US"
                with _timed(phases, "normalize"):
                    prepared = prepare_list(customers, default_region=region, prehashed=prehashed)
                # Records sent bound the customers from above: a refusal now saves the hashing.
                check_policy_info(
                    info,
                    mode=mode,
                    suite_id=suite.suite_id,
                    record_count=prepared.records_sent,
                    max_platform_set_size=args.max_platform_set,
                )
                terms = session_terms(info, max_platform_set_size=args.max_platform_set)
                with _timed(phases, "plan_list"):  # the role groups the records when built
                    role = AdvertiserRole(
                        suite,
                        mode,
                        prepared.messages,
                        prepared.record_ids,
                        engine=engine,
                        progress=progress,
                        terms=terms,
                    )
                if role.identifiers_withheld:
                    print(
                        f"warning: {role.identifiers_withheld} identifiers not sent: the "
                        f"platform takes at most {terms.max_identifiers_per_record} per customer "
                        "(records linked by a shared identifier are one customer)",
                        file=sys.stderr,
                    )
                check_policy_info(
                    info, mode=mode, suite_id=suite.suite_id, record_count=role.record_count
                )
                in_session = True
                with _timed(phases, "match"):
                    result = client.match(role)
                if role.encrypt_seconds is not None:
                    phases["hash_encrypt_list"] = role.encrypt_seconds
        except CleanroomError as exc:
            if isinstance(exc.__cause__, grpc.RpcError) and not isinstance(
                exc, PlatformUnreachable
            ):
                # The platform's own refusal or failure, not bad input on this side: exit 1.
                print(f"error: {printable(_from_platform(exc))}", file=sys.stderr)
                return EXIT_FAILURE
            if isinstance(exc, InvalidMessage) or (in_session and isinstance(exc, InvalidInput)):
                # Bad data from the platform (its policy answer, or anything in the session) is
                # not this user's bad input (exit 2).
                shown = printable(str(exc))
                print(f"error: the platform sent invalid data: {shown}", file=sys.stderr)
                return EXIT_FAILURE
            raise

    matched_rows = None
    if result.matched_record_ids is not None:
        matched_rows = len(result.matched_record_ids)
        if args.out is not None:
            with _timed(phases, "write_out"):
                write_matched_rows(args.input, args.out, result.matched_record_ids.tolist())
    if args.receipt is not None:
        _write_receipt(args.receipt, result)
    report = MatchReport(
        mode=mode,
        server=str(address),
        input=args.input,
        suite_id=suite.suite_id,
        epoch_id=result.epoch_id,
        platform_set_size=info.platform_set_size,
        records_read=customers.records_read,
        without_consent=customers.without_consent,
        rows_rejected=prepared.rows_rejected,
        problems=prepared.problems,
        sent=prepared.records_sent,
        identifiers_sent=role.identifier_count,
        customers=role.record_count,
        count=result.count,
        reported_as=result.reported_as,
        noise_applied=result.noise_applied,
        epsilon_spent=result.epsilon_charged,
        epsilon_remaining=result.epsilon_remaining,
        matched_rows=matched_rows,
        out=args.out if matched_rows is not None else None,
        phases=phases,
        receipt=result.receipt,
        receipt_verified=result.receipt_verified,
        receipt_file=args.receipt,
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(map(printable, report.lines())))
    return EXIT_OK


def _write_receipt(path: Path, result: AdvertiserResult) -> None:
    """Write the session's receipt (the session completed and was charged: keep its proof).

    Raises:
        ReceiptInvalid: the platform sent no receipt.
        ImportFailed: the file cannot be written.
    """
    if result.receipt is None:
        raise ReceiptInvalid(
            f"the platform sent no receipt for session {result.session_id.hex()}; nothing "
            f"written to {path}"
        )
    write_atomically(path, result.receipt.to_json(indent=2), 0o644, ImportFailed)


def _from_platform(error: CleanroomError) -> str:
    """Say whether the platform refused (the caller may act on it) or failed on its side."""
    text = str(error)
    if text.startswith("the platform"):
        return text
    refused = isinstance(error, _REFUSALS)
    return f"the platform {'refused' if refused else 'failed'}: {text}"


def _choose_suite(info: pb.PolicyInfo, requested: str | None) -> Suite:
    """The requested suite, else the first the platform offers that this build implements."""
    if requested is not None:
        return get_suite(requested)
    for suite_id in info.suites:
        if suite_id in SUITE_IDS:
            return get_suite(suite_id)
    offered = ", ".join(quoted(suite) for suite in info.suites[:8]) or "none"
    raise VersionMismatch(
        f"the platform offers no suite this client implements (offered: {offered}; "
        f"implemented: {', '.join(SUITE_IDS)})"
    )


class _Progress:
    """One tqdm bar per phase on stderr, shown only on a terminal (``disable=None``)."""

    def __init__(self) -> None:
        self._bars: list[tqdm[Any]] = []

    def __call__(self, phase: str, total: int | None, unit: str = "id") -> Callable[[int], object]:
        bar: tqdm[Any] = tqdm(
            total=total, desc=phase, unit=unit, unit_scale=True, disable=None, file=sys.stderr
        )
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


def _timed_call(call: Callable[[], _T]) -> tuple[_T, float]:
    """Call ``call``; return its result and how long it took, in seconds."""
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


@contextmanager
def _timed(phases: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = time.perf_counter() - started
