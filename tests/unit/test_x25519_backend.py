"""The X25519 backends: the choice (CLEANROOM_X25519, --version) and that both give the same bytes.

The RFC 7748 vectors for each backend are in tests/vectors/test_x25519_rfc7748.py. Here: the
choice and its errors, small-order inputs (refused alike), every chunk length around the 8-lane
groups, the inputs whose limbs are all ones (where Intel's crypto_mb goes wrong), a Hypothesis
property over arbitrary 32-byte inputs, and a 10^5-pair random cross-check.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom import cli as cli_module
from cleanroom.crypto import backend_info, default_engine, get_suite, x25519
from cleanroom.crypto.suites import X25519Suite
from cleanroom.errors import BackendUnavailable

SUITE = get_suite("x25519-sha512-ell2-ro")
P = 2**255 - 19

needs_ifma = pytest.mark.skipif(
    x25519.ifma_problem() is not None, reason=f"ifma backend: {x25519.ifma_problem()}"
)
# The cross-checks call both backends by name, whatever CLEANROOM_X25519 says: the pass of the
# suite that forces openssl (make test) need not repeat them.
compares_both = pytest.mark.skipif(
    os.environ.get(x25519.ENV_VAR, "").strip().lower() == "openssl",
    reason="compares both backends by name: runs in the default pass",
)


def valid_elements(count: int, tag: bytes = b"") -> bytes:
    msgs = [b"element %d %s" % (i, tag) for i in range(count)]
    return default_engine().hash_to_curve_many(SUITE, msgs, SUITE.dst).tobytes()


def outcome(exchange: x25519.Exchange, key: bytes, rows: bytes) -> bytes | str:
    """The result, or the ValueError's message."""
    try:
        return exchange(key, rows)
    except ValueError as exc:
        return f"ValueError: {exc}"


# -- the choice ------------------------------------------------------------------------------


def test_openssl_can_always_be_forced() -> None:
    info = x25519.select("openssl")
    assert info.name == "openssl"
    assert "CLEANROOM_X25519=openssl" in info.reason
    assert "OpenSSL" in info.library


@pytest.mark.parametrize("value", ["fast", "IFMA2", "open ssl"])
def test_an_unknown_value_is_refused_naming_the_choices(value: str) -> None:
    with pytest.raises(BackendUnavailable, match="is not one of auto, ifma, openssl"):
        x25519.select(value)


def test_where_ifma_cannot_run_auto_falls_back_and_forcing_it_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(x25519, "ifma_problem", lambda: "this CPU has no AVX-512 IFMA")
    info = x25519.select("auto")
    assert (info.name, info.reason) == ("openssl", "auto: this CPU has no AVX-512 IFMA")
    assert x25519.select("").name == "openssl"
    with pytest.raises(BackendUnavailable, match=r"=ifma, but .* this CPU has no AVX-512 IFMA"):
        x25519.select("ifma")
    with pytest.raises(BackendUnavailable, match="this CPU has no AVX-512 IFMA"):
        x25519.exchange_ifma(bytes(32), valid_elements(1))


@needs_ifma
def test_where_ifma_runs_auto_takes_it() -> None:
    for requested in ("auto", "", " Auto ", "ifma"):
        info = x25519.select(requested)
        assert info.name == "ifma"
        assert "AVX-512 IFMA" in info.library
        assert "self-test passed" in info.reason


def test_backend_info_follows_the_environment_variable() -> None:
    expected = os.environ.get(x25519.ENV_VAR, "").strip().lower() or "auto"
    assert backend_info().requested == expected
    assert backend_info() is backend_info()  # chosen once per process


def run_version(value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, x25519.ENV_VAR: value}
    cli = Path(sys.executable).with_name("cleanroom")
    return subprocess.run(
        [str(cli), "--version"], env=env, capture_output=True, text=True, timeout=60
    )


def test_version_names_the_backend_and_why() -> None:
    forced = run_version("openssl")
    assert forced.returncode == 0, forced.stderr
    first, second = forced.stdout.splitlines()
    assert re.fullmatch(r"cleanroom \S+", first)
    assert re.fullmatch(
        r"X25519 backend: openssl \(OpenSSL .*\); forced by CLEANROOM_X25519=openssl", second
    )
    auto = run_version("auto")
    assert auto.returncode == 0, auto.stderr
    name = "ifma" if x25519.ifma_problem() is None else "openssl"
    assert f"X25519 backend: {name} (" in auto.stdout
    assert "; auto: " in auto.stdout


def test_version_with_a_bad_value_is_a_one_line_error() -> None:
    result = run_version("fastest")
    assert result.returncode == 1
    assert result.stderr == (
        "error: CLEANROOM_X25519='fastest' is not one of auto, ifma, openssl\n"
    )


