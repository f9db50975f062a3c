"""Copying the matched rows of a plain list: the same lines as picking them one by one."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanroom.advertiser import _copy_rows
from cleanroom.advertiser._copy_rows import copy_plain_rows

# Plain cells: no quote, no formula trigger at a cell's start, no carriage return.
cells = st.text(alphabet="ab1.x ", max_size=5)
lines = st.lists(
    st.one_of(st.just(""), st.lists(cells, min_size=1, max_size=3).map(",".join)), max_size=30
)


@pytest.mark.parametrize("block_bytes", [16, 1 << 23])  # lines cut across blocks, and not
@given(body=lines, ending=st.sampled_from(["\n", "\r\n"]), last_ended=st.booleans(), data=st.data())
def test_copied_lines_are_the_wanted_rows_in_order(
    block_bytes: int,
    body: list[str],
    ending: str,
    last_ended: bool,
    data: st.DataObject,
) -> None:
    every = ["id,email", *body]
    text = ending.join(every) + (ending if last_ended else "")
    # Each row with its terminator; a last line without one gets "\n". Blank lines are no rows.
    ends = [ending] * (len(every) - 1) + [ending if last_ended else "\n"]
    rows = [line + end for line, end in zip(every, ends, strict=True) if line]
    wanted = np.array(
        data.draw(st.lists(st.booleans(), min_size=len(rows) - 1, max_size=len(rows) - 1)),
        dtype=bool,
    )
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(_copy_rows, "_BLOCK_BYTES", block_bytes)
        path = Path(folder) / "list.csv"
        path.write_bytes(text.encode())
        out = io.BytesIO()
        written = copy_plain_rows(path, wanted, ",", out)
    kept = [rows[0], *(row for row, keep in zip(rows[1:], wanted, strict=True) if keep)]
    assert written == len(kept) - 1
    assert out.getvalue() == "".join(kept).encode()


# Any text: quotes, carriage returns alone or not, formula triggers at cell starts or not.
rough = st.lists(
    st.sampled_from(
        ["a", "1", ",", ";", '"', "\r", "\n", "\r\n", "=", "+", "-", "@", "\t", " ", "é"]
    ),
    max_size=60,
).map("".join)


@pytest.mark.skipif(_copy_rows._c_copy_rows is None, reason="the C extensions were not built")
@pytest.mark.parametrize("block_bytes", [7, 1 << 23])
@given(body=rough, delimiter=st.sampled_from([",", ";", "\t"]), data=st.data())
def test_the_c_copies_and_refuses_exactly_as_the_reference(
    block_bytes: int, body: str, delimiter: str, data: st.DataObject
) -> None:
    wanted = np.array(data.draw(st.lists(st.booleans(), max_size=40)), dtype=bool)
    outcomes = []
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(_copy_rows, "_BLOCK_BYTES", block_bytes)
        path = Path(folder) / "list.csv"
        path.write_bytes(("id,email\n" + body).encode())
        for c_copy in (_copy_rows._c_copy_rows, None):
            patch.setattr(_copy_rows, "_c_copy_rows", c_copy)
            out = io.BytesIO()
            try:
                written: int | None = copy_plain_rows(path, wanted, delimiter, out)
            except _copy_rows.NotPlain:
                written = None
            outcomes.append((written, out.getvalue() if written is not None else None))
    assert outcomes[0] == outcomes[1]
