"""Copying chosen rows of a plain list file byte for byte, block by block, without parsing it.

A list without a quote character has exactly one row per non-empty line, so the matched rows
can be copied as lines. It must also have no cell that a spreadsheet would read as a formula
(such a list goes through the CSV writer, which neutralizes it) and no carriage return that does
not end a line (which the CSV reader would count as a line break). Blocks of a few megabytes are
checked, split into lines and copied in one pass in C (``_plain_block.c``), or, where that was
not built, with bytes and numpy operations (the reference the C is held to); neither takes a
Python step per line.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
from numpy.typing import NDArray

from cleanroom._output import FORMULA_TRIGGERS

__all__ = ["NotPlain", "copy_plain_rows"]

# (block, wanted, its first row's ordinal, delimiter, triggers) -> (lines, rows, data rows kept),
# or None for a block that is not plain.
_CopyRows = Callable[
    [bytes | memoryview, NDArray[np.bool_], int, str, bytes], tuple[bytes, int, int] | None
]
_c_copy_rows: _CopyRows | None
try:
    from cleanroom.advertiser import _plain_block
except ImportError:  # pragma: no cover - built without a C compiler
    _c_copy_rows = None
else:
    _c_copy_rows = _plain_block.copy_rows

_BLOCK_BYTES: Final = 1 << 23
_BOM: Final = codecs.BOM_UTF8
_NEWLINE: Final = 10
_CARRIAGE_RETURN: Final = 13


class NotPlain(Exception):
    """The list cannot be copied line by line (a quote, a formula cell or a bare CR)."""


def _is_plain(block: bytes, data: NDArray[np.uint8], delimiter: int, triggers: list[int]) -> bool:
    """No quote, no bare CR, and no cell (after a line start or a delimiter) starting a formula.

    Searches and array operations over the whole block: a regular expression with line anchors
    tries every position and takes seconds on a large list.
    """
    if b'"' in block or (b"\r" in block and block.count(b"\r") != block.count(b"\r\n")):
        return False
    for trigger in triggers:
        at = np.flatnonzero(data == trigger)
        if at.size and at[0] == 0:
            return False
        before = data[at[at > 0] - 1]
        if np.any((before == delimiter) | (before == _NEWLINE)):
            return False
    return True


def copy_plain_rows(path: Path, wanted: NDArray[np.bool_], delimiter: str, out: BinaryIO) -> int:
    """Write the header line and the wanted data rows' lines of a plain list, unchanged.

    Args:
        path: the list (UTF-8; a byte-order mark is left out, as the reader leaves it out).
        wanted: ``wanted[i]`` says whether data row ``i`` (blank lines are not rows) is copied;
            rows beyond its end are not.
        delimiter: the list's delimiter.
        out: where the lines go; a last line without terminator gets ``\\n``.

    Returns:
        The number of data rows written.

    Raises:
        NotPlain: the list has a quote, a formula cell or a bare carriage return; ``out`` may
            hold part of the copy.
        OSError: the list cannot be read.
    """
    # A CR that ends a line (CRLF) is a terminator, not a cell's first character; any other CR
    # is refused before these are looked for.
    triggers = [ord(t) for t in FORMULA_TRIGGERS if t not in (delimiter, "\r")]
    trigger_bytes = bytes(triggers)
    ordinal = -1  # of the next non-empty line: the header is row -1, the first data row 0
    written = 0
    wanted = np.ascontiguousarray(wanted, dtype=np.bool_)
    for block in _blocks(path):
        if _c_copy_rows is not None:
            copied = _c_copy_rows(block, wanted, ordinal, delimiter, trigger_bytes)
            if copied is None:
                raise NotPlain(str(path))
            lines, rows, kept = copied
            out.write(lines)
            ordinal += rows
            written += kept
            continue
        block = bytes(block)
        data = np.frombuffer(block, dtype=np.uint8)
        if not _is_plain(block, data, ord(delimiter), triggers):
            raise NotPlain(str(path))
        ends = np.flatnonzero(data == _NEWLINE)  # each line's newline
        if not ends.size or ends[-1] != len(data) - 1:
            ends = np.append(ends, len(data) - 1)  # the file's last line, without terminator
        starts = np.concatenate(([0], ends[:-1] + 1))
        content = ends - starts + (data[ends] != _NEWLINE)  # length without the newline
        crlf = content > 0
        crlf[crlf] = data[starts[crlf] + content[crlf] - 1] == _CARRIAGE_RETURN
        rows = content - crlf > 0  # blank lines (only a terminator) are not rows
        ordinals = ordinal + np.cumsum(rows) - rows.astype(np.int64)
        ordinal += int(rows.sum())
        keep = rows & (ordinals == -1)
        data_rows = rows & (ordinals >= 0) & (ordinals < len(wanted))
        keep[data_rows] |= wanted[ordinals[data_rows]]
        written += int(np.count_nonzero(keep & (ordinals >= 0)))
        out.write(_lines(data, ends - starts + 1, keep))
        if data[-1] != _NEWLINE and keep[-1]:
            out.write(b"\n")
    if ordinal == -1:
        raise NotPlain(f"{path} has no header line")
    return written


def _lines(data: NDArray[np.uint8], lengths: NDArray[np.intp], keep: NDArray[np.bool_]) -> bytes:
    """The bytes of the kept lines, concatenated.

    The lines (``lengths`` bytes each, terminator included) cover the block end to end, so a
    byte mask picks them out in one step; a slice per line would cost one per copied line.
    """
    return data[np.repeat(keep, lengths)].tobytes()


def _blocks(path: Path) -> Iterator[bytes | memoryview]:
    """The file in blocks of whole lines (the last may end without a newline).

    The lines a read holds whole are handed out as a view of it, not copied; the line that one
    read cut through is handed out alone, joined.
    """
    with path.open("rb") as stream:
        carry = stream.read(len(_BOM))
        if carry == _BOM:
            carry = b""
        while chunk := stream.read(_BLOCK_BYTES):
            first = chunk.find(b"\n") + 1
            if first == 0:
                carry += chunk
                continue
            yield carry + chunk[:first]
            last = chunk.rfind(b"\n") + 1
            if last > first:
                yield memoryview(chunk)[first:last]
            carry = chunk[last:]
        if carry:
            yield carry
