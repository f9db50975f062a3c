"""The lines of a text file as the CSV reader takes them: as they are, unless too long to hold."""

from __future__ import annotations

import csv
import io
from typing import TextIO, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanroom import _textfile
from cleanroom._textfile import bounded_lines


class _Recording:
    """A text stream's lines (all :func:`bounded_lines` reads), remembering the longest piece
    any read returned."""

    def __init__(self, text: str) -> None:
        self._stream = io.StringIO(text, newline="")
        self.longest = 0

    def readline(self, size: int = -1) -> str:
        line = self._stream.readline(size)
        self.longest = max(self.longest, len(line))
        return line


_LINE = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30)


@given(st.lists(st.tuples(_LINE, st.sampled_from(["\n", "\r\n", "\r"]))), _LINE)
def test_lines_shorter_than_the_limit_come_as_the_file_gives_them(
    lines: list[tuple[str, str]], last: str
) -> None:
    text = "".join(line + end for line, end in lines) + last  # the last line may have no end
    assert list(bounded_lines(io.StringIO(text, newline=""))) == list(io.StringIO(text, newline=""))


def test_a_line_as_long_as_the_limit_is_read_in_pieces_and_stands_for_a_field_too_large(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_textfile, "MAX_LINE_CHARS", 16)
    stream = _Recording("a,b\n" + "c," * 100 + "\n" + "x" * 15 + "\n" + "d,e\r\n" + "y" * 40)
    reader = csv.reader(bounded_lines(cast(TextIO, stream)))
    assert next(reader) == ["a", "b"]
    with pytest.raises(csv.Error, match="field larger than field limit"):
        next(reader)
    assert reader.line_num == 2  # the long line's own number
    with pytest.raises(csv.Error):  # 15 characters and its end: as long as the limit
        next(reader)
    assert (next(reader), reader.line_num) == (["d", "e"], 4)
    with pytest.raises(csv.Error):  # the last line, without an end
        next(reader)
    assert next(reader, None) is None
    assert reader.line_num == 5
    assert stream.longest == 16  # never more of a line than the limit at once


def test_a_line_one_shorter_than_the_limit_is_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_textfile, "MAX_LINE_CHARS", 16)
    line = "a," * 7 + "\n"  # 15 characters
    assert list(bounded_lines(io.StringIO(line + line, newline=""))) == [line, line]
