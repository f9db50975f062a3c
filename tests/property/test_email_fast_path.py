"""The C path of email normalization gives exactly what the Python reference gives.

normalize_batch("email", ...) runs _batch.c and hands what it does not accept to
email.normalize_email; the reference here is normalize_email alone, value by value, and SHA-256
from hashlib. Generated columns mix addresses in and around the rules' edges: mixed case, every
trimmed whitespace character and other whitespace and control characters around and inside
them, non-ASCII, several '@', dots at the domain's edges and doubled, gmail.com with dots and
'+' (down to an empty local part), very long values and empty strings.

Run with many examples locally: CLEANROOM_FAST_PATH_EXAMPLES=20000 pytest <this file>.
"""

from __future__ import annotations

import hashlib
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers import Rejection, _batch, normalize_batch
from cleanroom.identifiers.email import normalize_email
from cleanroom.identifiers.messages import message_prefix
from cleanroom.identifiers.rules import TRIMMED_WHITESPACE

EXAMPLES = int(os.environ.get("CLEANROOM_FAST_PATH_EXAMPLES", "1000"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Whitespace beyond the trimmed set (str.isspace() knows it, strip() does not remove it); then
# controls, DEL, non-ASCII letters, a lone surrogate and specials an address may not hold.
OTHER_SPACE = "\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u202f\u3000\ufeff"
ODD = '\x00\x01\x08\x7f\x80\u00e9\u0130\u212a\uff21\U0001f600\ud800"(),:;<>[\\]'
PADDING = st.text(alphabet=TRIMMED_WHITESPACE, max_size=4)
ODD_PADDING = st.text(alphabet=TRIMMED_WHITESPACE + OTHER_SPACE, min_size=1, max_size=3)
LOCAL = st.text(alphabet="abcxyzABCXYZ0189._+-!#$%&'*/=?^`{|}~", max_size=12)
ODD_LOCAL = st.text(
    alphabet=st.one_of(
        st.sampled_from("abcXYZ.+"), st.sampled_from(" @" + TRIMMED_WHITESPACE + OTHER_SPACE + ODD)
    ),
    min_size=1,
    max_size=12,
)
LABEL = st.text(alphabet="abcgmilGMAIL0-_", max_size=8)
DOMAIN = st.one_of(
    st.sampled_from(["gmail.com", "GMail.COM", "gMAIL.cOm", "example.com", "a.b", "localhost", ""]),
    st.sampled_from([".gmail.com", "gmail.com.", "gmail..com", "gmail.com@x.io", "gmail.co"]),
    st.lists(LABEL, max_size=4).map(".".join),
)
ODD_DOMAIN = st.text(alphabet=st.sampled_from("aZ.@-" + ODD + " \t"), min_size=1, max_size=10)


@st.composite
def addresses(draw: st.DrawFn) -> str:
    # Half are plain, so that many are accepted; the others have one odd part.
    odd = draw(st.sampled_from(["", "", "", "padding", "local", "domain"]))
    padding = ODD_PADDING if odd == "padding" else PADDING
    local = ODD_LOCAL if odd == "local" else LOCAL
    domain = ODD_DOMAIN if odd == "domain" else DOMAIN
    ats = draw(st.sampled_from(["@", "@", "@", "", "@@", "@x@"]))
    return draw(padding) + draw(local) + ats + draw(domain) + draw(padding)


@st.composite
def long_addresses(draw: st.DrawFn) -> str:
    local = draw(st.sampled_from(["a", "A.", "a+", ".", "+"])) * draw(st.integers(1, 3000))
    domain = draw(st.sampled_from(["gmail.com", "GMAIL.COM", "Example.com", "x." * 400 + "com"]))
    return draw(PADDING) + local + "@" + domain + draw(PADDING)


EMAILS = st.one_of(
    addresses(),
    long_addresses(),
    st.just(""),
    PADDING,
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="ascii"), max_size=30),
)


def reference(values: list[str]) -> tuple[list[int], list[str], list[Rejection], list[bytes]]:
    """What normalize_batch must give: normalize_email value by value, hashed by hashlib."""
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
    prefix = message_prefix("email")
    messages = [prefix + hashlib.sha256(value.encode()).digest() for value in normalized]
    return indices, normalized, rejected, messages


@SETTINGS
@given(values=st.lists(EMAILS, max_size=12))
def test_batch_is_the_reference(values: list[str]) -> None:
    batch = normalize_batch("email", values)
    assert (batch.indices, batch.values, batch.rejected, batch.messages()) == reference(values)
    assert batch.digests() == [hashlib.sha256(value.encode()).digest() for value in batch.values]


@SETTINGS
@given(values=st.lists(EMAILS, max_size=12))
def test_c_path_decides_every_address_the_reference_accepts(values: list[str]) -> None:
    # The C path alone, not through normalize_batch: what it accepts is the reference's value,
    # and it hands back only what the reference rejects (so accepted lists never leave C).
    indices, normalized, handed_back = _batch.normalize_emails(values)
    accepted, expected, _, _ = reference(values)
    assert indices == accepted
    assert normalized == expected
    assert handed_back == sorted(set(range(len(values))) - set(accepted))


@SETTINGS
@given(data=st.binary(max_size=300), sha_ni=st.booleans())
def test_sha256_is_hashlib(data: bytes, sha_ni: bool) -> None:
    assert _batch.sha256(data, sha_ni=sha_ni) == hashlib.sha256(data).digest()


@SETTINGS
@given(
    prefix=st.binary(max_size=40),
    values=st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"])), max_size=8),
)
def test_hash_messages_is_hashlib(prefix: bytes, values: list[str]) -> None:
    expected = [prefix + hashlib.sha256(value.encode()).digest() for value in values]
    assert _batch.hash_messages(prefix, values) == expected
