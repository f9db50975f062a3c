"""The C path of normalize_batch (_batch.c) against the Python reference, case by case.

The Hypothesis comparison on generated addresses is tests/property/test_email_fast_path.py; here
are the exhaustive and the deterministic cases: every ASCII character at every place of an
address, every SHA-256 length around the padding edges on both block functions, the values the C
path hands back, and the pure-Python fallback giving the same batches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers import Rejection, _batch, batch, normalize_batch
from cleanroom.identifiers.email import normalize_email
from cleanroom.identifiers.messages import message_prefix
from cleanroom.identifiers.rules import TRIMMED_WHITESPACE


def reference(values: Sequence[str]) -> tuple[list[int], list[str], list[Rejection]]:
    """normalize_email value by value: the indices, values and rejections a batch must give."""
    indices: list[int] = []
    normalized: list[str] = []
    rejected: list[Rejection] = []
    for index, value in enumerate(values):
        try:
            result = normalize_email(value)
        except InvalidIdentifier as exc:
            rejected.append(Rejection(index, value, exc.reason))
        else:
            indices.append(index)
            normalized.append(result)
    return indices, normalized, rejected


def assert_batch_is_reference(values: Sequence[str]) -> None:
    got = normalize_batch("email", values)
    indices, normalized, rejected = reference(values)
    assert (got.indices, got.values, got.rejected) == (indices, normalized, rejected)
    prefix = message_prefix("email")
    assert got.messages() == [prefix + hashlib.sha256(v.encode()).digest() for v in normalized]


# Templates with one place for a character: before, inside and after each part of an address,
# on gmail.com (folded) and elsewhere.
PLACES = [
    "{c}",
    "{c}jane@example.com",
    "jane@example.com{c}",
    "ja{c}ne@example.com",
    "jane{c}@example.com",
    "jane@{c}example.com",
    "jane@exam{c}ple.com",
    "jane@example{c}.com",
    "jane@example.{c}com",
    "{c}Jane.Doe+ads@GMail.com",
    "Jane.Doe+ads@GMail.com{c}",
    "J{c}ane.Doe+ads@GMail.com",
    "{c}@gmail.com",
    "{c}+x@gmail.com",
    ".{c}.@gmail.com",
    "jane@gmail{c}com",
    "jane@gmail.co{c}m",
    "a@b{c}",
    "a{c}b",
]


@pytest.mark.parametrize("place", PLACES)
def test_every_ascii_character_at_every_place(place: str) -> None:
    values = [place.format(c=chr(code)) for code in range(128)]
    values += [place.format(c=chr(code) * 2) for code in range(128)]
    assert_batch_is_reference(values)


def test_trimmed_whitespace_is_what_the_c_path_trims() -> None:
    # The C file spells the set out; a change to TRIMMED_WHITESPACE must show up here.
    trimmed = [
        chr(c)
        for c in range(128)
        if _batch.normalize_emails([f"{chr(c)}a@b.co{chr(c)}"])[1] == ["a@b.co"]
    ]
    assert "".join(sorted(trimmed)) == "".join(sorted(TRIMMED_WHITESPACE))


def test_decides_every_well_formed_ascii_address() -> None:
    values = [
        "  Jane.Doe@Example.COM\t",
        "Jane.Doe+ads@GMail.com",
        "j.a.n.e+a+b@gmail.com",
        "jane+ads@example.com",
        "a@b.co",
        "already@normal.org",
        "\v\f x!#$%&'*/=?^_`{|}~-@a-b.c_d \r\n",
        "x@" + "sub." * 500 + "com",
        "L" * 100_000 + "@example.com",
    ]
    indices, normalized, handed_back = _batch.normalize_emails(values)
    assert (indices, handed_back) == (list(range(len(values))), [])
    assert normalized == [normalize_email(value) for value in values]


def test_hands_back_what_it_does_not_accept() -> None:
    class Email(str):
        pass

    values = ["", " ", "jöhn@example.com", "a@b", "+@gmail.com", Email("A@B.CO"), "x@y.z"]
    indices, normalized, handed_back = _batch.normalize_emails(values)
    assert (indices, normalized, handed_back) == ([6], ["x@y.z"], [0, 1, 2, 3, 4, 5])
    # A str subclass is the reference's to decide, and it accepts this one: merged back in order.
    assert_batch_is_reference(values)
    assert normalize_batch("email", values).indices == [5, 6]


def test_accepts_any_sequence() -> None:
    values = ("B@x.io", "nope", "c@Y.io")
    assert _batch.normalize_emails(values) == ([0, 2], ["b@x.io", "c@y.io"], [1])
    assert _batch.normalize_emails(iter(["a@b.co"])) == ([0], ["a@b.co"], [])
    with pytest.raises(TypeError):
        _batch.normalize_emails(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("sha_ni", [True, False])
def test_sha256_of_every_length_up_to_300(sha_ni: bool) -> None:
    data = bytes((7 * i + 1) % 256 for i in range(300))
    for length in range(301):
        assert _batch.sha256(data[:length], sha_ni=sha_ni) == hashlib.sha256(data[:length]).digest()


def test_sha256_of_longer_data() -> None:
    data = bytes(range(256)) * 40
    assert _batch.sha256(data) == _batch.sha256(data, sha_ni=False) == hashlib.sha256(data).digest()


def test_hash_messages_is_prefix_and_sha256_of_utf8() -> None:
    values = ["", "abc", "jöhn@exämple.com", "ＪＯＨＮ", "\U0001f600", "x" * 1000]
    for prefix in (b"", b"cleanroom/v1/email/", bytes(range(256))):
        assert _batch.hash_messages(prefix, values) == [
            prefix + hashlib.sha256(value.encode()).digest() for value in values
        ]


def test_hash_messages_refuses_what_str_encode_refuses() -> None:
    with pytest.raises(UnicodeEncodeError):
        "\ud800".encode()
    with pytest.raises(UnicodeEncodeError):
        _batch.hash_messages(b"", ["ok", "\ud800"])
    with pytest.raises(TypeError, match="value 1 is bytes, not str"):
        _batch.hash_messages(b"", ["ok", b"x"])  # type: ignore[list-item]


TRICKY = [
    " Jane.Doe+ads@GMail.com ",
    "",
    "   ",
    "\u3000",
    "jöhn@example.com",
    "jane@doe@example.com",
    "@example.com",
    "jane@",
    "jane@localhost",
    "jane doe@example.com",
    "jane\x00@example.com",
    "jane@.example.com",
    "jane@example..com",
    "...@gmail.com",
    "a@b.co",
]


def test_fallback_without_the_extension_gives_the_same_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    columns = {
        "email": TRICKY,
        "phone": ["(415) 555-2671", "x", "+44 20 7946 0018"],
        "maid": ["6D92078A-8246-4BA4-AE5B-76104861E7DC", "nope"],
    }
    native = {kind: normalize_batch(kind, values) for kind, values in columns.items()}
    monkeypatch.setattr(batch, "_c_normalize_emails", None)
    monkeypatch.setattr(batch, "_c_hash_messages", None)
    for kind, values in columns.items():
        python = normalize_batch(kind, values)
        assert python == native[kind]
        assert python.messages() == native[kind].messages()
        assert python.digests() == native[kind].digests()
    assert_batch_is_reference(TRICKY)
