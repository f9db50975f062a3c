"""The advertiser's workflow as a library: one platform, a warm connection, many matches.

::

    with Advertiser("platform.example:50051", "acme-tls") as advertiser:
        report = advertiser.match("customers.csv", mode="count")
        print(report.reported_as)

Order of work in :meth:`Advertiser.match`: the platform's policy is asked for first and arrives
while the list is read. The list is read in blocks (``_pipeline``): each block is normalized as
soon as it is read and the policy is in (phone numbers without a country code in the platform's
``default_region`` unless ``region`` is given), and its messages go to the batch engine's
workers, which hash and encrypt them while the next block is read. A session the policy refuses
whatever the list's size is refused before anything is hashed; the list is still read and
checked whole, and a bad list is reported before anything the platform says. Then the records
are grouped, the session opens, and the platform loads its set while the last blocks are
hashed. Rows without marketing consent are dropped while reading.

The channel and the workers stay up between matches, so a second match pays neither a TLS
handshake nor the workers' start-up.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from cleanroom._files import write_atomically
from cleanroom._output import quoted
from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom.advertiser._client import (
    DEFAULT_MATCH_TIMEOUT,
    Interceptor,
    PlatformClient,
    ServerAddress,
    parse_server_address,
)
from cleanroom.advertiser._listfile import (
    CustomerList,
    check_output_path,
    read_customer_list,
    read_customer_rows,
    write_matched_rows,
)
from cleanroom.advertiser._pipeline import ListPipeline
from cleanroom.advertiser._prepare import PreparedList, check_something_to_send
from cleanroom.advertiser._problems import ListProblem
from cleanroom.advertiser._report import MatchReport
from cleanroom.crypto import SUITE_IDS, BatchEngine, Suite, get_suite
from cleanroom.errors import (
    CleanroomError,
    ImportFailed,
    InvalidInput,
    PlatformFailed,
    PlatformRefused,
    ReceiptInvalid,
    VersionMismatch,
)
from cleanroom.policy import Mode
from cleanroom.protocol import (
    DEFAULT_MAX_PLATFORM_SET_SIZE,
    AdvertiserResult,
    AdvertiserRole,
    ProgressFactory,
    check_policy_info,
    session_terms,
)

__all__ = ["Advertiser", "ListSource"]

ListSource = str | os.PathLike[str] | Iterable[Mapping[str, object]]
"""A customer list: a CSV file's path, or its rows as mappings of column name -> value."""


