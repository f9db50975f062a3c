"""Email normalization v1: the UID2 rules (DESIGN §5).

Trim surrounding ASCII whitespace, lowercase, and for ``gmail.com`` only remove ``.`` from the
local part and drop ``+`` and what follows it. Anything that is not ``local@domain`` with a dot
in the domain is rejected.

Internationalized addresses (non-ASCII characters anywhere) are rejected: lowercasing and
Unicode normalization of such addresses are not agreed between parties, so accepting them
would let the same person hash differently on each side.
"""

from __future__ import annotations

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers.rules import TRIMMED_WHITESPACE, check_not_blank

__all__ = ["NON_ASCII_REASON", "normalize_email"]

NON_ASCII_REASON = (
    "non-ASCII characters in email "
    "(internationalized addresses are not supported by normalization v1)"
)

# The only provider whose local-part aliases UID2 folds together.
_GMAIL = "gmail.com"


def normalize_email(value: str) -> str:
    """Normalize an email address by the UID2 rules.

    Args:
        value: the address as found in a list, e.g. ``" Jane.Doe+ads@GMail.com "``.

    Returns:
        The normalized address, e.g. ``"janedoe@gmail.com"``.

    Raises:
        InvalidIdentifier: empty, whitespace-only, non-ASCII, or not ``local@domain`` with a
            dot in the domain.
    """
    email = value.strip(TRIMMED_WHITESPACE)
    if not email or email.isspace():
        check_not_blank("email", value)
    if not email.isascii():
        raise InvalidIdentifier("email", NON_ASCII_REASON)
    email = email.lower()
    local, at, domain = email.partition("@")
    # One combined test keeps the common, well-formed case to a handful of C-level calls.
    if (
        not at
        or not local
        or "." not in domain
        or "@" in domain
        or " " in email
        or not email.isprintable()
        or domain[0] == "."
        or domain[-1] == "."
        or ".." in domain
    ):
        raise InvalidIdentifier("email", _malformed_reason(local, at, domain))
    if domain == _GMAIL:
        plus = local.find("+")
        if plus >= 0:
            local = local[:plus]
        local = local.replace(".", "")
        if not local:
            raise InvalidIdentifier(
                "email", "gmail.com local part is empty once dots and the +suffix are removed"
            )
        return local + "@" + _GMAIL
    return email


def _malformed_reason(local: str, at: str, domain: str) -> str:
    """Say in words why a lowercased ASCII address is not ``local@domain``."""
    if not at:
        return "missing '@' (expected local@domain)"
    if "@" in domain:
        return "more than one '@' (expected local@domain)"
    if not local:
        return "empty local part before '@'"
    if not domain:
        return "empty domain after '@'"
    address = local + at + domain
    if " " in address or not address.isprintable():
        return "whitespace or control characters inside the address"
    if "." not in domain:
        return "domain has no dot (expected e.g. example.com)"
    return "domain has an empty label (leading, trailing or doubled dot)"
