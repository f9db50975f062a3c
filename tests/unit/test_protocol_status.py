"""The error <-> gRPC status table: each error class has its code, and comes back as itself."""

from __future__ import annotations

import grpc
import pytest

from cleanroom import errors
from cleanroom.protocol import (
    ERROR_NAME_KEY,
    ERROR_STATUS,
    STATUS_ERROR,
    error_from_status,
    status_for,
)

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidInput("x"), Code.INVALID_ARGUMENT),
        (errors.InvalidElement("off curve", 3), Code.INVALID_ARGUMENT),
        (errors.InvalidMessage("x"), Code.INVALID_ARGUMENT),
        (errors.InvalidIdentifier("email", "x"), Code.INVALID_ARGUMENT),
        (errors.UnknownSuite("x"), Code.INVALID_ARGUMENT),
        (errors.OutOfOrder("x"), Code.FAILED_PRECONDITION),
        (errors.WrongSession("x"), Code.FAILED_PRECONDITION),
        (errors.VersionMismatch("x"), Code.FAILED_PRECONDITION),
        (errors.PolicyRefused("x"), Code.FAILED_PRECONDITION),
        (errors.LimitExceeded("x"), Code.RESOURCE_EXHAUSTED),
        (errors.BudgetExhausted("x"), Code.RESOURCE_EXHAUSTED),
        (errors.Unauthenticated("x"), Code.UNAUTHENTICATED),
        (errors.PermissionDenied("x"), Code.PERMISSION_DENIED),
        (errors.InvalidPolicy("x"), Code.INTERNAL),
        (errors.StoreError("x"), Code.INTERNAL),
        (errors.CleanroomError("x"), Code.INTERNAL),
        (RuntimeError("a bug"), Code.INTERNAL),
    ],
)
def test_status_for(error: BaseException, code: grpc.StatusCode) -> None:
    assert status_for(error) is code


def test_every_public_error_has_a_status() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert any(issubclass(cls, mapped) for mapped in ERROR_STATUS), name


@pytest.mark.parametrize(
    "cls",
    [
        errors.OutOfOrder,
        errors.WrongSession,
        errors.VersionMismatch,
        errors.PolicyRefused,
        errors.BudgetExhausted,
        errors.LimitExceeded,
        errors.InvalidMessage,
        errors.UnknownSuite,
        errors.Unauthenticated,
        errors.PermissionDenied,
    ],
)
def test_named_errors_come_back_as_themselves(cls: type[errors.CleanroomError]) -> None:
    original = cls("what went wrong")
    back = error_from_status(status_for(original), str(original), type(original).__name__)
    assert type(back) is cls
    assert str(back) == "what went wrong"


def test_errors_with_structured_fields_come_back_as_their_parent_with_the_text() -> None:
    original = errors.InvalidElement("small-order point", 7)
    back = error_from_status(status_for(original), str(original), "InvalidElement")
    assert type(back) is errors.InvalidInput
    assert str(back) == "element at row 7: small-order point"


@pytest.mark.parametrize("name", ["PlatformError", "PlatformRefused", "PlatformFailed"])
def test_client_side_names_sent_by_a_server_come_back_as_a_plain_error(name: str) -> None:
    # These take (message, error): a hostile server naming one must not crash the client.
    back = error_from_status(Code.INTERNAL, "it failed", name)
    assert type(back) is errors.CleanroomError
    assert str(back) == "it failed"


def test_unknown_or_missing_names_fall_back_to_the_code() -> None:
    for code, cls in STATUS_ERROR.items():
        assert type(error_from_status(code, "x")) is cls
        assert type(error_from_status(code, "x", "NoSuchError")) is cls
        assert type(error_from_status(code, "x", "__class__")) is cls


def test_a_name_that_contradicts_the_code_is_not_trusted() -> None:
    back = error_from_status(Code.INVALID_ARGUMENT, "x", "BudgetExhausted")
    assert type(back) is errors.InvalidInput


def test_other_codes_become_a_plain_error_naming_the_code() -> None:
    back = error_from_status(Code.UNAVAILABLE, "connection refused")
    assert type(back) is errors.CleanroomError
    assert str(back) == "the platform failed the call (UNAVAILABLE): connection refused"


def test_metadata_key_is_a_valid_grpc_key() -> None:
    assert ERROR_NAME_KEY.lower() == ERROR_NAME_KEY and not ERROR_NAME_KEY.endswith("-bin")
