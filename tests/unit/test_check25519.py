"""The random subset test of curve membership (``_check25519``) and the X25519 validation on it."""

from __future__ import annotations

import functools
import secrets

import gmpy2
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.crypto import _check25519, get_suite
from cleanroom.crypto.suites import X25519Suite
from cleanroom.errors import InvalidElement

P = 2**255 - 19
A = 486662
X25519 = get_suite("x25519-sha512-ell2-ro")
SMALL_ORDER = b"".join(sorted(X25519Suite.SMALL_ORDER_U))
NO_IFMA = "this CPU (or its OS) has no AVX-512 IFMA: only the portable path runs here"

C_PATHS = [
    pytest.param(True, id="ifma", marks=pytest.mark.skipif(not _check25519.IFMA, reason=NO_IFMA)),
    pytest.param(False, id="portable"),
]


def rhs(u: int) -> int:
    return (u * (u * (u + A) + 1)) % P


def mask_size(rows: int) -> int:
    return -(-rows // _check25519.GROUP) * _check25519.MASK_BYTES_PER_GROUP


def reference_products(units: list[int], masks: bytes) -> list[int]:
    """Test t multiplies in row r iff bit r % 4 of test t's nibble in r's group is set."""
    products = []
    for test in range(_check25519.TESTS):
        product = 1
        for row, u in enumerate(units):
            group = masks[(row // 4) * _check25519.MASK_BYTES_PER_GROUP :]
            nibble = (group[test // 2] >> (4 * (test % 2))) & 0xF
            if nibble >> (row % 4) & 1:
                product = product * rhs(u) % P
        products.append(product)
    return products


def first_small_order(rows: bytes) -> int:
    units = [rows[i : i + 32] for i in range(0, len(rows), 32)]
    return next((row for row, u in enumerate(units) if u in X25519Suite.SMALL_ORDER_U), -1)


def curve_points(count: int) -> list[bytes]:
    return [X25519PrivateKey.generate().public_key().public_bytes_raw() for _ in range(count)]


def twist_point() -> bytes:
    while True:
        u = secrets.randbelow(P)
        if gmpy2.jacobi(rhs(u), P) == -1:
            return u.to_bytes(32, "little")


def test_the_module_constants_fit_the_masks() -> None:
    assert _check25519.TESTS == 64
    assert _check25519.MASK_BYTES_PER_GROUP * 8 == _check25519.TESTS * _check25519.GROUP


@pytest.mark.parametrize("ifma", C_PATHS)
@settings(max_examples=60, deadline=None)
@given(units=st.lists(st.integers(0, P - 1), max_size=21), seed=st.binary(min_size=32, max_size=32))
def test_products_are_those_of_the_subsets_the_masks_choose(
    ifma: bool, units: list[int], seed: bytes
) -> None:
    masks = (seed * (mask_size(len(units)) // 32 + 1))[: mask_size(len(units))]
    rows = b"".join(u.to_bytes(32, "little") for u in units)
    noncanonical, small_order, packed = _check25519.twist_test(rows, masks, SMALL_ORDER, ifma=ifma)
    assert noncanonical == -1
    assert small_order == first_small_order(rows)
    products = [int.from_bytes(packed[i : i + 32], "little") for i in range(0, len(packed), 32)]
    assert products == reference_products(units, masks)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ((2**255 - 19).to_bytes(32, "little"), "p itself"),
        ((2**255 - 1).to_bytes(32, "little"), "2^255 - 1"),
        (bytes(31) + b"\x80", "top bit set"),
        (b"\xff" * 32, "all ones"),
    ],
)
def test_the_first_noncanonical_row_is_named(bad: bytes, why: str) -> None:
    rows = curve_points(5)
    rows[3] = bad
    rows.append(bad)
    noncanonical, _, _ = _check25519.twist_test(b"".join(rows), bytes(mask_size(6)), SMALL_ORDER)
    assert noncanonical == 3, why
    # p - 1 is canonical (it is of small order: the suite's exact check refuses it).
    canonical = (P - 1).to_bytes(32, "little")
    assert _check25519.twist_test(canonical, bytes(mask_size(1)), SMALL_ORDER)[:2] == (-1, 0)


@pytest.mark.parametrize("small", sorted(X25519Suite.SMALL_ORDER_U))
def test_the_first_small_order_row_is_named(small: bytes) -> None:
    rows = curve_points(9)
    rows[6] = rows[8] = small
    assert _check25519.twist_test(b"".join(rows), bytes(mask_size(9)), SMALL_ORDER)[:2] == (-1, 6)
    # Only the encodings the caller lists count.
    assert _check25519.twist_test(b"".join(rows), bytes(mask_size(9)), b"")[:2] == (-1, -1)


def test_wrong_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="whole number of 32-byte"):
        _check25519.twist_test(bytes(33), bytes(32), SMALL_ORDER)
    with pytest.raises(ValueError, match="masks must be 64 bytes for 5 rows, got 40"):
        _check25519.twist_test(bytes(32 * 5), bytes(40), SMALL_ORDER)
    with pytest.raises(ValueError, match="listed must be a whole number of 32-byte"):
        _check25519.twist_test(bytes(32), bytes(32), bytes(31))


def test_a_chunk_of_curve_points_always_passes() -> None:
    for count in (0, 1, 3, 4, 5, 257, 8192):
        X25519.validate_rows(b"".join(curve_points(count)))


@pytest.mark.parametrize("position", [0, 1, 2, 3, 4, 1000, 4095])
def test_one_twist_point_anywhere_in_a_chunk_is_refused_naming_its_row(position: int) -> None:
    rows = curve_points(4096)
    rows[position] = twist_point()
    with pytest.raises(InvalidElement) as raised:
        X25519.validate_rows(b"".join(rows))
    assert raised.value.row == position
    assert raised.value.reason == "not on the curve (twist point)"


def test_two_twist_points_whose_product_is_a_square_are_refused() -> None:
    # A single product over the whole chunk would pass these: (-1) * (-1) = +1. Random subsets
    # separate them.
    rows = curve_points(1000)
    rows[10], rows[11] = twist_point(), twist_point()
    product = rhs(int.from_bytes(rows[10], "little")) * rhs(int.from_bytes(rows[11], "little"))
    assert gmpy2.jacobi(product % P, P) == 1
    with pytest.raises(InvalidElement) as raised:
        X25519.validate_rows(b"".join(rows))
    assert raised.value.row == 10


def test_a_twist_point_makes_about_half_of_the_products_non_squares() -> None:
    rows = curve_points(100)
    rows[42] = twist_point()
    masks = secrets.token_bytes(mask_size(100))
    noncanonical, small_order, packed = _check25519.twist_test(b"".join(rows), masks, SMALL_ORDER)
    assert (noncanonical, small_order) == (-1, -1)
    symbols = [
        gmpy2.jacobi(int.from_bytes(packed[i : i + 32], "little"), P)
        for i in range(0, len(packed), 32)
    ]
    assert set(symbols) <= {1, -1}
    # Binomial(64, 1/2): outside [8, 56] with probability below 10^-9.
    assert 8 <= symbols.count(-1) <= 56


# --- The IFMA path against the portable one ----------------------------------------------------


# Rows the validation must tell apart: anything canonical, the small-order encodings, values
# from p up to 2^255 - 1, and any 32 bytes at all (half of them with the top bit set).
ODD_ROWS = st.one_of(
    st.sampled_from(sorted(X25519Suite.SMALL_ORDER_U)),
    st.integers(P, 2**255 - 1).map(lambda u: u.to_bytes(32, "little")),
    st.binary(min_size=32, max_size=32),
)


@pytest.mark.skipif(not _check25519.IFMA, reason=NO_IFMA)
@settings(max_examples=300, deadline=None)
@given(
    canonical=st.lists(st.integers(0, P - 1), max_size=100),
    odd=st.lists(st.tuples(st.integers(0, 100), ODD_ROWS), max_size=3),
    data=st.data(),
)
def test_the_ifma_and_portable_paths_give_the_same_answer(
    canonical: list[int], odd: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    units = [u.to_bytes(32, "little") for u in canonical]
    for position, row in odd:
        units.insert(position % (len(units) + 1), row)
    rows = b"".join(units)
    size = mask_size(len(units))
    masks = data.draw(st.binary(min_size=size, max_size=size), label="masks")
    on_ifma = _check25519.twist_test(rows, masks, SMALL_ORDER, ifma=True)
    portable = _check25519.twist_test(rows, masks, SMALL_ORDER, ifma=False)
    assert on_ifma == portable
    noncanonical = next(
        (row for row, u in enumerate(units) if int.from_bytes(u, "little") >= P), -1
    )
    assert on_ifma[:2] == (noncanonical, first_small_order(rows))


@pytest.mark.skipif(not _check25519.IFMA, reason=NO_IFMA)
def test_the_ifma_and_portable_paths_agree_on_every_length_of_a_chunk_of_curve_points() -> None:
    points = b"".join(curve_points(8200))
    for count in [*range(70), 8191, 8192, 8200]:
        masks = secrets.token_bytes(mask_size(count))
        rows = points[: 32 * count]
        assert _check25519.twist_test(rows, masks, SMALL_ORDER, ifma=True) == (
            _check25519.twist_test(rows, masks, SMALL_ORDER, ifma=False)
        ), count


def symbols(packed: bytes) -> list[int]:
    return [
        gmpy2.jacobi(int.from_bytes(packed[i : i + 32], "little"), P)
        for i in range(0, len(packed), 32)
    ]


@pytest.mark.parametrize("ifma", C_PATHS)
def test_a_valid_chunk_passes_and_one_twist_point_fails_on_either_path(
    ifma: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = curve_points(1001)
    masks = secrets.token_bytes(mask_size(1001))
    _, _, packed = _check25519.twist_test(b"".join(rows), masks, SMALL_ORDER, ifma=ifma)
    assert set(symbols(packed)) == {1}
    rows[998] = twist_point()
    _, _, packed = _check25519.twist_test(b"".join(rows), masks, SMALL_ORDER, ifma=ifma)
    assert -1 in symbols(packed)  # fails to notice with probability 2^-64
    # The same through the suite, with its C call held to this path.
    forced = functools.partial(_check25519.twist_test, ifma=ifma)
    monkeypatch.setattr(_check25519, "twist_test", forced)
    X25519.validate_rows(b"".join(curve_points(1001)))
    with pytest.raises(InvalidElement) as raised:
        X25519.validate_rows(b"".join(rows))
    assert (raised.value.row, raised.value.reason) == (998, "not on the curve (twist point)")
