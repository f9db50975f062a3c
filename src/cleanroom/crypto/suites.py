"""Ciphersuites: the group, its element encoding, keys, validation and commutative encryption.

``E_k(P)`` is scalar multiplication by the secret ``k``; it commutes, ``E_a(E_b(P)) = E_b(E_a(P))``,
which is what lets two parties intersect doubly encrypted sets (DESIGN §3):

- ``x25519-sha512-ell2-ro``: X25519 on 32-byte little-endian u-coordinates. Clamping multiplies
  every scalar by the cofactor 8, so all scalars commute and results stay in the prime-order
  subgroup. The multiplication runs on cleanroom's own 8-lane ladder (AVX-512 IFMA) where the
  CPU has it, else on OpenSSL through ``cryptography``, with the same bytes
  (:mod:`cleanroom.crypto.x25519`).
- ``p256-sha256-sswu-ro``: P-256 ECDH on 33-byte SEC1 compressed points, on OpenSSL through
  ``cryptography``. ECDH returns x only, so
  the result is re-encoded with prefix ``0x02``; either y would do (``x([k](±P)) = x([k]P)``), and
  one fixed prefix makes the encoding canonical and the encryption commutative.

Every element from outside is validated before use (length, canonical encoding, on the curve,
not of small order); the first bad row is named in :class:`~cleanroom.errors.InvalidElement`.

A suite works on one chunk at a time, in the process that calls it: concatenated encodings in,
concatenated encodings out (``encrypt_rows``, ``hash_and_encrypt_rows``, ...). Arrays of any
size go through :class:`~cleanroom.crypto.batch.BatchEngine`, the one bulk API, which cuts them
into chunks for its workers (``engine.encrypt(suite, key, elements)``); arrays at that boundary
are ``NDArray[np.uint8]`` of shape ``(n, element_size)``.
"""

from __future__ import annotations

import abc
import secrets
from collections.abc import Callable, Sequence
from typing import ClassVar, Final

import gmpy2
import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from numpy.typing import NDArray

from cleanroom.crypto import _check25519, h2c_curve25519, h2c_p256, x25519
from cleanroom.crypto.keys import SecretKey
from cleanroom.errors import InvalidElement, InvalidKey, UnknownSuite

__all__ = [
    "DEFAULT_SUITE_ID",
    "SUITE_IDS",
    "P256Suite",
    "Suite",
    "X25519Suite",
    "get_suite",
]

SUITE_IDS: Final[tuple[str, ...]] = ("x25519-sha512-ell2-ro", "p256-sha256-sswu-ro")
DEFAULT_SUITE_ID: Final[str] = SUITE_IDS[0]

# GMP's Jacobi symbol costs more than the rest of a row's check, hence one per 64 subset
# products of a chunk (X25519) rather than one per row; P-256 still takes one per row.
_jacobi = gmpy2.jacobi
_P25519: Final = gmpy2.mpz(2**255 - 19)