class Advertiser:
    """An advertiser's connection to one platform, for one match after another.

    A context manager: leaving it closes the channel and stops the workers it started. Matches
    on one ``Advertiser`` run one at a time (the platform allows one open session per
    advertiser); calls from several threads wait for each other. A script runs its matches under
    ``if __name__ == "__main__":``, because the engine's worker processes import the main module
    (a notebook need not).

    Args:
        server: the platform's address, ``HOST:PORT`` (``[IPv6]:PORT``).
        tls_dir: the advertiser's TLS folder from ``cleanroom platform issue-cert``
            (``ca.crt``, ``client.crt``, ``client.key``); required unless ``insecure``.
        insecure: plaintext, allowed only to a loopback address (tests, a local platform).
        engine: the batch engine that hashes and encrypts; ``None``: one of this advertiser's
            own, with a worker per CPU core, started by the first large list and stopped by
            :meth:`close`. An engine given here is used but not closed.
        timeout: deadline of each whole match session, in seconds.
        max_platform_set: refuse a platform whose set is larger (the advertiser keeps about
            100 bytes and does one scalar multiplication per element of it).
        interceptors: gRPC client interceptors for every call (tracing, metrics).

    Raises:
        InvalidInput: a malformed address, both or neither of ``tls_dir`` and ``insecure``,
            ``insecure`` to a host that is not loopback, or a timeout that is not positive.
        TlsConfigError: the TLS folder cannot be used (the message names the file).
    """

    def __init__(
        self,
        server: str | ServerAddress,
        tls_dir: str | os.PathLike[str] | None = None,
        *,
        insecure: bool = False,
        engine: BatchEngine | None = None,
        timeout: float = DEFAULT_MATCH_TIMEOUT,
        max_platform_set: int = DEFAULT_MAX_PLATFORM_SET_SIZE,
        interceptors: Sequence[Interceptor] = (),
    ) -> None:
        address = server if isinstance(server, ServerAddress) else parse_server_address(server)
        if insecure and tls_dir is not None:
            raise InvalidInput("give either a TLS folder (--tls-dir) or --insecure, not both")
        self._client = PlatformClient(
            address,
            tls_dir=None if tls_dir is None else Path(tls_dir),
            insecure=insecure,
            match_timeout=timeout,
            interceptors=interceptors,
        )
        if max_platform_set < 1:
            raise InvalidInput(f"max_platform_set must be positive, not {max_platform_set}")
        self._max_platform_set = max_platform_set
        self._own_engine = engine is None
        self._engine = BatchEngine() if engine is None else engine
        self._lock = threading.Lock()
        self._closed = False

    @property
    def server(self) -> ServerAddress:
        """The platform's address."""
        return self._client.address

    @property
    def engine(self) -> BatchEngine:
        """The batch engine that hashes and encrypts the lists."""
        return self._engine

    def __repr__(self) -> str:
        return f"<Advertiser {self._client.address} engine={self._engine!r}>"

    def __enter__(self) -> Advertiser:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel and stop this advertiser's own workers. Safe to call twice."""
        with self._lock:  # after a match running on another thread
            self._closed = True
        self._client.close()
        if self._own_engine:
            self._engine.close()

    def match(
        self,
        source: ListSource,
        *,
        mode: Mode | str,
        columns: Mapping[str, str] | None = None,
        prehashed: Collection[str] = (),
        ignore_columns: Collection[str] = (),
        delimiter: str | None = None,
        region: str | None = None,
        out: str | os.PathLike[str] | None = None,
        receipt: str | os.PathLike[str] | None = None,
        progress: ProgressFactory | None = None,
        suite: str | None = None,
    ) -> MatchReport:
        """Match a customer list against the platform's consented users.

        Args:
            source: the list: a CSV file's path (UTF-8, a header row) or the rows themselves
                as mappings of column name -> value (see
                :func:`~cleanroom.advertiser.read_customer_rows`). By default the columns are
                ``record_id, email, phone, maid, marketing_consent``.
            mode: ``count`` (matched customers), ``audience`` (the platform stores the matched
                users as an audience) or ``ids`` (which records matched; the platform must
                allow it).
            columns: field -> column name, for fields whose column is named otherwise.
            prehashed: identifier kinds whose column holds SHA-256 (hex or base64) of
                normalized values.
            ignore_columns: columns to leave out. A column that is not read and whose name
                looks like an identifier field (``e_mail``, ``mobile``, ``idfa``) stops the
                match before any work unless it is mapped (``columns``) or named here.
            delimiter: a list file's field delimiter (``,`` ``;`` ``\\t`` ``|``); ``None``: found
                from its first lines.
            region: region of phone numbers without a country code; ``None``: the platform's.
            out: ids mode: write the matched rows of the list file here, unchanged.
            receipt: write the platform's signed receipt for the session here (JSON), for
                ``cleanroom receipt verify`` and for holding the platform to its audit log.
            progress: called as ``progress(phase, total)`` when a long phase starts; returns a
                callback that gets the number of items just done.
            suite: the ciphersuite; ``None``: the first the platform offers that this build
                implements.

        Returns:
            What was read, sent and learned (:meth:`MatchReport.to_dict` is the CLI's
            ``--json`` object).

        Raises:
            InvalidInput: a bad argument, or a list that cannot be used at all
                (:class:`~cleanroom.errors.ImportFailed`); nothing was sent.
            UnknownSuite: ``suite`` is not one this build implements.
            PlatformRefused: the platform refuses the session: its policy (mode, list size,
                budget, sessions left, suites), or the advertiser's identity. ``error`` says
                which (e.g. :class:`~cleanroom.errors.BudgetExhausted`).
            PlatformFailed: the platform failed the session, or sent invalid data.
            PlatformUnreachable: the platform cannot be reached or did not answer in time.
            ReceiptInvalid: the session completed, but the platform's receipt for it is
                missing (with ``receipt`` or an ``audit.pub`` in the TLS folder) or does not
                verify.
            ClusterUnreachable: the engine's Dask cluster failed.
        """
        try:
            mode = Mode(mode)
        except ValueError:
            modes = ", ".join(m.value for m in Mode)
            raise InvalidInput(f"unknown mode {mode!r} (modes: {modes})") from None
        given: Path | Iterable[Mapping[str, object]]
        given = Path(source) if isinstance(source, str | os.PathLike) else source
        path = given if isinstance(given, Path) else None
        out_path = None if out is None else Path(out)
        if out_path is not None:
            if mode is not Mode.IDS:
                raise InvalidInput(
                    f"out writes the matched rows, which only ids mode reveals, not {mode} mode"
                )
            if path is None:
                raise InvalidInput(
                    "out writes matched rows of a list file; for rows given in memory, the "
                    "report's matched_row_positions say which matched"
                )
            check_output_path(out_path, path)
        receipt_path = None if receipt is None else Path(receipt)
        if receipt_path is not None:
            check_output_path(receipt_path, path)
        chosen = None if suite is None else get_suite(suite)
        with self._lock:
            if self._closed:
                raise ValueError("this Advertiser is closed")
            return self._match(
                given,
                mode=mode,
                columns=columns,
                prehashed=frozenset(prehashed),
                ignore_columns=tuple(ignore_columns),
                delimiter=delimiter,
                region=region,
                out=out_path,
                receipt=receipt_path,
                progress=progress,
                suite=chosen,
            )

    def _match(
        self,
        source: Path | Iterable[Mapping[str, object]],
        *,
        mode: Mode,
        columns: Mapping[str, str] | None,
        prehashed: frozenset[str],
        ignore_columns: tuple[str, ...],
        delimiter: str | None,
        region: str | None,
        out: Path | None,
        receipt: Path | None,
        progress: ProgressFactory | None,
        suite: Suite | None,
    ) -> MatchReport:
        client, engine = self._client, self._engine
        phases: dict[str, float] = {"read_list": 0.0}
        most = self._max_platform_set

        def decide(info: pb.PolicyInfo) -> Suite:
            # What the policy refuses whatever the list's size, before anything is hashed.
            chosen = suite or _offered_suite(info)
            _check_policy(info, mode, chosen, info.min_upload_records, most)
            return chosen

        # Asked while the list is read: the platform's side of the call (counting its set)
        # overlaps the reading instead of following it. A bad list is still reported first.
        asked = client.ask_policy()
        pipeline = ListPipeline(
            engine, asked, decide=decide, region=region, prehashed=prehashed, phases=phases
        )
        try:
            with _timed(phases, "read_list"):  # normalizing and hashing blocks as they come
                customers = _read(
                    source, columns, prehashed, ignore_columns, delimiter, progress, pipeline
                )
            prepared = pipeline.finish(customers)
            check_something_to_send(customers, prepared)
            encryption = pipeline.encryption()
            chosen = pipeline.suite
            info = pipeline.info
            # Records sent bound the customers from above.
            _check_policy(info, mode, chosen, prepared.records_sent, most)
            terms = session_terms(info, max_platform_set_size=most)
            with _timed(phases, "plan_list"):  # the role groups the records when built
                role = AdvertiserRole(
                    chosen,
                    mode,
                    encryption,
                    prepared.record_ids,
                    engine=engine,
                    progress=progress,
                    terms=terms,
                )
        except BaseException:
            asked.cancel()
            pipeline.abandon()
            raise
        # What the report says of the list, instead of the list: its per-record lists (millions
        # of objects, with the blocks the pipeline prepared) are freed now, while the workers
        # hash, rather than once the match is over, when nothing else is left to do.
        facts = _ListFacts.of(customers, prepared)
        del customers, prepared, pipeline
        warnings = []
        if role.identifiers_withheld:
            warnings.append(
                f"{role.identifiers_withheld} identifiers not sent: the platform takes at most "
                f"{terms.max_identifiers_per_record} per customer (records linked by a shared "
                "identifier are one customer)"
            )
        try:
            _check_policy(info, mode, chosen, role.record_count, most)
        except BaseException:
            role.abandon()
            raise
        with _timed(phases, "match"):
            result = client.match(role)
        if role.encrypt_seconds is not None:
            phases["hash_encrypt_list"] = role.encrypt_seconds
        matched = None
        if result.matched_record_ids is not None:
            matched = tuple(result.matched_record_ids.tolist())
            if out is not None:
                assert isinstance(source, Path)  # checked by match
                with _timed(phases, "write_out"):
                    write_matched_rows(
                        source, out, result.matched_record_ids, delimiter=facts.delimiter
                    )
        if receipt is not None:
            _write_receipt(receipt, result)
        return MatchReport(
            mode=mode,
            server=str(client.address),
            input=facts.path,
            suite_id=chosen.suite_id,
            epoch_id=result.epoch_id,
            platform_set_size=result.platform_set_size,
            records_read=facts.records_read,
            without_consent=facts.without_consent,
            rows_rejected=facts.rows_rejected,
            problems=facts.problems,
            sent=facts.records_sent,
            identifiers_sent=role.identifier_count,
            customers=role.record_count,
            count=result.count,
            reported_as=result.reported_as,
            noise_applied=result.noise_applied,
            epsilon_spent=result.epsilon_charged,
            epsilon_remaining=result.epsilon_remaining,
            matched_rows=None if matched is None else len(matched),
            out=out if matched is not None else None,
            phases=phases,
            receipt=result.receipt,
            receipt_verified=result.receipt_verified,
            receipt_file=receipt,
            matched_row_positions=matched,
            warnings=tuple(warnings),
            columns=facts.columns,
            unused_columns=facts.unused_columns,
            delimiter=facts.delimiter,
            epsilon_per_release=info.epsilon_per_release,
            epsilon_budget=info.epsilon_budget,
            min_reported_count=info.min_reported_count,
            identifiers_by_kind=facts.identifiers_by_kind,
            completed_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        )


