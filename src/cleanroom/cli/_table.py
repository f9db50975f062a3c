"""The one way list commands print: a header line of column names, then a line per row.

Every list (``sessions list``, ``audiences list``, ``sources list``, ``audit show``) looks the
same: lower-case column names on the first line, columns as wide as their widest cell, numbers
right-aligned, the last column unpadded; an empty list is one line saying so (``no sessions``).
Cells are escaped (:func:`cleanroom._output.printable`): names and reasons come from files,
certificates and the other party.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cleanroom._output import printable

__all__ = ["Column", "print_table"]


@dataclass(frozen=True)
class Column:
    """A column: its name on the header line, and whether its cells are right-aligned."""

    name: str
    numeric: bool = False


def print_table(columns: Sequence[Column], rows: Iterable[Sequence[object]], empty: str) -> None:
    """Print ``rows`` under a header of ``columns``; ``empty`` alone if there are none."""
    cells = [[printable("" if cell is None else str(cell)) for cell in row] for row in rows]
    if not cells:
        print(empty)
        return
    widths = [
        max(len(column.name), *(len(row[at]) for row in cells)) for at, column in enumerate(columns)
    ]

    def line(values: Sequence[str]) -> str:
        parts = []
        for at, (column, value) in enumerate(zip(columns, values, strict=True)):
            last = at == len(columns) - 1
            if column.numeric:
                parts.append(value.rjust(widths[at]))
            else:
                parts.append(value if last else value.ljust(widths[at]))
        return "  ".join(parts).rstrip()

    print(line([column.name for column in columns]))
    for row in cells:
        print(line(row))
