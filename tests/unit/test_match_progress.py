"""The match command's progress bars: on a terminal only."""

from __future__ import annotations

import io
import sys

import pytest

from cleanroom.cli.match import _Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_show_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with _Progress() as progress:
        progress("encrypt platform set", 10)(10)
    assert "encrypt platform set" in terminal.getvalue()
    assert "100%" in terminal.getvalue()


def test_nothing_is_shown_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    with _Progress() as progress:
        progress("read list", None)(5)
    assert pipe.getvalue() == ""