@dataclass(frozen=True)
class _ListFacts:
    """What a match's report says of its list, kept for the session instead of the list."""

    path: Path | None
    records_read: int
    without_consent: int
    delimiter: str
    columns: Mapping[str, str]
    unused_columns: tuple[str, ...]
    rows_rejected: int
    problems: tuple[ListProblem, ...]
    records_sent: int
    identifiers_by_kind: dict[str, int]

    @classmethod
    def of(cls, customers: CustomerList, prepared: PreparedList) -> _ListFacts:
        return cls(
            path=customers.path,
            records_read=customers.records_read,
            without_consent=customers.without_consent,
            delimiter=customers.delimiter,
            columns=customers.columns,
            unused_columns=customers.unused_columns,
            rows_rejected=prepared.rows_rejected,
            problems=prepared.problems,
            records_sent=prepared.records_sent,
            identifiers_by_kind=prepared.identifiers_by_kind,
        )


def _read(
    source: Path | Iterable[Mapping[str, object]],
    columns: Mapping[str, str] | None,
    prehashed: frozenset[str],
    ignore_columns: tuple[str, ...],
    delimiter: str | None,
    progress: ProgressFactory | None,
    pipeline: ListPipeline,
) -> CustomerList:
    rows_read = None if progress is None else progress("read list", None)
    if isinstance(source, Path):
        return read_customer_list(
            source,
            column_mapping=columns,
            prehashed=prehashed,
            ignore_columns=ignore_columns,
            delimiter=delimiter,
            progress=rows_read,
            blocks=pipeline.block,
        )
    if delimiter is not None:
        raise InvalidInput("delimiter applies to a list file, not to rows given in memory")
    return read_customer_rows(
        source,
        column_mapping=columns,
        prehashed=prehashed,
        ignore_columns=ignore_columns,
        progress=rows_read,
        blocks=pipeline.block,
    )


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