class Suite(abc.ABC):
    """One ciphersuite: a group, its element encoding, and the operations of the protocol.

    Suites are stateless singletons obtained with :func:`get_suite`; they pickle by id, so a
    worker process gets its own instance. Each operation here handles one chunk in this process;
    :class:`~cleanroom.crypto.batch.BatchEngine` runs them over whole arrays.

    Attributes:
        suite_id: the suite's id, e.g. ``"x25519-sha512-ell2-ro"``.
        element_size: bytes per encoded element (32 for X25519, 33 for P-256).
        dst: the domain separation tag, ``b"CLEANROOM-V1-" + suite_id.upper()``.
        checked_in_place: whether :meth:`validate_rows` costs less than sending the rows to a
            worker and back, so that a batch engine runs it in the calling thread.
    """

    suite_id: ClassVar[str]
    element_size: ClassVar[int]
    key_size: ClassVar[int]
    checked_in_place: ClassVar[bool] = False

    @property
    def dst(self) -> bytes:
        """The suite's hash-to-curve domain separation tag (DESIGN §4)."""
        return b"CLEANROOM-V1-" + self.suite_id.upper().encode()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.suite_id}>"

    def __reduce__(self) -> tuple[Callable[[str], Suite], tuple[str]]:
        return (get_suite, (self.suite_id,))

    # -- keys ------------------------------------------------------------------------------

    @abc.abstractmethod
    def generate_key(self) -> SecretKey:
        """Generate a fresh secret key from the OS CSPRNG.

        Returns:
            A key for this suite; its repr shows no secret.
        """

    @abc.abstractmethod
    def key_from_bytes(self, data: bytes | bytearray | memoryview) -> SecretKey:
        """Load a key saved with ``key.to_bytes()``.

        Args:
            data: the encoded secret scalar (any bytes-like object).

        Returns:
            The key.

        Raises:
            InvalidKey: the bytes are of the wrong size or form (the message omits them).
        """

    def check_key(self, key: SecretKey) -> None:
        """Check that ``key`` is a key of this suite.

        Raises:
            TypeError: ``key`` is not a :class:`SecretKey`.
            InvalidKey: the key belongs to another suite.
        """
        if not isinstance(key, SecretKey):
            raise TypeError(f"a SecretKey is expected, got {type(key).__name__}")
        if key.suite_id != self.suite_id:
            raise InvalidKey(f"the key belongs to suite {key.suite_id}, not {self.suite_id}")

    # -- elements --------------------------------------------------------------------------

    def check_array(self, elements: NDArray[np.uint8]) -> None:
        """Check the array's type, dtype and shape (not the elements themselves).

        Args:
            elements: the array to check.

        Raises:
            InvalidElement: not a uint8 array of shape ``(n, element_size)``; the row is 0 when
                every row has the wrong length, ``None`` when the array as a whole is wrong.
        """
        size = self.element_size
        if not isinstance(elements, np.ndarray):
            raise InvalidElement(
                f"a numpy uint8 array of shape (n, {size}) expected, got {type(elements).__name__}"
            )
        if elements.dtype != np.uint8:
            raise InvalidElement(f"a uint8 array expected, got dtype {elements.dtype}")
        if elements.ndim != 2:
            raise InvalidElement(
                f"an array of shape (n, {size}) expected, got shape {elements.shape}"
            )
        if elements.shape[1] != size:
            row = 0 if elements.shape[0] else None
            raise InvalidElement(f"{size} bytes expected, got {elements.shape[1]}", row)

    @abc.abstractmethod
    def hash_to_curve(self, msg: bytes, dst: bytes) -> bytes:
        """Hash one message to an encoded group element (RFC 9380 random-oracle variant).

        Args:
            msg: the message, e.g. from ``cleanroom.identifiers.hash_message``.
            dst: the domain separation tag, normally ``suite.dst``.

        Returns:
            The encoded element, ``element_size`` bytes.
        """

    # -- one chunk in this process (what the batch engine runs in its workers) --------------

    def split_rows(self, rows: bytes) -> list[bytes]:
        """Cut concatenated encodings into one ``bytes`` per element."""
        size = self.element_size
        return [rows[i : i + size] for i in range(0, len(rows), size)]

    @abc.abstractmethod
    def validate_rows(self, rows: bytes) -> None:
        """Validate concatenated encodings (a whole number of elements).

        Raises:
            InvalidElement: for the first bad element, with its index within ``rows``.
        """

    def encrypt_rows(self, key: SecretKey, rows: bytes) -> bytes:
        """Validate, then encrypt concatenated encodings: ``E_k`` of each element.

        Raises:
            InvalidElement: for the first bad element, with its index within ``rows``.
            InvalidKey: the key belongs to another suite.
        """
        self.check_key(key)
        self._check_elements(rows)
        return self._exchange_all(key.to_bytes(), rows)

    def hash_rows(self, msgs: Sequence[bytes], dst: bytes) -> bytes:
        """Hash messages to the curve; return the concatenated encodings."""
        return self._hash_to_curve_many_local(msgs, dst).tobytes()

    def hash_and_encrypt_rows(self, key: SecretKey, msgs: Sequence[bytes], dst: bytes) -> bytes:
        """Hash messages to the curve and encrypt them; return the concatenated encodings.

        Hash-to-curve output is valid by construction, so it is not validated again.

        Raises:
            InvalidKey: the key belongs to another suite.
        """
        self.check_key(key)
        hashed = self._hash_to_curve_many_local(msgs, dst).tobytes()
        return self._exchange_all(key.to_bytes(), hashed)

    @abc.abstractmethod
    def _check_elements(self, rows: bytes) -> None:
        """Validate one chunk of concatenated encodings (the suite's one place for it)."""

    @abc.abstractmethod
    def _exchange_all(self, key_bytes: bytes, rows: bytes) -> bytes:
        """Multiply every (valid) element of concatenated encodings by the secret scalar; the
        suite's one place for it."""

    @abc.abstractmethod
    def _hash_to_curve_many_local(self, msgs: Sequence[bytes], dst: bytes) -> NDArray[np.uint8]:
        """Hash messages in this process (the hash-to-curve module's batch function)."""


