"""``cleanroom platform …``: the ad platform's data — database, imports, consent, epochs, audit.

Commands::

    cleanroom platform init --db PATH [--server-name NAME]...
    cleanroom platform import --db PATH FILE.csv [--column FIELD=NAME] [--rejects OUT.csv] [--json]
    cleanroom platform consent grant|revoke --db PATH --user ID [--type T]
    cleanroom platform consent opt-out|clear-opt-out --db PATH --user ID --kind KIND
    cleanroom platform consent import --db PATH FILE.csv [--column FIELD=NAME] [--json]
    cleanroom platform user delete --db PATH --user ID
    cleanroom platform epoch rotate|refresh --db PATH [--workers N | --dask-scheduler URL]
                                            [--suite ID]
    cleanroom platform sources list --db PATH [--json]
    cleanroom platform sources permit|deny --db PATH NAME...
    cleanroom platform status --db PATH [--json]
    cleanroom platform audit verify --db PATH [--key audit.pub] [--receipt FILE]... [--json]
    cleanroom platform audit show --db PATH [--limit N] [--json]
    cleanroom platform serve|issue-cert|audiences|sessions …   (see cli/platform_service.py)

Every command that writes appends a signed audit entry: the audit signing key is read from
``keys/audit.key`` beside the database, or from ``$CLEANROOM_AUDIT_KEY`` (see
:mod:`cleanroom.store.audit_key`).

Everything here is presentation: the work is done by :mod:`cleanroom.store`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from cleanroom import tls
from cleanroom._output import NEUTRALIZED_CSV_HELP, csv_writer, printable
from cleanroom.cli import EXIT_OK, error_object, exit_code
from cleanroom.cli._args import (
    add_dask_scheduler_option,
    batch_engine,
    db_command,
    positive_int,
    print_json,
    worker_count,
)
from cleanroom.cli._table import Column, print_table
from cleanroom.cli.platform_service import register_service_commands
from cleanroom.crypto import DEFAULT_SUITE_ID, SUITE_IDS, default_engine
from cleanroom.errors import ImportFailed
from cleanroom.identifiers import DEFAULT_REGION, KINDS
from cleanroom.store import audit, audit_key, consent, epochs, importer, sources, status, users
from cleanroom.store.csvfile import RowRejection, parse_column_mapping
from cleanroom.store.database import init_database, open_database
from cleanroom.store.eligibility import NEVER_PERMITTED_SOURCES

__all__ = ["register"]

_REJECTS_HELP = f"write every rejected row to this CSV file ({NEUTRALIZED_CSV_HELP})"


def register(subparsers: Any) -> None:
    """Add the ``platform`` command group."""
    platform = subparsers.add_parser(
        "platform", help="the ad platform's data: users, consent, key epochs, audit log"
    )
    commands = platform.add_subparsers(dest="platform_command", metavar="COMMAND", required=True)

    init = db_command(
        commands, "init", "create the database, its private key directory and its TLS identity"
    )
    init.add_argument(
        "--server-name",
        action="append",
        default=[],
        metavar="NAME",
        help="another DNS name or IP address for the server certificate (repeatable; "
        "localhost and 127.0.0.1 are always included)",
    )
    init.set_defaults(run=run_init)

    imp = db_command(commands, "import", "import the platform CSV (one row per identifier)")
    imp.add_argument("file", type=Path, metavar="FILE.csv")
    _add_column_option(imp, (*importer.REQUIRED_FIELDS, *importer.OPTIONAL_FIELDS))
    imp.add_argument(
        "--default-region",
        default=DEFAULT_REGION,
        help="region of phone numbers written without a country code (default: %(default)s)",
    )
    imp.add_argument(
        "--chunk-rows",
        type=positive_int,
        default=importer.DEFAULT_CHUNK_ROWS,
        help="rows per transaction (default: %(default)s)",
    )
    imp.add_argument("--rejects", type=Path, help=_REJECTS_HELP)
    imp.add_argument("--json", action="store_true", help="print the report as one JSON object")
    imp.set_defaults(run=run_import)

    _register_consent(commands)
    register_service_commands(commands)

    user = commands.add_parser("user", help="user management")
    user_commands = user.add_subparsers(dest="user_command", metavar="COMMAND", required=True)
    delete = db_command(
        user_commands, "delete", "delete a user: erase identifiers, leave audiences"
    )
    delete.add_argument("--user", required=True, help="the user's id")
    delete.set_defaults(run=run_user_delete)

    epoch = commands.add_parser("epoch", help="key epochs and the precomputed set V")
    epoch_commands = epoch.add_subparsers(dest="epoch_command", metavar="COMMAND", required=True)
    rotate = db_command(
        epoch_commands, "rotate", "new key, V for every eligible identifier, atomic switch"
    )
    rotate.add_argument(
        "--suite", default=DEFAULT_SUITE_ID, choices=SUITE_IDS, help="ciphersuite of the epoch"
    )
    _add_workers_option(rotate)
    add_dask_scheduler_option(rotate)
    rotate.set_defaults(run=run_epoch_rotate)
    refresh = db_command(
        epoch_commands, "refresh", "append identifiers that became eligible since the rotation"
    )
    _add_workers_option(refresh)
    add_dask_scheduler_option(refresh)
    refresh.set_defaults(run=run_epoch_refresh)

    _register_sources(commands)

    stat = db_command(commands, "status", "counts of users, identifiers, exclusions, epoch")
    stat.add_argument("--json", action="store_true", help="print one JSON object")
    stat.set_defaults(run=run_status)

    log = commands.add_parser("audit", help="the signed, hash-chained audit log")
    log_commands = log.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = db_command(
        log_commands,
        "verify",
        "check the chain, its signatures, the session ledger against it, and receipts "
        "(exit 1 naming what is wrong)",
    )
    verify.add_argument(
        "--key",
        type=Path,
        metavar="audit.pub",
        help="the audit public key to check signatures with (default: audit.pub beside --db)",
    )
    verify.add_argument(
        "--receipt",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a session receipt whose entry the log must still hold unchanged (repeatable)",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(run=run_audit_verify)
    show = db_command(log_commands, "show", "list entries")
    show.add_argument("--limit", type=positive_int, help="only the last N entries")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(run=run_audit_show)


def _register_consent(commands: Any) -> None:
    group = commands.add_parser("consent", help="consent changes and opt-outs")
    sub = group.add_subparsers(dest="consent_command", metavar="COMMAND", required=True)
    for name, help_text in (
        ("grant", "grant ads-matching consent on a user's identifiers"),
        ("revoke", "revoke ads-matching consent (the user leaves stored audiences)"),
    ):
        command = db_command(sub, name, help_text)
        command.add_argument("--user", required=True, help="the user's id")
        command.add_argument("--type", choices=KINDS, help="only identifiers of this type")
        command.set_defaults(run=run_consent_change, granted=name == "grant")
    for name, help_text in (
        ("opt-out", "record an opt-out (the user leaves stored audiences)"),
        ("clear-opt-out", "withdraw an opt-out"),
    ):
        command = db_command(sub, name, help_text)
        command.add_argument("--user", required=True, help="the user's id")
        command.add_argument("--kind", required=True, choices=tuple(consent.OPT_OUTS))
        command.set_defaults(run=run_opt_out, active=name == "opt-out")
    bulk = db_command(sub, "import", "apply a CSV of changes: user_id,purpose,value[,type][,at]")
    bulk.add_argument("file", type=Path, metavar="FILE.csv")
    _add_column_option(bulk, (*consent.CONSENT_FILE_REQUIRED, *consent.CONSENT_FILE_OPTIONAL))
    bulk.add_argument("--rejects", type=Path, help=_REJECTS_HELP)
    bulk.add_argument("--json", action="store_true", help="print the report as one JSON object")
    bulk.set_defaults(run=run_consent_import)


def _register_sources(commands: Any) -> None:
    group = commands.add_parser(
        "sources", help="the platform's own source names: which may be used for ads"
    )
    sub = group.add_subparsers(dest="sources_command", metavar="COMMAND", required=True)
    listing = db_command(sub, "list", "registered sources, and unregistered ones in the data")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(run=run_sources_list)
    for name, help_text in (
        ("permit", "permit sources for ads (their identifiers become eligible at once)"),
        ("deny", "deny sources (their identifiers stop being eligible and leave audiences)"),
    ):
        command = db_command(sub, name, help_text)
        command.add_argument("names", nargs="+", metavar="NAME", help="source names")
        command.set_defaults(run=run_sources_change, permitted=name == "permit")


def _add_column_option(parser: argparse.ArgumentParser, fields: tuple[str, ...]) -> None:
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="FIELD=NAME",
        help=f"read FIELD from column NAME (fields: {', '.join(fields)})",
    )
    parser.set_defaults(column_fields=fields)


def _add_workers_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=worker_count,
        help="processes for hash + encrypt (default: all CPUs; 1 runs in this process)",
    )


def _progress(label: str, unit: str) -> tqdm[Any]:
    # disable=None: the bar shows only when stderr is a terminal.
    return tqdm(desc=label, unit=unit, unit_scale=True, disable=None, file=sys.stderr)


@contextmanager
def _rejects_writer(path: Path | None) -> Iterator[Callable[[RowRejection], object] | None]:
    if path is None:
        yield None
        return
    try:
        stream: TextIO = path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise ImportFailed(f"cannot write rejects file {path}: {exc.strerror or exc}") from exc
    with stream:
        writer = csv_writer(stream)
        writer.writerow(["row", "column", "reason", "detail"])
        yield lambda r: writer.writerow([r.row, r.column or "", r.reason, r.detail])


# -- commands ---------------------------------------------------------------------------------


def run_init(args: argparse.Namespace) -> int:
    """``platform init``."""
    db, created = init_database(args.db)
    with db:
        if created:
            print(f"created platform database {db.path} (mode 0600)")
        else:
            print(f"platform database {db.path} already exists; nothing changed")
        print(f"  keys:   {db.keys_dir} (mode 0700)")
        print(f"  epochs: {db.epochs_dir} (mode 0700)")
        print(
            f"  audit:  signing key {db.audit_key_path} (mode 0600), public key "
            f"{db.audit_public_key_path}"
        )
    tls_dir = tls.default_tls_dir(db.path)
    names = list(dict.fromkeys([*tls.DEFAULT_SERVER_NAMES, *args.server_name]))
    if (tls_dir / tls.CA_CERT_FILE).exists():
        # Replacing the CA would invalidate every advertiser certificate: never on a re-run.
        print(f"  tls:    {tls_dir} already holds a CA; unchanged")
    else:
        tls.create_platform_tls(tls_dir, server_names=names)
        print(f"  tls:    {tls_dir} (CA and server certificate for {', '.join(names)})")
    return 0


def run_import(args: argparse.Namespace) -> int:
    """``platform import``."""
    mapping = parse_column_mapping(args.column, args.column_fields)
    with open_database(args.db) as db, _rejects_writer(args.rejects) as on_reject:
        bar = _progress("import", "row")
        with bar:
            report = importer.import_platform_csv(
                db,
                args.file,
                column_mapping=mapping,
                default_region=args.default_region,
                chunk_rows=args.chunk_rows,
                progress=bar.update,
                on_reject=on_reject,
                on_start=lambda scan: bar.reset(total=max(scan.lines - 1, 0)),
            )
    refused = _every_row_rejected(report.path, report.rows, report.rejected)
    if args.json:
        data = report.to_dict()
        data["examples"] = [vars(example) for example in report.examples]
        data["source_unknown"]["examples"] = [
            {"row": row, "source": source} for row, source in report.unknown_source_examples
        ]
        return _report_json(data, refused)
    print(f"imported {report.path}: {report.rows} rows")
    print(
        f"  identifiers added {report.added}, updated {report.updated}, "
        f"unchanged {report.unchanged}; users added {report.users_added}"
    )
    _print_rejections(report.rejected, report.examples, importer.REJECTION_REASONS)
    if report.never_permitted_with_consent:
        print(
            f"  {report.never_permitted_with_consent} rows from never-permitted sources "
            f"({', '.join(sorted(NEVER_PERMITTED_SOURCES))}) claimed consent: stored, "
            "never eligible"
        )
    if report.source_unknown:
        named = ", ".join(f"{name} {count}" for name, count in report.unknown_sources.most_common())
        print(
            f"  {report.source_unknown} rows from sources the platform has not registered "
            f"({named}): stored, never eligible until permitted with 'cleanroom platform "
            "sources permit NAME'"
        )
        for row, source in report.unknown_source_examples:
            print(f"    row {row}: source {source!r}")
    if report.shared_identifiers:
        print(
            f"  {report.shared_identifiers} rows hold an identifier that more than one user "
            "has (all kept):"
        )
        for row, kind, holders in report.shared_examples:
            print(f"    row {row}: {kind} held by {holders} users")
    return _refusal(refused)


def _every_row_rejected(
    path: Path | str, rows: int, rejected: Mapping[str, int]
) -> ImportFailed | None:
    """The error of a file none of whose rows could be used (exit 2), or ``None``."""
    if rows == 0 or sum(rejected.values()) < rows:
        return None
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(rejected.items()))
    return ImportFailed(f"every row of {path} was rejected ({reasons}): nothing was imported")


def _report_json(data: dict[str, Any], refused: ImportFailed | None) -> int:
    """Print an import's JSON report, with the error object's ``error`` when it failed."""
    if refused is None:
        print_json(data)
        return EXIT_OK
    data.update(error_object(type(refused).__name__, str(refused), exit_code(refused)))
    print_json(data)
    return _refusal(refused)


def _refusal(refused: ImportFailed | None) -> int:
    if refused is None:
        return EXIT_OK
    print(f"error: {printable(str(refused))}", file=sys.stderr)
    return exit_code(refused)


def _print_rejections(
    rejected: dict[str, int], examples: list[RowRejection], reasons: dict[str, str]
) -> None:
    total = sum(rejected.values())
    if not total:
        print("  rejected 0 rows")
        return
    print(f"  rejected {total} rows:")
    for reason, count in sorted(rejected.items()):
        print(f"    {reason} ({reasons.get(reason, reason)}): {count}")
        for example in examples:
            if example.reason == reason:
                column = f", column {example.column!r}" if example.column else ""
                # Details quote the file's cells: escaped, so a cell cannot act on the terminal.
                print(printable(f"      row {example.row}{column}: {example.detail}"))


def run_consent_change(args: argparse.Namespace) -> int:
    """``platform consent grant|revoke``."""
    with open_database(args.db) as db:
        if args.granted:
            change = consent.grant(db, args.user, kind=args.type)
        else:
            change = consent.revoke(db, args.user, kind=args.type)
    verb = "granted" if args.granted else "revoked"
    scope = f" {args.type}" if args.type else ""
    user = printable(args.user)
    print(f"{verb} ads-matching consent on {change.identifiers}{scope} identifiers of {user}")
    if change.never_permitted:
        print(
            f"  {change.never_permitted} of them come from never-permitted sources and stay "
            "ineligible"
        )
    if change.audiences_left:
        print(f"  removed from {change.audiences_left} stored audiences")
    return 0


def run_opt_out(args: argparse.Namespace) -> int:
    """``platform consent opt-out|clear-opt-out``."""
    with open_database(args.db) as db:
        change = consent.set_opt_out(db, args.user, args.kind, args.active)
    print(f"{'recorded' if args.active else 'cleared'} {args.kind} for {printable(args.user)}")
    if change.audiences_left:
        print(f"  removed from {change.audiences_left} stored audiences")
    return 0


def run_consent_import(args: argparse.Namespace) -> int:
    """``platform consent import``."""
    mapping = parse_column_mapping(args.column, args.column_fields)
    with open_database(args.db) as db, _rejects_writer(args.rejects) as on_reject:
        bar = _progress("consent", "row")
        with bar:
            report = consent.import_consent_csv(
                db, args.file, column_mapping=mapping, progress=bar.update, on_reject=on_reject
            )
    refused = _every_row_rejected(report.path, report.rows, report.rejected)
    if args.json:
        data = report.to_dict()
        data["examples"] = [vars(example) for example in report.examples]
        return _report_json(data, refused)
    print(f"applied {report.path}: {report.rows} rows")
    print(
        f"  identifier consents changed {report.identifiers_changed}, users' opt-outs changed "
        f"{report.users_changed}, rows without effect {report.stale}"
    )
    reasons = {
        "unknown_user": "no such user",
        "unknown_purpose": "unknown purpose",
        **importer.REJECTION_REASONS,
    }
    _print_rejections(report.rejected, report.examples, reasons)
    return _refusal(refused)


def run_user_delete(args: argparse.Namespace) -> int:
    """``platform user delete``."""
    with open_database(args.db) as db:
        deletion = users.delete_user(db, args.user)
    if deletion.already_deleted:
        print(f"user {printable(args.user)} was already deleted; nothing changed")
        return 0
    print(
        f"deleted user {printable(args.user)}: {deletion.identifiers_erased} identifiers erased, "
        f"removed from {deletion.audiences_left} stored audiences"
    )
    return 0


def run_epoch_rotate(args: argparse.Namespace) -> int:
    """``platform epoch rotate``."""
    with (
        open_database(args.db) as db,
        batch_engine(args.workers, args.dask_scheduler, verbose=args.verbose) as engine,
    ):
        # Every eligible identifier is hashed: start the workers while the ids are read.
        (engine or default_engine()).start()
        previous = epochs.current_epoch(db)
        bar = _progress("precompute", "id")
        with bar:
            epoch = epochs.rotate(
                db,
                suite_id=args.suite,
                engine=engine,
                progress=bar.update,
                on_start=lambda n: bar.reset(total=n),
            )
    print(
        f"epoch {epoch.epoch_id} is current: {epoch.size} eligible identifiers, "
        f"suite {epoch.suite_id}"
    )
    if previous is not None:
        print(f"  epoch {previous.epoch_id} retired; its key was destroyed")
    return 0


def run_epoch_refresh(args: argparse.Namespace) -> int:
    """``platform epoch refresh``."""
    with (
        open_database(args.db) as db,
        batch_engine(args.workers, args.dask_scheduler, verbose=args.verbose) as engine,
    ):
        bar = _progress("refresh", "id")
        with bar:
            epoch, added = epochs.refresh(
                db, engine=engine, progress=bar.update, on_start=lambda n: bar.reset(total=n)
            )
    print(f"epoch {epoch.epoch_id}: {added} newly eligible identifiers added, size {epoch.size}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    """``platform status``."""
    with open_database(args.db) as db:
        summary = status.platform_status(db)
    data = summary.to_dict()
    if args.json:
        print_json(data)
        return 0
    print(f"users:                {summary.users}")
    print(f"identifiers:          {summary.identifiers}")
    print(f"eligible identifiers: {summary.eligible_identifiers}")
    print("excluded identifiers:")
    for reason, count in summary.excluded.items():
        print(f"  {reason:<22}{count}")
    epoch = data["epoch"]
    if epoch is None:
        print("epoch:                none (run 'cleanroom platform epoch rotate')")
    else:
        print(f"epoch:                {epoch['id']} ({epoch['size']} identifiers, ", end="")
        print(f"created {epoch['created_at']})")
    return 0


def run_audit_verify(args: argparse.Namespace) -> int:
    """``platform audit verify``: exit 0 when intact; anything wrong raises (exit 1, naming it)."""
    # Imported here: only this command reads receipts.
    from cleanroom.cli.receipt import load_public_key, load_receipt

    with open_database(args.db) as db:
        key_path = args.key or db.audit_public_key_path
        public_key = load_public_key(key_path) if args.key else audit_key.read_public_key(key_path)
        pinned = []
        for path in args.receipt:
            receipt = load_receipt(path)
            receipt.verify(public_key)
            pinned.append(
                audit.PinnedEntry(
                    receipt.audit_seq,
                    receipt.audit_hash,
                    receipt.entry_details(),
                    f"receipt {path}",
                )
            )
        checked = audit.verify(db, public_key, pinned)
    if args.json:
        print_json(
            {
                "intact": True,
                "entries": checked.entries,
                "last_signed_at": checked.last_at,
                "signed_from": checked.first_signed,
                "audit_key": checked.key_id,
                "sessions_checked": checked.sessions,
                "receipts_checked": checked.pinned,
            }
        )
        return 0
    print(f"intact: {checked.entries} entries, last signed at {checked.last_at}")
    if checked.first_signed > 1:
        print(
            f"  entries 1-{checked.first_signed - 1} were written before signing began; the "
            f"signed migration entry {checked.first_signed} covers them through the chain"
        )
    print(
        f"  signatures verified with audit key {checked.key_id} ({key_path}); "
        f"{checked.sessions} finished sessions agree with the ledger"
    )
    for path in args.receipt:
        print(f"  receipt {path}: its entry is in the log, unchanged")
    return 0


def run_sources_list(args: argparse.Namespace) -> int:
    """``platform sources list``."""
    with open_database(args.db) as db:
        listed = sources.list_sources(db)
    if args.json:
        print_json({"sources": [source.to_dict() for source in listed]})
        return 0
    print_table(
        (Column("source"), Column("state"), Column("identifiers", numeric=True)),
        [(source.name, source.state, source.identifiers) for source in listed],
        empty="no sources",
    )
    return 0


def run_sources_change(args: argparse.Namespace) -> int:
    """``platform sources permit|deny``."""
    with open_database(args.db) as db:
        if args.permitted:
            change = sources.permit_sources(db, args.names)
        else:
            change = sources.deny_sources(db, args.names)
    verb = "permitted" if args.permitted else "denied"
    already = sorted(set(change.names) - set(change.changed))
    if change.changed:
        print(f"{verb}: {', '.join(change.changed)} ({change.identifiers} identifiers stored)")
    if already:
        print(f"already {verb}: {', '.join(already)}")
    if change.memberships_left:
        print(f"  {change.memberships_left} audience memberships ended")
    return 0


def run_audit_show(args: argparse.Namespace) -> int:
    """``platform audit show``."""
    with open_database(args.db) as db:
        shown = list(audit.entries(db.conn, limit=args.limit))
    if args.json:
        print_json({"entries": [vars(entry) for entry in shown]})
        return 0
    print_table(
        (Column("seq", numeric=True), Column("at"), Column("action"), Column("details")),
        [
            (
                entry.seq,
                entry.at,
                entry.action,
                json.dumps(entry.details, sort_keys=True, ensure_ascii=False),
            )
            for entry in shown
        ],
        empty="no audit entries",
    )
    return 0
