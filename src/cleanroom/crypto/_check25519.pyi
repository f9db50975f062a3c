IFMA: int
TESTS: int
GROUP: int
MASK_BYTES_PER_GROUP: int

def twist_test(
    rows: bytes, masks: bytes, listed: bytes, /, ifma: bool = True
) -> tuple[int, int, bytes]: ...