def _offered_suite(info: pb.PolicyInfo) -> Suite:
    """The first suite the platform offers that this build implements."""
    for suite_id in info.suites:
        if suite_id in SUITE_IDS:
            return get_suite(suite_id)
    offered = ", ".join(quoted(suite) for suite in info.suites[:8]) or "none"
    error = VersionMismatch(
        f"the platform offers no suite this client implements (offered: {offered}; "
        f"implemented: {', '.join(SUITE_IDS)})"
    )
    raise PlatformRefused(str(error), error)


def _check_policy(
    info: pb.PolicyInfo, mode: Mode, suite: Suite, record_count: int, max_platform_set: int
) -> None:
    """Refuse, as the platform would, a session its published policy does not allow."""
    try:
        check_policy_info(
            info,
            mode=mode,
            suite_id=suite.suite_id,
            record_count=record_count,
            max_platform_set_size=max_platform_set,
        )
    except InvalidInput as exc:
        # A value no honest platform sends: its failure, not this caller's bad input.
        raise PlatformFailed(f"the platform sent invalid data: {exc}", exc) from exc
    except CleanroomError as exc:
        raise PlatformRefused(f"the platform's policy refuses the session: {exc}", exc) from exc


@contextmanager
def _timed(phases: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = time.perf_counter() - started
