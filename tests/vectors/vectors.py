"""Load the known-answer files in ``tests/vectors/data/`` (sources in its README.md).

Test modules in this directory import it as ``vectors`` (pytest puts the directory on
``sys.path``) and parametrize over :func:`vector_cases`, one test per vector with a readable id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DATA_DIR = Path(__file__).resolve().parent / "data"


def load_vectors(filename: str) -> dict[str, Any]:
    """Return the parsed JSON file ``filename`` from the data directory."""
    with (DATA_DIR / filename).open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def _case_id(index: int, case: dict[str, Any]) -> str:
    msg = case.get("msg")
    if not isinstance(msg, str):
        return str(index)
    shown = msg if len(msg) <= 12 else msg[:12] + "..."
    return f"{index}-msg={shown!r}"


def vector_cases(filename: str, list_key: str = "vectors") -> list[Any]:
    """Return one ``pytest.param`` per vector in ``filename``, each with an id naming its message.

    Args:
        filename: a file in the data directory.
        list_key: the key holding the list of vectors (``"vectors"`` or ``"tests"``).

    Returns:
        Parameters for ``pytest.mark.parametrize``; each value is the vector's dict.
    """
    cases = load_vectors(filename)[list_key]
    assert cases, f"{filename} has no vectors under {list_key!r}"
    return [pytest.param(case, id=_case_id(i, case)) for i, case in enumerate(cases)]