class X25519Suite(Suite):
    """``x25519-sha512-ell2-ro``: X25519 on 32-byte little-endian u-coordinates."""

    suite_id = "x25519-sha512-ell2-ro"
    element_size = 32
    key_size = 32
    # One C call a chunk, without the GIL, at about a tenth of a microsecond a row: less than
    # the copies to a worker process and back.
    checked_in_place = True

    P: Final = 2**255 - 19
    A: Final = 486662
    # The canonical u-coordinates of points of small order on the curve and its twist: 0 (order
    # 2 on both), 1 (order 4), the two of order 8 (RFC 7748 §7, libsodium's blocklist) and p-1
    # (order 4 on the twist). Encrypting one gives all-zero, so a peer could force a known result.
    SMALL_ORDER_U: Final[frozenset[bytes]] = frozenset(
        u.to_bytes(32, "little")
        for u in (
            0,
            1,
            325606250916557431795983626356110631294008115727848805560023387167927233504,
            39382357235489614581723060781553021112529911719440698176882885853963445705823,
            2**255 - 19 - 1,
        )
    )
    # The same, concatenated, for the C check of a whole chunk.
    _SMALL_ORDER_ROWS: Final[bytes] = b"".join(sorted(SMALL_ORDER_U))

    def generate_key(self) -> SecretKey:
        return SecretKey(self.suite_id, X25519PrivateKey.generate().private_bytes_raw())

    def key_from_bytes(self, data: bytes | bytearray | memoryview) -> SecretKey:
        data = _key_data(data)
        if len(data) != self.key_size:
            raise InvalidKey(f"X25519 key: {self.key_size} bytes expected, got {len(data)}")
        return SecretKey(self.suite_id, data)

    def hash_to_curve(self, msg: bytes, dst: bytes) -> bytes:
        return h2c_curve25519.hash_to_curve(msg, dst)

    def _hash_to_curve_many_local(self, msgs: Sequence[bytes], dst: bytes) -> NDArray[np.uint8]:
        return h2c_curve25519.hash_to_curve_many(msgs, dst)

    @classmethod
    def element_problem(cls, u: bytes) -> str | None:
        """Say what is wrong with one 32-byte encoding, or ``None`` if it is a valid element."""
        if u[31] & 0x80:
            return "non-canonical u-coordinate (top bit set)"
        x = int.from_bytes(u, "little")
        if x >= cls.P:
            return "non-canonical u-coordinate (not below p = 2^255 - 19)"
        if u in cls.SMALL_ORDER_U:
            return "small-order point"
        # On the curve iff v^2 = u^3 + A u^2 + u has a solution; otherwise u is on the twist.
        if _jacobi(x * (x * (x + cls.A) + 1), cls.P) != 1:
            return "not on the curve (twist point)"
        return None

    def validate_rows(self, rows: bytes) -> None:
        self._check_elements(rows)

    def _check_elements(self, rows: bytes) -> None:
        # Fast path, in one C call over the whole chunk (_check25519.c), on millions of received
        # rows per session: canonical encodings and small order exactly, curve membership by
        # the random subset test (64 Legendre symbols of random subset products instead of one
        # per row; a chunk with a twist point passes with probability 2^-64, a valid chunk
        # always does). The chunk is not cut into one bytes object per row unless it fails.
        count = len(rows) // self.element_size
        masks = secrets.token_bytes(
            -(-count // _check25519.GROUP) * _check25519.MASK_BYTES_PER_GROUP
        )
        noncanonical, small_order, products = _check25519.twist_test(
            rows, masks, self._SMALL_ORDER_ROWS
        )
        if (
            noncanonical < 0
            and small_order < 0
            and all(
                _jacobi(gmpy2.mpz.from_bytes(products[i : i + 32], "little"), _P25519) == 1
                for i in range(0, len(products), 32)
            )
        ):
            return
        # Slow path, only on failure: the exact check, row by row, finds the first bad row and
        # says why. It is the authority: it alone decides that a row is bad.
        for row, u in enumerate(self.split_rows(rows)):
            problem = self.element_problem(u)
            if problem is not None:
                raise InvalidElement(problem, row)

    @staticmethod
    def _exchange_all(key_bytes: bytes, rows: bytes) -> bytes:
        # Every X25519 scalar multiplication of a chunk (encrypting received elements, and
        # hashed messages) happens here, on this process's backend (8 lanes on AVX-512 IFMA, or
        # OpenSSL): the same bytes either way (cleanroom.crypto.x25519).
        return x25519.exchange(key_bytes, rows)


class P256Suite(Suite):
    """``p256-sha256-sswu-ro``: P-256 ECDH on 33-byte SEC1 compressed points."""

    suite_id = "p256-sha256-sswu-ro"
    element_size = 33
    key_size = 32

    P: Final = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
    B: Final = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
    N: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    _CURVE: Final = ec.SECP256R1()

    def generate_key(self) -> SecretKey:
        private = ec.generate_private_key(self._CURVE)
        scalar = private.private_numbers().private_value
        return SecretKey(self.suite_id, scalar.to_bytes(self.key_size, "big"))

    def key_from_bytes(self, data: bytes | bytearray | memoryview) -> SecretKey:
        data = _key_data(data)
        if len(data) != self.key_size:
            raise InvalidKey(f"P-256 key: {self.key_size} bytes expected, got {len(data)}")
        if not 1 <= int.from_bytes(data, "big") < self.N:
            raise InvalidKey("P-256 key: the scalar is not in [1, n-1]")
        return SecretKey(self.suite_id, data)

    def hash_to_curve(self, msg: bytes, dst: bytes) -> bytes:
        return h2c_p256.hash_to_curve(msg, dst)

    def _hash_to_curve_many_local(self, msgs: Sequence[bytes], dst: bytes) -> NDArray[np.uint8]:
        return h2c_p256.hash_to_curve_many(msgs, dst)

    @classmethod
    def element_problem(cls, point: bytes) -> str | None:
        """Say what is wrong with one 33-byte encoding, or ``None`` if it is a valid element."""
        prefix = point[0]
        if prefix == 0x00:
            return "the point at infinity is not a valid element"
        if prefix not in (0x02, 0x03):
            return f"bad prefix 0x{prefix:02x} (compressed point 0x02 or 0x03 expected)"
        x = int.from_bytes(point[1:], "big")
        if x >= cls.P:
            return "non-canonical x-coordinate (not below p)"
        # P-256 has prime order, so every point but infinity is valid; on the curve iff
        # x^3 - 3x + b is a square (it is never 0: no point of order 2).
        if _jacobi((x * (x * x - 3) + cls.B) % cls.P, cls.P) != 1:
            return "not on the curve"
        return None

    def validate_rows(self, rows: bytes) -> None:
        self._check_elements(rows)

    def _check_elements(self, rows: bytes) -> None:
        for row, point in enumerate(self.split_rows(rows)):
            problem = self.element_problem(point)
            if problem is not None:
                raise InvalidElement(problem, row)

    def _exchange_all(self, key_bytes: bytes, rows: bytes) -> bytes:
        curve = self._CURVE
        private = ec.derive_private_key(int.from_bytes(key_bytes, "big"), curve)
        exchange, ecdh = private.exchange, ec.ECDH()
        from_encoded_point = ec.EllipticCurvePublicKey.from_encoded_point
        # ECDH yields x only; prefix 0x02 re-encodes it canonically (either y gives the same x
        # after the next party's multiplication, which is what makes E commute).
        return b"".join(
            [
                b"\x02" + exchange(ecdh, from_encoded_point(curve, point))
                for point in self.split_rows(rows)
            ]
        )


def _key_data(data: bytes | bytearray | memoryview) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"key bytes expected, got {type(data).__name__}")
    return bytes(data)


_SUITES: Final[dict[str, Suite]] = {suite.suite_id: suite for suite in (X25519Suite(), P256Suite())}
assert tuple(_SUITES) == SUITE_IDS


def get_suite(suite_id: str = DEFAULT_SUITE_ID) -> Suite:
    """Return the ciphersuite with this id.

    Args:
        suite_id: one of :data:`SUITE_IDS`; the default is :data:`DEFAULT_SUITE_ID`.

    Returns:
        The suite (a shared, stateless object).

    Raises:
        UnknownSuite: this build does not implement the id.
    """
    try:
        return _SUITES[suite_id]
    except (KeyError, TypeError):
        known = ", ".join(SUITE_IDS)
        raise UnknownSuite(f"unknown ciphersuite {suite_id!r}; known: {known}") from None
