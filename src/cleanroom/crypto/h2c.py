"""RFC 9380 message expansion and hashing to a prime field, shared by both ciphersuites.

``expand_message_xmd`` (RFC 9380 §5.3.1) stretches a message into uniform bytes under a
domain separation tag; ``hash_to_field`` (§5.2) turns those bytes into field elements.
The curve modules (``h2c_curve25519``, ``h2c_p256``) build their maps on top of these.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "MAX_DST_LENGTH",
    "dst_prime",
    "expand_message_xmd",
    "hash_to_field",
]

#: Longest DST used as is; longer tags are hashed first (RFC 9380 §5.3.3).
MAX_DST_LENGTH = 255

# hashlib name -> (output size b_in_bytes, input block size s_in_bytes) of the hashes RFC 9380
# pairs with expand_message_xmd in our suites. Listed explicitly so a typo fails loudly instead
# of silently selecting some other hashlib algorithm.
_XMD_HASHES: dict[str, tuple[int, int]] = {
    "sha256": (32, 64),
    "sha512": (64, 128),
}

_OVERSIZE_DST_PREFIX = b"H2C-OVERSIZE-DST-"
_MAX_LEN_IN_BYTES = 65535
_MAX_BLOCKS = 255


def _hash_params(hash_name: str) -> tuple[int, int]:
    try:
        return _XMD_HASHES[hash_name]
    except KeyError:
        supported = ", ".join(sorted(_XMD_HASHES))
        raise ValueError(
            f"unsupported hash for expand_message_xmd: {hash_name!r} (use one of {supported})"
        ) from None


def dst_prime(dst: bytes, hash_name: str) -> bytes:
    """Return ``DST_prime = DST || I2OSP(len(DST), 1)``, hashing an oversize DST first.

    Args:
        dst: the domain separation tag; must not be empty (RFC 9380 §3.1).
        hash_name: ``"sha256"`` or ``"sha512"``, the hash of the expander.

    Returns:
        The tag as it is appended to every hash input of expand_message_xmd.

    Raises:
        ValueError: the DST is empty or the hash is not supported.
    """
    _hash_params(hash_name)
    if not dst:
        raise ValueError("the domain separation tag must not be empty (RFC 9380 §3.1)")
    if len(dst) > MAX_DST_LENGTH:
        # RFC 9380 §5.3.3: a tag too long for its one-byte length prefix is replaced by its hash.
        dst = hashlib.new(hash_name, _OVERSIZE_DST_PREFIX + dst).digest()
    return dst + bytes([len(dst)])


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int, hash_name: str) -> bytes:
    """Expand ``msg`` into ``len_in_bytes`` uniform bytes (RFC 9380 §5.3.1).

    Args:
        msg: the message to expand.
        dst: the domain separation tag; tags longer than 255 bytes are hashed first (§5.3.3).
        len_in_bytes: how many bytes to produce, 1 to 65535 and at most 255 hash outputs.
        hash_name: ``"sha256"`` or ``"sha512"``.

    Returns:
        ``len_in_bytes`` pseudo-random bytes.

    Raises:
        ValueError: the length is out of range, the DST is empty, or the hash is not supported.
    """
    b_in_bytes, s_in_bytes = _hash_params(hash_name)
    if not 1 <= len_in_bytes <= _MAX_LEN_IN_BYTES:
        raise ValueError(f"len_in_bytes must be between 1 and {_MAX_LEN_IN_BYTES}")
    ell = -(-len_in_bytes // b_in_bytes)
    if ell > _MAX_BLOCKS:
        raise ValueError(
            f"len_in_bytes must be at most {_MAX_BLOCKS * b_in_bytes} for {hash_name} "
            f"(at most {_MAX_BLOCKS} hash outputs)"
        )
    tag = dst_prime(dst, hash_name)
    z_pad = bytes(s_in_bytes)
    b_0 = hashlib.new(
        hash_name, z_pad + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + tag
    ).digest()
    b_i = hashlib.new(hash_name, b_0 + b"\x01" + tag).digest()
    blocks = [b_i]
    b_0_int = int.from_bytes(b_0, "big")
    for i in range(2, ell + 1):
        chained = (b_0_int ^ int.from_bytes(b_i, "big")).to_bytes(b_in_bytes, "big")
        b_i = hashlib.new(hash_name, chained + bytes([i]) + tag).digest()
        blocks.append(b_i)
    return b"".join(blocks)[:len_in_bytes]


def hash_to_field(
    msg: bytes, dst: bytes, count: int, modulus: int, length: int, hash_name: str
) -> list[int]:
    """Hash ``msg`` to ``count`` elements of the prime field of order ``modulus`` (§5.2, m = 1).

    Args:
        msg: the message to hash.
        dst: the domain separation tag.
        count: how many field elements to return.
        modulus: the field's prime characteristic p.
        length: L, the bytes drawn per element (``ceil((ceil(log2(p)) + k) / 8)``).
        hash_name: ``"sha256"`` or ``"sha512"``, the expander's hash.

    Returns:
        ``count`` integers in ``[0, modulus)``.

    Raises:
        ValueError: as :func:`expand_message_xmd`, or ``count`` is not positive.
    """
    if count < 1:
        raise ValueError("count must be positive")
    uniform = expand_message_xmd(msg, dst, count * length, hash_name)
    return [
        int.from_bytes(uniform[i * length : (i + 1) * length], "big") % modulus
        for i in range(count)
    ]
