import numpy as np
from numpy.typing import NDArray

class RecordIds:
    def __init__(self) -> None: ...
    def setdefault(self, record_id: str, line: int, /) -> int: ...
    def __len__(self) -> int: ...
    def __contains__(self, record_id: object, /) -> bool: ...

def take_plain(
    text: str,
    start_byte: int,
    start_char: int,
    delimiter: str,
    width: int,
    first_line: int,
    first_row: int,
    consent_at: int,
    record_id_at: int,
    kinds_at: tuple[int, ...],
    spellings: dict[str, bool | None],
    ids: RecordIds,
    /,
) -> tuple[int, list[int], list[int], tuple[list[str], ...], int, int]: ...
def copy_rows(
    block: bytes | memoryview,
    wanted: NDArray[np.bool_],
    ordinal: int,
    delimiter: str,
    triggers: bytes,
    /,
) -> tuple[bytes, int, int] | None: ...
