"""The public API, pinned: every package's ``__all__`` and every public module's.

A change to what cleanroom exports has to change this file too, so it is a visible decision
(after httpx's ``tests/test_exported_members.py``). Packages come in two kinds, each kept
consistent: private modules (``_x.py``) re-exported through the package's ``__all__``, or public
modules, each with its own ``__all__``, which the package may re-export in part.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

import pytest

import cleanroom

# Packages whose modules are all private: the package's __all__ is the whole API.
PRIVATE_MODULES = ("advertiser", "demo", "policy", "protocol")
# Packages of public modules (cleanroom.cli.<command> is how the CLI finds its commands).
PUBLIC_MODULES = ("cli", "crypto", "identifiers", "service", "service.dashboard", "store")

PUBLIC_API: dict[str, set[str]] = {
    "cleanroom": {
        "__version__",
    },
    "cleanroom.advertiser": {
        "Advertiser",
        "CONSENT_FIELD",
        "CONSENT_NO",
        "CONSENT_YES",
        "CustomerList",
        "DEFAULT_MATCH_TIMEOUT",
        "EXAMPLES_PER_REASON",
        "FIELDS",
        "ListProblem",
        "ListSource",
        "MatchReport",
        "POLICY_TIMEOUT",
        "PlatformClient",
        "PolicyCall",
        "PreparedList",
        "REASONS",
        "RECORD_ID_FIELD",
        "ServerAddress",
        "check_output_path",
        "parse_column_mapping",
        "parse_marketing_consent",
        "parse_server_address",
        "merge_prepared",
        "prepare_list",
        "read_customer_list",
        "read_customer_rows",
        "summarize_problems",
        "write_matched_rows",
    },
    "cleanroom.cli": {
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
    },
    "cleanroom.cli.demo": {
        "register",
    },
    "cleanroom.cli.match": {
        "register",
        "run_match",
    },
    "cleanroom.cli.platform": {
        "register",
    },
    "cleanroom.cli.platform_service": {
        "register_service_commands",
    },
    "cleanroom.cli.receipt": {
        "load_public_key",
        "load_receipt",
        "register",
        "run_receipt_verify",
    },
    "cleanroom.crypto": {
        "BackendInfo",
        "BatchEngine",
        "DEFAULT_SUITE_ID",
        "HashAndEncryptJob",
        "ProgressCallback",
        "SUITE_IDS",
        "SecretKey",
        "Suite",
        "ValidatedElements",
        "backend_info",
        "default_engine",
        "get_suite",
        "random_permutation",
    },
    "cleanroom.crypto.batch": {
        "BatchEngine",
        "ChunkExecutor",
        "ChunkFailure",
        "ChunkResult",
        "DEFAULT_CHUNK_SIZE",
        "HashAndEncryptJob",
        "LandedCallback",
        "ProgressCallback",
        "ValidatedElements",
        "default_engine",
    },
    "cleanroom.crypto.cluster": {
        "CLUSTER_CHUNK_SIZE",
        "CONNECT_TIMEOUT",
        "DaskExecutor",
    },
    "cleanroom.crypto.h2c": {
        "MAX_DST_LENGTH",
        "dst_prime",
        "expand_message_xmd",
        "hash_to_field",
    },
    "cleanroom.crypto.h2c_curve25519": {
        "ELEMENT_SIZE",
        "SUITE_ID",
        "encode_to_curve",
        "hash_to_curve",
        "hash_to_curve_many",
    },
    "cleanroom.crypto.h2c_p256": {
        "ELEMENT_SIZE",
        "SUITE_ID",
        "encode_to_curve",
        "hash_to_curve",
        "hash_to_curve_many",
    },
    "cleanroom.crypto.keys": {
        "SecretKey",
    },
    "cleanroom.crypto.packed": {
        "PackedMessages",
    },
    "cleanroom.crypto.permutation": {
        "random_permutation",
    },
    "cleanroom.crypto.suites": {
        "DEFAULT_SUITE_ID",
        "P256Suite",
        "SUITE_IDS",
        "Suite",
        "X25519Suite",
        "get_suite",
    },
    "cleanroom.crypto.x25519": {
        "BACKENDS",
        "BackendInfo",
        "ENV_VAR",
        "Exchange",
        "backend_info",
        "exchange",
        "exchange_ifma",
        "exchange_openssl",
        "ifma_problem",
        "select",
    },
    "cleanroom.demo": {
        "ADVERTISER",
        "ADVERTISER_COLUMNS",
        "AdvertiserRecord",
        "ConsentState",
        "DEFAULT_RECORDS",
        "DEFAULT_SEED",
        "DEFAULT_USERS",
        "DEFAULT_WORKDIR",
        "DemoScenario",
        "GroundTruth",
        "MAX_SIZE",
        "MIN_RECORDS",
        "MIN_USERS",
        "PLATFORM_COLUMNS",
        "Person",
        "PlatformIdentifier",
        "generate_people",
        "generate_scenario",
        "messy_email",
        "messy_phone",
        "run_demo",
    },
    "cleanroom.errors": {
        "AuditChainBroken",
        "BackendUnavailable",
        "BudgetExhausted",
        "CleanroomError",
        "ClusterUnreachable",
        "DeadlineExceeded",
        "DemoFailed",
        "ImportFailed",
        "InvalidElement",
        "InvalidIdentifier",
        "InvalidInput",
        "InvalidKey",
        "InvalidMessage",
        "InvalidPolicy",
        "LedgerMismatch",
        "LimitExceeded",
        "ListenFailed",
        "NotOurDatabase",
        "OutOfOrder",
        "PermissionDenied",
        "PlatformError",
        "PlatformFailed",
        "PlatformRefused",
        "PlatformUnreachable",
        "PolicyRefused",
        "ProtocolError",
        "ReceiptInvalid",
        "SessionAborted",
        "StoreError",
        "TlsConfigError",
        "Unauthenticated",
        "UnknownSuite",
        "UnknownUser",
        "VersionMismatch",
        "WrongSession",
    },
    "cleanroom.identifiers": {
        "DEFAULT_REGION",
        "KINDS",
        "NORMALIZATION_VERSION",
        "NormalizedBatch",
        "Rejection",
        "hash_message",
        "identifier_digest",
        "normalize",
        "normalize_batch",
        "parse_prehashed",
    },
    "cleanroom.identifiers.batch": {
        "NormalizedBatch",
        "Rejection",
        "normalize_batch",
    },
    "cleanroom.identifiers.email": {
        "NON_ASCII_REASON",
        "normalize_email",
    },
    "cleanroom.identifiers.maid": {
        "LIMIT_AD_TRACKING_MAID",
        "normalize_maid",
    },
    "cleanroom.identifiers.messages": {
        "MESSAGE_PREFIX",
        "hash_message",
        "identifier_digest",
        "message_prefix",
        "normalized_digest",
    },
    "cleanroom.identifiers.normalize": {
        "normalize",
    },
    "cleanroom.identifiers.phone": {
        "DEFAULT_REGION",
        "e164_fast_path",
        "normalize_phone",
        "normalize_phone_reference",
    },
    "cleanroom.identifiers.phone_plan": {
        "COUNTRY_CODE_DIGITS",
        "CountryValidity",
        "LengthVerdict",
        "MAX_NSN_LENGTH",
        "MIN_NSN_LENGTH",
        "NumberingPlan",
        "country_validity",
        "plan_for_country_code",
        "plan_for_region",
    },
    "cleanroom.identifiers.prehashed": {
        "DIGEST_SIZE",
        "PREHASHED_KIND",
        "parse_prehashed",
    },
    "cleanroom.identifiers.rules": {
        "KINDS",
        "NORMALIZATION_VERSION",
        "TRIMMED_WHITESPACE",
        "check_not_blank",
        "require_kind",
    },
    "cleanroom.policy": {
        "DEFAULT_SETTINGS",
        "LARGEST_COUNT",
        "Mode",
        "Policy",
        "PolicySettings",
        "Release",
        "SessionDecision",
        "bernoulli_exp",
        "check_session",
        "epsilon_fraction",
        "load_policy",
        "parse_policy",
        "policy_from_mapping",
        "release_count",
        "release_exact_count",
        "sample_discrete_laplace",
    },
    "cleanroom.protocol": {
        "AdvertiserResult",
        "AdvertiserRole",
        "ListEncryption",
        "DEFAULT_MAX_PLATFORM_SET_SIZE",
        "ERROR_NAME_KEY",
        "ERROR_STATUS",
        "MAX_CHUNK_BYTES",
        "PROTOCOL_VERSION",
        "PlatformInputs",
        "PlatformOutcome",
        "PlatformRole",
        "ProgressFactory",
        "RECORD_TAG_SIZE",
        "Receipt",
        "SESSION_ID_SIZE",
        "STATUS_ERROR",
        "SessionRequest",
        "SessionTerms",
        "check_advertiser_set_size",
        "check_policy_info",
        "error_from_status",
        "issue_receipt",
        "mode_from_wire",
        "mode_to_wire",
        "policy_info",
        "read_open_session",
        "read_receipt",
        "run_locally",
        "session_terms",
        "status_for",
    },
    "cleanroom.service": set(),
    "cleanroom.service.admission": {
        "Admission",
        "AdmissionLimits",
        "AdmissionTally",
        "DEFAULT_FIRST_MESSAGE_TIMEOUT",
        "DEFAULT_MAX_SESSIONS",
        "DEFAULT_MAX_STREAMS_PER_ADVERTISER",
        "REFUSAL_REASONS",
        "StreamAdmission",
        "StreamSlot",
        "first_message",
    },
    "cleanroom.service.audience_sweep": {
        "AudienceSweeper",
        "DEFAULT_SWEEP_INTERVAL",
    },
    "cleanroom.service.dashboard": {
        "DashboardOptions",
        "DashboardServer",
        "Health",
    },
    "cleanroom.service.dashboard.charts": {
        "Bar",
        "LineChart",
        "StackedBar",
        "bars",
        "line_chart",
        "stacked_bars",
    },
    "cleanroom.service.dashboard.http": {
        "DEFAULT_SAMPLE_SECONDS",
        "DashboardOptions",
        "DashboardServer",
        "Health",
    },
    "cleanroom.service.dashboard.metrics": {
        "AdmissionRefusals",
        "build_registry",
    },
    "cleanroom.service.dashboard.pages": {
        "REFRESH_SECONDS",
        "render_dashboard",
    },
    "cleanroom.service.dashboard.snapshot": {
        "AdvertiserView",
        "AuditLine",
        "AuditView",
        "OperatorSnapshot",
        "SnapshotSource",
        "read_snapshot",
    },
    "cleanroom.service.epoch_summary": {
        "DEFAULT_MAX_AGE",
        "EpochSummary",
        "EpochSummaryCache",
    },
    "cleanroom.service.platform_sessions": {
        "MatchSession",
        "PlatformSessions",
    },
    "cleanroom.service.server": {
        "DEFAULT_GRACE_SECONDS",
        "DEFAULT_MAX_SESSIONS",
        "DEFAULT_SESSION_TIMEOUT",
        "INSECURE_ADVERTISER",
        "MAX_MESSAGE_BYTES",
        "PlatformServer",
        "SERVICE_NAME",
        "ServerOptions",
        "parse_listen_address",
        "serve",
    },
    "cleanroom.service.servicer": {
        "INTERNAL_ERROR_DETAILS",
        "MatcherServicer",
        "SERVICE_NAME",
        "Undecodable",
        "abort_with_status",
        "add_matcher_to_server",
        "parse_or_mark",
    },
    "cleanroom.service.session_memory": {
        "BYTES_PER_ADVERTISER_ELEMENT",
        "BYTES_PER_PLATFORM_ELEMENT",
        "MemoryAccount",
        "SessionMemory",
        "chunk_bytes",
        "default_session_memory",
        "session_bytes",
    },
    "cleanroom.service.standard_services": {
        "HEALTH_SERVICE_NAME",
        "HealthServicer",
        "REFLECTION_SERVICE_NAMES",
        "enable_reflection",
    },
    "cleanroom.service.unopened": {
        "UnopenedStreams",
    },
    "cleanroom.store": {
        "AudienceSweep",
        "DEFAULT_PERMITTED_SOURCES",
        "Database",
        "EXCLUSION_REASONS",
        "EpochInfo",
        "ImportReport",
        "MatchableEpoch",
        "NEVER_PERMITTED_SOURCES",
        "PlatformStatus",
        "SourceInfo",
        "StoredAudience",
        "audience_members",
        "audit",
        "current_epoch",
        "delete_user",
        "deny_sources",
        "eligible_identifier_ids",
        "epoch_key",
        "grant",
        "import_consent_csv",
        "import_platform_csv",
        "init_database",
        "list_sources",
        "matchable_epoch",
        "open_database",
        "permit_sources",
        "platform_status",
        "refresh",
        "revoke",
        "rotate",
        "sessions",
        "set_opt_out",
        "store_audience",
        "sweep_audiences",
        "transaction",
    },
    "cleanroom.store.audiences": {
        "AudienceSweep",
        "StoredAudience",
        "audience_members",
        "store_audience",
        "sweep_audiences",
    },
    "cleanroom.store.audit": {
        "AuditEntry",
        "AuditVerification",
        "GENESIS_HASH",
        "PinnedEntry",
        "SESSION_ACTIONS",
        "append",
        "entries",
        "entry",
        "verify",
    },
    "cleanroom.store.audit_key": {
        "AUDIT_KEY_ENV",
        "AUDIT_KEY_FILE",
        "audit_key_path",
        "create_or_load_audit_key",
        "load_audit_key",
        "public_key_path",
        "read_public_key",
        "write_public_key",
    },
    "cleanroom.store.changes": {
        "BULK_IMPORTS",
        "CONSENT_IMPORT_REPORTED",
        "CONSENT_IMPORT_STARTED",
        "ELIGIBILITY_NEUTRAL_ACTIONS",
        "IMPORT_REPORTED",
        "IMPORT_STARTED",
        "audit_head",
        "bulk_import_running",
        "eligibility_changed_since",
    },
    "cleanroom.store.consent": {
        "CONSENT_FILE_OPTIONAL",
        "CONSENT_FILE_REQUIRED",
        "ConsentChange",
        "ConsentImportReport",
        "OPT_OUTS",
        "PURPOSES",
        "grant",
        "import_consent_csv",
        "revoke",
        "set_opt_out",
        "user_row",
    },
    "cleanroom.store.csvfile": {
        "CsvScan",
        "RowRejection",
        "open_rows",
        "parse_column_mapping",
        "scan_csv",
    },
    "cleanroom.store.database": {
        "Clock",
        "Database",
        "init_database",
        "open_database",
        "transaction",
        "unix_now",
    },
    "cleanroom.store.eligibility": {
        "DEFAULT_PERMITTED_SOURCES",
        "EXCLUSION_REASONS",
        "NEVER_PERMITTED_SOURCES",
        "NOW_SQL",
        "SOURCE_NAME",
        "eligible_identifier_ids",
        "eligible_identifiers_and_users",
        "install_views",
        "normalize_source",
        "sql_list",
    },
    "cleanroom.store.epochs": {
        "EpochInfo",
        "MatchableEpoch",
        "current_epoch",
        "epoch_key",
        "matchable_epoch",
        "refresh",
        "remove_leftovers",
        "require_current_epoch",
        "rotate",
    },
    "cleanroom.store.fields": {
        "CONSENT_VALUES",
        "REVOKED",
        "format_timestamp",
        "parse_consent",
        "parse_timestamp",
    },
    "cleanroom.store.history": {
        "EligibilitySample",
        "HEARTBEAT_SECONDS",
        "RETENTION_SECONDS",
        "eligibility_samples",
        "record_eligibility_sample",
    },
    "cleanroom.store.importer": {
        "ImportReport",
        "OPTIONAL_FIELDS",
        "REJECTION_REASONS",
        "REQUIRED_FIELDS",
        "RowRejection",
        "import_platform_csv",
    },
    "cleanroom.store.keystore": {
        "check_private_directory",
        "destroy_key",
        "read_key",
        "write_key",
    },
    "cleanroom.store.ledger_summary": {
        "AdvertiserActivity",
        "DURATION_BUCKETS",
        "DurationHistogram",
        "LedgerSummary",
        "ledger_summary",
    },
    "cleanroom.store.matchable_cache": {"MatchableCache", "consent_horizon"},
    "cleanroom.store.schema": {
        "APPLICATION_ID",
        "CONSENT_STATES",
        "SCHEMA_VERSION",
        "check_identity",
        "create_schema",
        "migrate",
    },
    "cleanroom.store.sessions": {
        "AudienceSummary",
        "SESSION_STATES",
        "SessionRecord",
        "abort_session",
        "attach_session_id",
        "audience_summaries",
        "audience_summary",
        "complete_session",
        "find_session",
        "has_open_session",
        "list_sessions",
        "open_sessions",
        "record_refused_session",
        "record_unopened_streams",
        "sessions_today",
        "spent_epsilon",
        "start_session",
    },
    "cleanroom.store.sources": {
        "SOURCE_STATES",
        "SourceChange",
        "SourceInfo",
        "deny_sources",
        "list_sources",
        "permit_sources",
    },
    "cleanroom.store.status": {
        "PlatformStatus",
        "platform_status",
    },
    "cleanroom.store.users": {
        "UserDeletion",
        "delete_user",
    },
    "cleanroom.tls": {
        "ADVERTISER_URI_PREFIX",
        "ADVERTISER_VALID_DAYS",
        "CA_CERT_FILE",
        "CA_KEY_FILE",
        "CA_VALID_DAYS",
        "CLIENT_CERT_FILE",
        "CLIENT_KEY_FILE",
        "DEFAULT_CA_NAME",
        "DEFAULT_SERVER_NAMES",
        "SERVER_CERT_FILE",
        "SERVER_KEY_FILE",
        "SERVER_VALID_DAYS",
        "TlsPaths",
        "advertiser_from_auth_context",
        "advertiser_from_certificate",
        "channel_credentials",
        "create_platform_tls",
        "default_tls_dir",
        "is_loopback",
        "issue_advertiser_certificate",
        "issue_server_certificate",
        "server_credentials",
        "validate_advertiser_name",
    },
}


def _public_modules() -> set[str]:
    found = {"cleanroom", "cleanroom.errors", "cleanroom.tls"}
    for package in PRIVATE_MODULES + PUBLIC_MODULES:
        module = importlib.import_module(f"cleanroom.{package}")
        found.add(module.__name__)
        found |= {
            f"{module.__name__}.{info.name}"
            for info in pkgutil.iter_modules(module.__path__)
            if not info.name.startswith("_")
        }
    return found


def test_every_public_package_has_a_kind() -> None:
    packages = {
        info.name.removeprefix("cleanroom.")
        for info in pkgutil.walk_packages(cleanroom.__path__, "cleanroom.")
        if info.ispkg and not any(part.startswith("_") for part in info.name.split("."))
    }
    assert packages == set(PRIVATE_MODULES + PUBLIC_MODULES)


def test_every_public_module_is_pinned() -> None:
    assert _public_modules() == set(PUBLIC_API)


def test_the_top_level_holds_only_the_modules_it_pins() -> None:
    # The generated code (_proto) and the file helpers (_files) are private.
    top = {info.name for info in pkgutil.iter_modules(cleanroom.__path__)}
    public = {name.removeprefix("cleanroom.") for name in PUBLIC_API if name.count(".") == 1}
    assert {name for name in top if not name.startswith("_")} == public


@pytest.mark.parametrize("name", sorted(PUBLIC_API))
def test_exports_are_exactly_the_pinned_names(name: str) -> None:
    module = importlib.import_module(name)
    assert set(module.__all__) == PUBLIC_API[name]
    assert len(module.__all__) == len(set(module.__all__))
    for exported in module.__all__:
        assert hasattr(module, exported), exported


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then everything else.
    if re.fullmatch(r"[A-Z0-9_]+", name) and not re.fullmatch(r"_*", name):
        return 0, name
    if name[:1].isupper():
        return 1, name
    return 2, name


@pytest.mark.parametrize("name", sorted(PUBLIC_API))
def test_exports_are_sorted(name: str) -> None:
    exported = list(importlib.import_module(name).__all__)
    assert exported == sorted(exported, key=_isort_key)


# Every package's __init__ but the CLI's, which is the command line's own code, not a facade.
FACADES = sorted(set(PRIVATE_MODULES + PUBLIC_MODULES) - {"cli"})


@pytest.mark.parametrize("package", FACADES)
def test_a_package_exports_every_public_name_it_holds(package: str) -> None:
    # In the manner of httpx: a name the package imports for its users is in __all__.
    module = importlib.import_module(f"cleanroom.{package}")
    held = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and name != "annotations" and not isinstance(value, ModuleType)
    }
    assert held <= set(module.__all__)


@pytest.mark.parametrize("package", PRIVATE_MODULES)
def test_private_module_packages_have_no_public_module(package: str) -> None:
    module = importlib.import_module(f"cleanroom.{package}")
    public = [info.name for info in pkgutil.iter_modules(module.__path__)]
    assert [name for name in public if not name.startswith("_")] == []


# Objects that turn into a JSON object do it one way, ``to_dict()``; these are the ones that do.
TO_DICT: set[str] = {
    "cleanroom.advertiser._report.MatchReport",
    "cleanroom.protocol._receipt.Receipt",
    "cleanroom.store.consent.ConsentImportReport",
    "cleanroom.store.importer.ImportReport",
    "cleanroom.store.sessions.AudienceSummary",
    "cleanroom.store.sessions.SessionRecord",
    "cleanroom.store.sources.SourceInfo",
    "cleanroom.store.status.PlatformStatus",
}


def _exported_classes() -> dict[str, type]:
    """Every class cleanroom exports, by the name of the module that defines it."""
    classes: dict[str, type] = {}
    for name in PUBLIC_API:
        module = importlib.import_module(name)
        for exported in module.__all__:
            value = getattr(module, exported)
            if isinstance(value, type) and value.__module__.startswith("cleanroom"):
                classes[f"{value.__module__}.{value.__qualname__}"] = value
    return classes


def test_objects_become_dicts_through_to_dict_only() -> None:
    classes = _exported_classes()
    assert len(classes) > 100  # the walk sees the API
    others = {"as_dict", "asdict", "as_json", "to_json_dict", "to_mapping"}
    assert {name for name, cls in classes.items() if others & set(dir(cls))} == set()
    assert {name for name, cls in classes.items() if "to_dict" in vars(cls)} == TO_DICT
