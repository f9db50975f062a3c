from collections.abc import Sequence

IFMA: int

def hash_to_curve_many(
    msgs: Sequence[bytes], dst_prime: bytes, /, ifma: bool = True
) -> tuple[bytes, list[int]]: ...
def hash_to_curve_packed(
    data: bytes, offsets: bytes, dst_prime: bytes, /, ifma: bool = True
) -> tuple[bytes, list[int]]: ...
def pack(msgs: Sequence[bytes], first: int = 0, /) -> tuple[bytes, bytes]: ...
