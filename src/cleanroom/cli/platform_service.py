"""``cleanroom platform serve|issue-cert|audiences|sessions``: the platform's matching service.

Commands::

    cleanroom platform serve --db PATH --listen HOST:PORT [--policy FILE.toml] [--tls-dir DIR]
                             [--insecure [--insecure-advertiser NAME]] [--workers N]
                             [--max-sessions N] [--max-streams-per-advertiser N]
                             [--first-message-timeout S] [--streams-per-minute N]
                             [--policy-calls-per-minute N]
                             [--session-memory SIZE] [--session-timeout S] [--grace S]
                             [--log-level LEVEL] [--log-format text|json]
                             [--http HOST:PORT [--http-token FILE] [--http-client-ca FILE]]
                             [--sweep-interval S]
    cleanroom platform issue-cert --db PATH --advertiser NAME --out DIR [--tls-dir DIR]
                                  [--valid-days N] [--overwrite]
    cleanroom platform audiences list --db PATH [--json]
    cleanroom platform audiences show ID --db PATH [--json]
    cleanroom platform audiences sweep --db PATH [--json]
    cleanroom platform sessions list --db PATH [--advertiser NAME] [--json]

``serve`` uses the ``tls`` folder beside the database (made by ``platform init``) unless
``--tls-dir`` says otherwise, and takes each advertiser's name from its client certificate.
While it serves, it sweeps stored audiences every ``--sweep-interval`` seconds (reads never
show a member who lost eligibility; the sweep deletes such memberships and audits how many).
``issue-cert`` also copies the platform's ``audit.pub`` into the advertiser's folder, so the
advertiser's client checks every session receipt's signature.
``--insecure`` serves plaintext, on a loopback address only; every caller is then the advertiser
``--insecure-advertiser`` names (default ``insecure-local``), so a policy can still give it its
own table. ``serve`` prints ``listening on HOST:PORT`` (the real port when 0 was asked for) and
stops cleanly on SIGTERM or Ctrl-C: open sessions get ``--grace`` seconds, then are aborted.
With ``--http`` it also serves the privacy officer's dashboard, ``/metrics`` and ``/healthz``
(see :mod:`cleanroom.service.dashboard`) and prints ``dashboard on URL``.

Everything here is presentation: the work is done by :mod:`cleanroom.service` and
:mod:`cleanroom.store`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cleanroom import tls
from cleanroom._output import printable
from cleanroom._signing import AUDIT_PUBLIC_KEY_FILE
from cleanroom.cli._args import (
    batch_engine,
    byte_size,
    db_command,
    positive_float,
    positive_int,
    print_json,
    seconds,
    seconds_or_zero,
    worker_count,
)
from cleanroom.cli._logging import add_log_options, configure_logging
from cleanroom.cli._table import Column, print_table
from cleanroom.errors import InvalidInput
from cleanroom.policy import load_policy
from cleanroom.service import server as platform_server
from cleanroom.service.admission import AdmissionLimits
from cleanroom.service.audience_sweep import DEFAULT_SWEEP_INTERVAL
from cleanroom.service.dashboard import DashboardOptions
from cleanroom.store import audit, audit_key, sessions
from cleanroom.store.audiences import sweep_audiences
from cleanroom.store.audit_key import write_public_key
from cleanroom.store.database import open_database, transaction
from cleanroom.store.fields import format_timestamp

__all__ = ["register_service_commands"]


def register_service_commands(commands: Any) -> None:
    """Add ``serve``, ``issue-cert``, ``audiences`` and ``sessions`` to ``cleanroom platform``.

    Args:
        commands: the ``platform`` group's subparsers (from ``add_subparsers``).
    """
    serve = db_command(commands, "serve", "serve the matching service (gRPC, mTLS)")
    serve.add_argument(
        "--listen", required=True, metavar="HOST:PORT", help="address to listen on (port 0: any)"
    )
    serve.add_argument("--policy", type=Path, metavar="FILE.toml", help="the policy (TOML)")
    serve.add_argument(
        "--tls-dir", type=Path, metavar="DIR", help="the TLS folder (default: 'tls' beside --db)"
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="serve plaintext without client certificates (loopback addresses only)",
    )
    serve.add_argument(
        "--insecure-advertiser",
        metavar="NAME",
        help=f"with --insecure: the advertiser every caller is (default: "
        f"{platform_server.INSECURE_ADVERTISER})",
    )
    serve.add_argument(
        "--workers",
        type=worker_count,
        help="processes for the scalar multiplications (default: all CPUs; 1: in-process)",
    )
    serve.add_argument(
        "--max-sessions",
        type=positive_int,
        default=platform_server.DEFAULT_MAX_SESSIONS,
        help="sessions served at once (default: %(default)s)",
    )
    serve.add_argument(
        "--max-streams-per-advertiser",
        type=positive_int,
        default=AdmissionLimits.max_streams_per_advertiser,
        metavar="N",
        help="streams one advertiser may hold at once, checked from its certificate before "
        "any work (default: %(default)s)",
    )
    serve.add_argument(
        "--first-message-timeout",
        type=seconds,
        default=AdmissionLimits.first_message_timeout,
        metavar="SECONDS",
        help="end a session stream that sends no opening message within this time "
        "(DEADLINE_EXCEEDED; default: %(default)s)",
    )
    serve.add_argument(
        "--streams-per-minute",
        type=positive_float,
        default=AdmissionLimits.streams_per_minute,
        metavar="N",
        help="session streams one advertiser may open per minute (default: %(default)s)",
    )
    serve.add_argument(
        "--policy-calls-per-minute",
        type=positive_float,
        default=AdmissionLimits.policy_calls_per_minute,
        metavar="N",
        help="GetPolicy calls one advertiser may make per minute (default: %(default)s)",
    )
    serve.add_argument(
        "--session-memory",
        type=byte_size,
        metavar="SIZE",
        help="memory the sessions' sets may take at once, all sessions together (e.g. 8G); "
        "a session that would not fit beside those in progress is refused RESOURCE_EXHAUSTED "
        "(default: half of this machine's memory)",
    )
    serve.add_argument(
        "--session-timeout",
        type=seconds,
        default=platform_server.DEFAULT_SESSION_TIMEOUT,
        metavar="SECONDS",
        help="abort a session that lasts longer (default: %(default)s)",
    )
    serve.add_argument(
        "--grace",
        type=seconds_or_zero,
        default=platform_server.DEFAULT_GRACE_SECONDS,
        metavar="SECONDS",
        help="on SIGTERM, time open sessions get to finish (default: %(default)s)",
    )
    serve.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="also serve the dashboard, /metrics and /healthz over HTTP, read-only "
        "(e.g. 127.0.0.1:9464; another address than loopback needs --http-token or "
        "--http-client-ca)",
    )
    serve.add_argument(
        "--http-token",
        type=Path,
        metavar="FILE",
        help="with --http: require this bearer token (a file readable only by its owner)",
    )
    serve.add_argument(
        "--http-client-ca",
        type=Path,
        metavar="FILE",
        help="with --http: serve HTTPS with the platform's server certificate and require a "
        "client certificate from this CA (your operators' CA, not the advertisers')",
    )
    serve.add_argument(
        "--sweep-interval",
        type=seconds,
        default=DEFAULT_SWEEP_INTERVAL,
        metavar="SECONDS",
        help="sweep stored audiences of members who lost eligibility this often "
        "(default: %(default)s)",
    )
    add_log_options(serve)
    serve.set_defaults(run=run_serve)

    issue = db_command(commands, "issue-cert", "issue an advertiser's client certificate")
    issue.add_argument("--advertiser", required=True, help="the advertiser's name")
    issue.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="folder for ca.crt, client.*"
    )
    issue.add_argument(
        "--tls-dir", type=Path, metavar="DIR", help="the TLS folder (default: 'tls' beside --db)"
    )
    issue.add_argument(
        "--valid-days",
        type=positive_int,
        default=tls.ADVERTISER_VALID_DAYS,
        help="validity in days (default: %(default)s)",
    )
    issue.add_argument(
        "--overwrite", action="store_true", help="replace a certificate already in --out"
    )
    issue.set_defaults(run=run_issue_cert)

    audiences = commands.add_parser("audiences", help="audiences stored by audience-mode matches")
    audience_commands = audiences.add_subparsers(
        dest="audiences_command", metavar="COMMAND", required=True
    )
    listing = db_command(audience_commands, "list", "list stored audiences")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(run=run_audiences_list)
    show = db_command(audience_commands, "show", "show an audience's members (user ids)")
    show.add_argument("audience_id", type=positive_int, metavar="ID")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(run=run_audiences_show)
    sweep = db_command(
        audience_commands,
        "sweep",
        "delete memberships of users who lost eligibility (reads already hide them); audited",
    )
    sweep.add_argument("--json", action="store_true", help="print one JSON object")
    sweep.set_defaults(run=run_audiences_sweep)

    ledger = commands.add_parser("sessions", help="the ledger of match sessions")
    ledger_commands = ledger.add_subparsers(
        dest="sessions_command", metavar="COMMAND", required=True
    )
    session_list = db_command(ledger_commands, "list", "list match sessions, oldest first")
    session_list.add_argument("--advertiser", help="only this advertiser's sessions")
    session_list.add_argument("--json", action="store_true", help="print one JSON object")
    session_list.set_defaults(run=run_sessions_list)


# -- commands ---------------------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    """``platform serve``."""
    if args.insecure_advertiser is not None and not args.insecure:
        raise InvalidInput("--insecure-advertiser applies only with --insecure")
    if args.http is None and (args.http_token or args.http_client_ca):
        raise InvalidInput("--http-token and --http-client-ca apply only with --http")
    configure_logging(args.log_level, args.log_format)
    policy = load_policy(args.policy)
    # Fail here, naming the file, rather than on the first call (every session is signed).
    with open_database(args.db) as db:
        db.audit_signing_key()
    insecure_advertiser = None
    if args.insecure:
        insecure_advertiser = args.insecure_advertiser or platform_server.INSECURE_ADVERTISER
    with batch_engine(args.workers) as engine:
        options = platform_server.ServerOptions(
            db_path=args.db,
            listen=args.listen,
            policy=policy,
            tls_dir=args.tls_dir or tls.default_tls_dir(args.db),
            insecure_advertiser=insecure_advertiser,
            max_sessions=args.max_sessions,
            session_timeout=args.session_timeout,
            session_memory=args.session_memory,
            engine=engine,
            limits=AdmissionLimits(
                max_streams_per_advertiser=args.max_streams_per_advertiser,
                first_message_timeout=args.first_message_timeout,
                streams_per_minute=args.streams_per_minute,
                policy_calls_per_minute=args.policy_calls_per_minute,
            ),
            dashboard=None
            if args.http is None
            else DashboardOptions(
                listen=args.http, token_file=args.http_token, client_ca=args.http_client_ca
            ),
            sweep_interval=args.sweep_interval,
        )
        return platform_server.serve(options, grace=args.grace)


def run_issue_cert(args: argparse.Namespace) -> int:
    """``platform issue-cert``: the certificate, and an audit entry saying who got one."""
    tls_dir = args.tls_dir or tls.default_tls_dir(args.db)
    with open_database(args.db) as db:
        audit_public_key = audit_key.read_public_key(db.audit_public_key_path)
        out = tls.issue_advertiser_certificate(
            tls_dir,
            args.advertiser,
            args.out,
            valid_days=args.valid_days,
            overwrite=args.overwrite,
        )
        # The advertiser checks every receipt's signature with it.
        write_public_key(out, audit_public_key)
        with transaction(db.conn):
            audit.append(
                db,
                "tls.issue",
                {"advertiser": args.advertiser, "valid_days": args.valid_days},
            )
    print(f"issued a certificate for advertiser {args.advertiser!r} in {out}")
    print(
        f"  {tls.CA_CERT_FILE}, {tls.CLIENT_CERT_FILE}, {tls.CLIENT_KEY_FILE} (mode 0600), "
        f"{AUDIT_PUBLIC_KEY_FILE} (checks the platform's session receipts)"
    )
    print(f"  valid for {args.valid_days} days; use it with: cleanroom match --tls-dir {out}")
    return 0


def run_audiences_list(args: argparse.Namespace) -> int:
    """``platform audiences list``."""
    with open_database(args.db) as db:
        summaries = sessions.audience_summaries(db)
    if args.json:
        print_json({"audiences": [summary.to_dict() for summary in summaries]})
        return 0
    print_table(
        (
            Column("id", numeric=True),
            Column("advertiser"),
            Column("members", numeric=True),
            Column("created"),
        ),
        [(s.id, s.advertiser, s.size, format_timestamp(s.created_at)) for s in summaries],
        empty="no audiences stored",
    )
    return 0


def run_audiences_show(args: argparse.Namespace) -> int:
    """``platform audiences show``."""
    with open_database(args.db) as db:
        found = sessions.audience_summary(db, args.audience_id)
    if found is None:
        raise InvalidInput(f"no audience with id {args.audience_id}")
    summary, user_ids = found
    if args.json:
        print_json({"id": summary.id, "user_ids": user_ids})
        return 0
    print(
        f"audience {summary.id}: advertiser {summary.advertiser}, {summary.size} users, "
        f"created {format_timestamp(summary.created_at)} (session {summary.session_id})"
    )
    for user_id in user_ids:
        # Ids come from imported files: one per line, escaped, so none can act on the terminal
        # or pass for two.
        print(printable(user_id))
    return 0


def run_audiences_sweep(args: argparse.Namespace) -> int:
    """``platform audiences sweep``."""
    with open_database(args.db) as db:
        sweep = sweep_audiences(db)
    if args.json:
        print_json({"memberships_removed": sweep.memberships_removed, "audiences": sweep.audiences})
        return 0
    print(
        f"removed {sweep.memberships_removed} memberships of users no longer eligible, from "
        f"{sweep.audiences} audiences"
    )
    return 0


def run_sessions_list(args: argparse.Namespace) -> int:
    """``platform sessions list``."""
    with open_database(args.db) as db:
        records = sessions.list_sessions(db, advertiser=args.advertiser)
    if args.json:
        print_json({"sessions": [record.to_dict() for record in records]})
        return 0
    print_table(
        (
            Column("id", numeric=True),
            Column("asked for"),
            Column("advertiser"),
            Column("mode"),
            Column("state"),
            Column("epsilon", numeric=True),
            Column("released / why not"),
        ),
        [
            (
                record.id,
                format_timestamp(record.started_at),
                record.advertiser,
                record.mode or "-",
                record.state,
                f"{record.epsilon_charged:g}",
                # A refusal's reason may quote what the client sent (a suite name): escaped.
                record.reported_as if record.state == "completed" else record.reason,
            )
            for record in records
        ],
        empty="no sessions",
    )
    return 0
