from collections.abc import Sequence

IFMA: int

def hash_to_curve_many(
    msgs: Sequence[bytes], dst_prime: bytes, /, ifma: bool = True
) -> tuple[bytes, list[int]]: ...
