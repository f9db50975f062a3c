"""Argument types shared by the command groups: clear refusals of bad numbers."""

from __future__ import annotations

import argparse

import pytest

from cleanroom import _fork_server
from cleanroom.cli._args import (
    byte_size,
    non_negative_float,
    positive_float,
    positive_int,
    seconds,
    seconds_or_zero,
    worker_count,
)


def test_positive_int() -> None:
    assert positive_int("3") == 3
    assert positive_int(str(2**63 - 1)) == 2**63 - 1
    for bad, reason in (
        ("0", "not positive"),
        ("-2", "not positive"),
        ("x", "whole number"),
        (str(2**63), "too large"),  # past what SQLite and numpy hold
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=reason):
            positive_int(bad)


def test_worker_counts_stop_at_a_few_per_cpu_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fork_server, "available_cpus", lambda: 2)
    assert worker_count("8") == 8
    with pytest.raises(argparse.ArgumentTypeError, match="not positive"):
        worker_count("0")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^9 is more than 4 .* 2 CPU .* most 8$"):
        worker_count("9")


def test_waits_stop_short_of_what_timers_and_deadlines_overflow_at() -> None:
    assert seconds("1e9") == 1e9 and seconds_or_zero("0") == 0
    for parse in (seconds, seconds_or_zero):
        for bad, reason in (
            ("1e300", "too long"),
            ("inf", "too long"),
            ("nan", "not positive|negative"),
        ):
            with pytest.raises(argparse.ArgumentTypeError, match=reason):
                parse(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="not positive"):
        seconds("0")


def test_floats_refuse_nan_and_out_of_range() -> None:
    assert positive_float("0.5") == 0.5
    assert non_negative_float("0") == 0
    for bad in ("0", "-1", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_float(bad)
    for bad in ("-0.1", "nan", "abc"):
        with pytest.raises(argparse.ArgumentTypeError):
            non_negative_float(bad)


def test_byte_size_takes_bytes_or_binary_units() -> None:
    assert byte_size("1048576") == 1 << 20
    assert byte_size("8G") == byte_size("8GiB") == byte_size("8 GB") == byte_size("8g") == 8 << 30
    assert byte_size("512M") == 512 << 20
    assert byte_size("1.5T") == 3 << 39
    for bad, reason in (
        ("", "not a size"),
        ("G", "not a size"),
        ("8X", "not a size"),
        ("-1G", "not a positive size"),
        ("0", "not a positive size"),
        ("0.1", "not a positive size"),
        ("nan", "not a positive size"),
        ("inf", "not a positive size"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=reason):
            byte_size(bad)
