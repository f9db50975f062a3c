"""UID2's documented normalization examples (tests/vectors/data/normalization_uid2.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cleanroom.identifiers import normalize, normalize_batch

DATA = Path(__file__).parent / "data" / "normalization_uid2.json"


def _examples() -> list[Any]:
    document = json.loads(DATA.read_text(encoding="utf-8"))
    examples: list[Any] = document["examples"]
    assert len(examples) == document["count"]
    return [pytest.param(example, id=example["id"]) for example in examples]


@pytest.mark.parametrize("example", _examples())
def test_uid2_example(example: dict[str, str]) -> None:
    region = example.get("default_region", "US")
    assert normalize(example["field"], example["input"], region) == example["expected_normalized"]
    # Columns take their own paths (C for emails); they must give the same values.
    column = normalize_batch(example["field"], [example["input"]], default_region=region)
    assert column.values == [example["expected_normalized"]]