def test_a_bad_value_fails_any_command_before_it_starts(tmp_path: Path) -> None:
    env = {**os.environ, x25519.ENV_VAR: "fastest"}
    cli = Path(sys.executable).with_name("cleanroom")
    missing = tmp_path / "platform.db"
    result = subprocess.run(
        [str(cli), "platform", "status", "--db", str(missing)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == "error: CLEANROOM_X25519='fastest' is not one of auto, ifma, openssl\n"
    assert cli_module.X25519_ENV_VAR == x25519.ENV_VAR  # the CLI names it without importing crypto


# -- the same bytes ---------------------------------------------------------------------------

SMALL_ORDER = [
    *sorted(X25519Suite.SMALL_ORDER_U),
    # non-canonical encodings of 0 and 1, and the same with the top bit set (RFC 7748 masks it)
    P.to_bytes(32, "little"),
    (P + 1).to_bytes(32, "little"),
    bytes(31) + b"\x80",
    (1 + 2**255).to_bytes(32, "little"),
]


@needs_ifma
@compares_both
@pytest.mark.parametrize("u", SMALL_ORDER, ids=lambda u: u.hex()[:8] + "…" + u.hex()[-4:])
@pytest.mark.parametrize("position", [0, 7, 8, 12])
def test_a_small_order_u_is_refused_alike_wherever_it_is(u: bytes, position: int) -> None:
    # position 12 falls in the padded last group of 13 rows
    key = os.urandom(32)
    rows = bytearray(valid_elements(13))
    rows[32 * position : 32 * position + 32] = u
    openssl = outcome(x25519.exchange_openssl, key, bytes(rows))
    assert openssl == "ValueError: Error computing shared key."
    assert outcome(x25519.exchange_ifma, key, bytes(rows)) == openssl


@needs_ifma
@compares_both
@pytest.mark.parametrize("count", [*range(18), 8192 + 3])
def test_both_backends_agree_on_every_chunk_length(count: int) -> None:
    key, rows = os.urandom(32), valid_elements(count, b"length")
    result = x25519.exchange_ifma(key, rows)
    assert len(result) == 32 * count
    assert result == x25519.exchange_openssl(key, rows)


@needs_ifma
def test_a_numpy_array_is_taken_as_it_is() -> None:
    key = os.urandom(32)
    array = np.frombuffer(valid_elements(20), dtype=np.uint8).reshape(20, 32)
    assert x25519.exchange_ifma(key, array) == x25519.exchange_openssl(key, array.tobytes())


@needs_ifma
@pytest.mark.parametrize(("key", "rows"), [(bytes(31), bytes(32)), (bytes(32), bytes(33))])
def test_malformed_arguments_are_refused(key: bytes, rows: bytes) -> None:
    with pytest.raises(ValueError, match="32"):
        x25519.exchange_ifma(key, rows)


def limbs_near_all_ones() -> list[int]:
    """Valid and twist u whose 52-bit (and 51-bit) limbs are all ones or nearly: p - d, 2^254 - d,
    2^255 - 2^k - d, and small rationals (1/2, -1/d) whose encodings are long runs of ones."""
    values = {P - d for d in range(2, 2500)}
    values |= {2**254 - d for d in range(1, 600)} | {2**254 + d for d in range(600)}
    values |= {(2**255 - 2**k - d) % P for k in (52, 104, 127, 156, 200, 208) for d in range(40)}
    values |= {(P - 1) * pow(d, P - 2, P) % P for d in range(2, 300)}  # -1/d
    values |= {pow(d, P - 2, P) for d in range(2, 300)}  # 1/d
    return sorted(values - {int.from_bytes(u, "little") for u in X25519Suite.SMALL_ORDER_U})


@needs_ifma
@compares_both
def test_both_backends_agree_where_the_limbs_are_all_ones() -> None:
    # Intel's crypto_mb (mbx_x25519_mb8, ipp-crypto-static 2026.2.0) returns wrong results on
    # many of these, some only under some keys; each lane here must give OpenSSL's bytes.
    rows = b"".join(u.to_bytes(32, "little") for u in limbs_near_all_ones())
    for _ in range(3):
        key = os.urandom(32)
        assert x25519.exchange_ifma(key, rows) == x25519.exchange_openssl(key, rows)


@needs_ifma
@compares_both
@settings(max_examples=300)
@given(
    key=st.binary(min_size=32, max_size=32),
    us=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=19),
)
def test_both_backends_agree_on_any_input(key: bytes, us: list[bytes]) -> None:
    # Any 32 bytes, not only valid elements: twist points, non-canonical and top-bit-set
    # encodings; where OpenSSL refuses an all-zero result, the ifma ladder must refuse it too.
    rows = b"".join(us)
    assert outcome(x25519.exchange_ifma, key, rows) == outcome(x25519.exchange_openssl, key, rows)


@needs_ifma
@compares_both
@pytest.mark.slow
def test_both_backends_agree_on_100_000_random_pairs() -> None:
    # 100 random keys, each with 1,000 elements: half hashed to the curve (what the protocol
    # multiplies), half random 32-byte strings (twist points and non-canonical ones included).
    rng = np.random.default_rng(int.from_bytes(os.urandom(8), "little"))
    for key_index in range(100):
        key = rng.bytes(32)
        rows = valid_elements(500, b"%d" % key_index) + rng.bytes(500 * 32)
        assert x25519.exchange_ifma(key, rows) == x25519.exchange_openssl(key, rows), (
            f"key {key.hex()} differs"  # a test key, not a secret
        )
