"""The one table between cleanroom's errors and gRPC status codes (DESIGN §9).

The server maps any error it raises with :func:`status_for` and sends the error's class name in
the trailing metadata key :data:`ERROR_NAME_KEY`; the client turns the status back into the
same :class:`~cleanroom.errors.CleanroomError` subclass with :func:`error_from_status`, so code
on either side of the wire catches the same exceptions.

- ``INVALID_ARGUMENT``: bad data (malformed messages, elements, identifiers, unknown suite).
- ``FAILED_PRECONDITION``: a round out of order, another session's id, a version mismatch, or a
  session the policy refuses.
- ``RESOURCE_EXHAUSTED``: the privacy budget, a size limit, the daily session limit, a rate
  limit or a cap on concurrent streams.
- ``DEADLINE_EXCEEDED``: the client did not send what was due in time (no opening message).
- ``UNAUTHENTICATED`` / ``PERMISSION_DENIED``: identity.
- ``INTERNAL``: the platform's own trouble (its database, its policy file, a bug); the client
  gets no detail it could act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# grpcio ships no type information; types-grpcio (a dev dependency) provides it.
import grpc

from cleanroom import errors
from cleanroom.errors import (
    CleanroomError,
    DeadlineExceeded,
    InvalidInput,
    InvalidPolicy,
    LimitExceeded,
    PermissionDenied,
    PolicyRefused,
    ProtocolError,
    StoreError,
    Unauthenticated,
    UnknownSuite,
)

__all__ = ["ERROR_NAME_KEY", "ERROR_STATUS", "STATUS_ERROR", "error_from_status", "status_for"]

ERROR_NAME_KEY: Final = "cleanroom-error"
"""Trailing-metadata key carrying the error's class name from server to client."""

ERROR_STATUS: Final[Mapping[type[CleanroomError], grpc.StatusCode]] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownSuite: grpc.StatusCode.INVALID_ARGUMENT,
    # Loaded at server start from the platform's own file: never the caller's fault.
    InvalidPolicy: grpc.StatusCode.INTERNAL,
    StoreError: grpc.StatusCode.INTERNAL,
    ProtocolError: grpc.StatusCode.FAILED_PRECONDITION,
    PolicyRefused: grpc.StatusCode.FAILED_PRECONDITION,
    LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    CleanroomError: grpc.StatusCode.INTERNAL,
}
"""Error class -> status code; an error takes the entry of its nearest class in its MRO."""

STATUS_ERROR: Final[Mapping[grpc.StatusCode, type[CleanroomError]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.FAILED_PRECONDITION: ProtocolError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}
"""Status code -> error class, for a status that names no known error class."""


def status_for(error: BaseException) -> grpc.StatusCode:
    """Return the status code the server sends for ``error``.

    Args:
        error: any exception; one that is not a CleanroomError is a bug: ``INTERNAL``.

    Returns:
        The code of the nearest class of ``error`` in :data:`ERROR_STATUS`.
    """
    for cls in type(error).__mro__:
        if issubclass(cls, CleanroomError) and cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return grpc.StatusCode.INTERNAL


def _rebuildable(name: str | None) -> type[CleanroomError] | None:
    """Return the class ``name`` names, or its nearest ancestor built from a message alone."""
    cls = getattr(errors, name, None) if name in errors.__all__ else None
    if not (isinstance(cls, type) and issubclass(cls, CleanroomError)):
        return None
    for ancestor in cls.__mro__:
        # Classes with an __init__ of their own or inherited from a class below CleanroomError
        # (InvalidElement(reason, row), PlatformRefused(message, error), ...) cannot be rebuilt
        # from the details text; an ancestor can, and the text keeps the detail.
        if issubclass(ancestor, CleanroomError) and not any(
            "__init__" in vars(c) for c in ancestor.__mro__ if issubclass(c, CleanroomError)
        ):
            return ancestor
    return None


def error_from_status(
    code: grpc.StatusCode, details: str, error_name: str | None = None
) -> CleanroomError:
    """Turn a failed call's status back into the error the server raised.

    Args:
        code: the call's status code.
        details: the call's details text (the server's error message).
        error_name: the value of :data:`ERROR_NAME_KEY` in the trailing metadata, if any.

    Returns:
        An instance of the named error class if it is known (or of its nearest ancestor that can
        be built from a message), else of the class :data:`STATUS_ERROR` gives for ``code``,
        else a plain :class:`~cleanroom.errors.CleanroomError` naming the code. The client
        raises it ``from`` the ``grpc.RpcError``.
    """
    cls = _rebuildable(error_name)
    if cls is not None and status_for(cls("")) == code:
        return cls(details)
    cls = STATUS_ERROR.get(code)
    if cls is not None:
        return cls(details)
    return CleanroomError(f"the platform failed the call ({code.name}): {details}")
