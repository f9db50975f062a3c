"""List reading benchmark: CPU of reading the advertiser's list, now and before.

In one run, on lists of N customer rows (``record_id,email,phone,maid,marketing_consent``; a
tenth without consent, phones on a third of the rows; fixed seed), CPU seconds of the main
process for ``read_customer_list``:
  * ``now``: as the library reads (plain text a block at a time, taken in C where it
    can be, else split and taken a column at a time; the rest through the CSV reader);
  * the baseline, ``before``: ``read_customer_list`` of ``--before REV`` (default: the last
    revision that read lists row by row), loaded from git into this process, so both read with
    the same interpreter, files and load.

Three lists: ``plain`` (LF line ends, no quotes), ``problems`` (CRLF, a repeated record id every
997 rows, an unreadable consent every 1,499, a short row every 7,919 and a blank line every
5,000) and ``quoted`` (every cell quoted, so all of it goes through the CSV reader). Rounds
alternate the two readings, so a load change on this shared machine shows up in both; the
figure to read is their ratio.

    python benchmarks/list_read.py [--rows 1000000] [--rounds 3] [--before REV] [--workdir DIR]
        [--write-results]

Prints its section (Markdown), writes benchmarks/results/list_read.json and, with
``--write-results``, the "list_read" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from _report import RESULTS_DIR, command_line, heading, machine, write_section

from cleanroom.advertiser import CustomerList, read_customer_list

# The last revision whose list reader took rows one at a time.
ROW_BY_ROW = "edcd2f4"
LISTFILE = "src/cleanroom/advertiser/_listfile.py"

HEADER = ["record_id", "email", "phone", "maid", "marketing_consent"]
NAMES = ["jane", "omar", "kai", "emma", "ravi", "lena", "wei", "sofia", "noah", "aisha"]
DOMAINS = ["gmail.com", "yahoo.com", "iCloud.com", "example.com", "outlook.com"]


def _rows(count: int, problems: bool) -> list[list[str]]:
    rng = random.Random(16)
    rows = []
    for i in range(count):
        email = f"{rng.choice(NAMES)}.{i}@{rng.choice(DOMAINS)}"
        phone = f"+1 415 555 {i % 10_000:04d}" if i % 3 == 0 else ""
        consent = "no" if rng.random() < 0.1 else "yes"
        record_id = f"r{i}"
        if problems:
            if i and i % 997 == 0:
                record_id = "r5"
            if i and i % 1_499 == 0:
                consent = "maybe"
        row = [record_id, email, phone, "", consent]
        if problems and i and i % 7_919 == 0:
            row = row[:3]
        rows.append(row)
        if problems and i and i % 5_000 == 0:
            rows.append([])
    return rows


def write_lists(folder: Path, count: int) -> dict[str, Path]:
    lists = {}
    for name, problems, quoting, ending in [
        ("plain", False, csv.QUOTE_MINIMAL, "\n"),
        ("problems", True, csv.QUOTE_MINIMAL, "\r\n"),
        ("quoted", False, csv.QUOTE_ALL, "\n"),
    ]:
        path = folder / f"{name}.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f, quoting=quoting, lineterminator=ending).writerows(
                [HEADER, *_rows(count, problems)]
            )
        lists[name] = path
    return lists


def reader_of(revision: str, folder: Path) -> Callable[[Path], CustomerList]:
    """``read_customer_list`` of the list reader at ``revision``, beside today's modules."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{revision}:{LISTFILE}"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = folder / "listfile_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("cleanroom.advertiser._listfile_before", path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    read: Callable[[Path], CustomerList] = module.read_customer_list
    return read


FIELDS = ("records_read", "without_consent", "problems", "rows", "lines", "identifiers")


def check_same(name: str, before: CustomerList, now: CustomerList) -> None:
    """Refuse to report figures of two readings that do not agree."""
    for field in FIELDS:
        if getattr(before, field) != getattr(now, field):
            raise SystemExit(f"{name}: the two readings differ in {field}")


def cpu_seconds(read: Callable[[Path], CustomerList], path: Path) -> tuple[float, int]:
    start = time.process_time()
    customers = read(path)
    return time.process_time() - start, len(customers.rows)


def render(result: dict[str, Any]) -> str:
    lines = [
        *heading("Reading the advertiser's list", result["machine"], result["command"]),
        f"Lists of {result['rows']:,} rows; CPU seconds of `read_customer_list` in the main "
        f"process, median of {result['rounds']} alternated rounds; the baseline is the reader "
        f"of `{result['before']}` (rows taken one at a time), loaded in the same process. "
        "*plain*: LF line ends, no quotes; *problems*: CRLF, a repeated record id every 997 rows, "
        "an unreadable consent every 1,499, a short row every 7,919, a blank line every 5,000; "
        "*quoted*: every cell quoted, so all of it goes through the CSV reader.",
        "",
        "| list | records kept | before CPU s | now CPU s | now / before |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, figures in result["lists"].items():
        lines.append(
            f"| {name} | {figures['kept']:,} | {figures['before']:.2f} | "
            f"{figures['now']:.2f} | **{figures['ratio']:.2f}** |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per list")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (default 3)")
    parser.add_argument(
        "--before", default=ROW_BY_ROW, help="the revision whose reader is the baseline"
    )
    parser.add_argument("--workdir", type=Path, help="where the lists go (default: a temp dir)")
    parser.add_argument(
        "--write-results", action="store_true", help="also write its section of RESULTS.md"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        before = reader_of(args.before, Path(folder))
        lists = write_lists(Path(folder), args.rows)
        figures: dict[str, dict[str, Any]] = {}
        for name, path in lists.items():
            check_same(name, before(path), read_customer_list(path))
            runs: dict[str, list[float]] = {"before": [], "now": []}
            kept = set()
            for _ in range(args.rounds):
                for reading, read in (("before", before), ("now", read_customer_list)):
                    seconds, count = cpu_seconds(read, path)
                    runs[reading].append(seconds)
                    kept.add(count)
            medians = {reading: statistics.median(values) for reading, values in runs.items()}
            figures[name] = {
                **medians,
                "runs": runs,
                "kept": kept.pop(),  # one count: the readings agree
                "ratio": medians["now"] / medians["before"],
            }
    result = {
        "machine": machine(),
        "command": command_line(),
        "rows": args.rows,
        "before": args.before,
        "rounds": args.rounds,
        "lists": figures,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "list_read.json").write_text(json.dumps(result, indent=2) + "\n")
    body = render(result)
    print(body)
    if args.write_results:
        write_section("list_read", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
