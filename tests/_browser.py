"""Debian's Chromium, headless, as the real browser of the web tests (the dashboard, the report).

:func:`chromium_run` runs it once (``--dump-dom URL`` prints the page as the browser built it,
``--screenshot=FILE`` keeps a PNG); :func:`visible_text` is the text a person reads on it. Where
no Chromium is installed the test is skipped, saying how ``make test`` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
"""Where screenshots are kept after the run."""

_TIMEOUT = 120.0


def chromium() -> str:
    """The Chromium executable; skips the test where none is installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "no Chromium installed: `make test` installs Debian's chromium where it runs as root "
        "with apt-get (apt-get install -y chromium)"
    )


def has_chromium() -> bool:
    """Whether a Chromium is installed (for checks that use it when they can)."""
    return any(shutil.which(name) for name in ("chromium", "chromium-browser"))


def _without_preload() -> dict[str, str]:
    """The environment, less a preloaded library: ``make sanitize`` preloads AddressSanitizer's
    runtime for cleanroom's C extensions, and the browser is not built for it."""
    return {name: value for name, value in os.environ.items() if name != "LD_PRELOAD"}


def chromium_run(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium with ``args`` and a fresh profile under ``tmp_path``; its stdout."""
    browser = chromium()
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [
            browser,
            *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic"),
            *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
            *("--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=False,
        env=_without_preload(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(tmp_path: Path, url: str, name: str, size: str = "1400,2200") -> Path:
    """Keep a PNG of ``url`` as ``test-artifacts/NAME``; return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    shot.unlink(missing_ok=True)
    chromium_run(tmp_path, f"--screenshot={shot}", f"--window-size={size}", url)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    return shot


class _Text(HTMLParser):
    """The text a person reads on the page (no markup, no attribute values)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self._skip += tag in ("style", "title", "script")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("style", "title", "script")

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.parts.append(" ".join(data.split()))


def visible_text(html: str) -> str:
    """The page's text, each piece whitespace-collapsed, joined by ``" | "``."""
    parser = _Text()
    parser.feed(html)
    return " | ".join(parser.parts)
