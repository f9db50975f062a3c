"""The exception tree: one base, bad input is also a ValueError."""

from __future__ import annotations

import pytest

from cleanroom import errors


@pytest.mark.parametrize(
    "cls", [errors.InvalidElement, errors.InvalidIdentifier, errors.InvalidKey, errors.UnknownSuite]
)
def test_input_errors_are_cleanroom_and_value_errors(cls: type[Exception]) -> None:
    assert issubclass(cls, errors.CleanroomError)
    assert issubclass(cls, ValueError)


def test_invalid_element_names_row_and_reason() -> None:
    exc = errors.InvalidElement("not on the curve", row=17)
    assert exc.row == 17
    assert "row 17" in str(exc) and "not on the curve" in str(exc)


def test_invalid_identifier_names_kind_and_reason() -> None:
    exc = errors.InvalidIdentifier("email", "missing '@'")
    assert (exc.kind, exc.reason) == ("email", "missing '@'")
    assert str(exc) == "invalid email: missing '@'"


def test_every_public_error_is_documented_in_the_tree() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in doc, f"{name} missing from the exception tree in errors.__doc__"


@pytest.mark.parametrize(
    "exc",
    [
        errors.InvalidElement("small-order point", row=3),
        errors.InvalidIdentifier("phone", "not a valid number"),
        errors.AuditChainBroken(7, "entry changed"),
    ],
)
def test_errors_with_fields_survive_pickling(exc: Exception) -> None:
    # The batch engine and the server move errors between processes.
    import pickle

    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is type(exc)
    assert str(copy) == str(exc)
    assert vars(copy) == vars(exc)
