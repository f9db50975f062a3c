"""The advertiser's side of a match: its customer list, the platform's client, the report.

:class:`Advertiser` is the whole workflow as a library (``cleanroom match`` is a thin wrapper)::

    with Advertiser("platform.example:50051", "acme-tls") as advertiser:
        report = advertiser.match("customers.csv", mode="count")
        print(report.reported_as, report.to_dict())

The steps it takes are public too, for callers that drive the protocol themselves::

    customers = read_customer_list(path, column_mapping={"email": "Email"})   # before any network
    prepared = prepare_list(customers, default_region="US", prehashed={"email"})
    role = AdvertiserRole(suite, mode, prepared.messages, prepared.record_ids)
    result = PlatformClient(address, tls_dir=tls_dir).match(role)
    write_matched_rows(path, out, result.matched_record_ids)                  # ids mode

Rows without marketing consent are dropped while reading, before any identifier of theirs is
normalized or hashed; every other row that cannot be sent is reported with its line, column and
reason (:class:`ListProblem`).
"""

from __future__ import annotations

from cleanroom.advertiser._advertiser import Advertiser, ListSource
from cleanroom.advertiser._client import (
    DEFAULT_MATCH_TIMEOUT,
    POLICY_TIMEOUT,
    PlatformClient,
    PolicyCall,
    ServerAddress,
    parse_server_address,
)
from cleanroom.advertiser._columns import CONSENT_FIELD, FIELDS, RECORD_ID_FIELD
from cleanroom.advertiser._consent import CONSENT_NO, CONSENT_YES, parse_marketing_consent
from cleanroom.advertiser._listfile import (
    CustomerList,
    check_output_path,
    parse_column_mapping,
    read_customer_list,
    read_customer_rows,
    write_matched_rows,
)
from cleanroom.advertiser._prepare import PreparedList, merge_prepared, prepare_list
from cleanroom.advertiser._problems import REASONS, ListProblem
from cleanroom.advertiser._report import EXAMPLES_PER_REASON, MatchReport, summarize_problems

__all__ = [
    "CONSENT_FIELD",
    "CONSENT_NO",
    "CONSENT_YES",
    "DEFAULT_MATCH_TIMEOUT",
    "EXAMPLES_PER_REASON",
    "FIELDS",
    "POLICY_TIMEOUT",
    "REASONS",
    "RECORD_ID_FIELD",
    "Advertiser",
    "CustomerList",
    "ListProblem",
    "ListSource",
    "MatchReport",
    "PlatformClient",
    "PolicyCall",
    "PreparedList",
    "ServerAddress",
    "check_output_path",
    "merge_prepared",
    "parse_column_mapping",
    "parse_marketing_consent",
    "parse_server_address",
    "prepare_list",
    "read_customer_list",
    "read_customer_rows",
    "summarize_problems",
    "write_matched_rows",
]
