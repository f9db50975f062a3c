"""The secret scalar of one party, bound to the ciphersuite it was made for.

A key is deliberately hard to leak: its ``repr``/``str`` show only the suite, it refuses to be
pickled (so it cannot ride along into a log record, a queue or a worker by accident; the batch
engine passes ``key.to_bytes()`` inside its tasks on purpose), and equality is constant-time.
Keys are made by a suite (``suite.generate_key()``, ``suite.key_from_bytes(b)``), which checks
the size and form of the bytes.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn, final

__all__ = ["SecretKey"]


@final
class SecretKey:
    """A party's secret scalar for one ciphersuite.

    Construct keys through a suite, not directly: the suite validates the bytes.

    Attributes:
        suite_id: the ciphersuite this key belongs to.
    """

    __slots__ = ("_secret", "_suite_id")

    _secret: bytes
    _suite_id: str

    def __init__(self, suite_id: str, secret: bytes) -> None:
        """Wrap already validated key bytes (called by the suites).

        Args:
            suite_id: the ciphersuite the key belongs to.
            secret: the encoded secret scalar, already checked by the suite.
        """
        object.__setattr__(self, "_suite_id", suite_id)
        object.__setattr__(self, "_secret", bytes(secret))

    @property
    def suite_id(self) -> str:
        """The ciphersuite this key belongs to."""
        return self._suite_id

    def to_bytes(self) -> bytes:
        """Return the encoded secret scalar; ``suite.key_from_bytes`` reverses it.

        Returns:
            The key bytes. Handle them as the secret they are: never log or print them.
        """
        return self._secret

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("SecretKey is immutable")

    def __repr__(self) -> str:
        return f"<SecretKey suite={self._suite_id} (secret not shown)>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        # Constant-time so comparing keys does not leak how many leading bytes agree.
        return self._suite_id == other._suite_id and hmac.compare_digest(
            self._secret, other._secret
        )

    # Hashing a secret would put a function of it into dicts and sets; keys are not dict keys.
    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "SecretKey refuses to be pickled so it cannot leak into logs or queues by accident; "
            "pass key.to_bytes() explicitly where a copy is really needed"
        )

    def __copy__(self) -> SecretKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SecretKey:
        return self
