"""Shared plumbing for the benchmarks: machine description and RESULTS.md sections.

Each benchmark owns one section of ``benchmarks/RESULTS.md`` between marker comments and
rewrites only that section, so benchmarks can be re-run independently.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import sys
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> dict[str, object]:
    """Describe the machine the numbers came from."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": ".".join(str(part) for part in sys.version_info[:3]),
        "os": f"{os.uname().sysname} {os.uname().release} {os.uname().machine}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


#: Options whose value is a scratch folder of the machine that ran the benchmark: where files go,
#: not what is measured. The recorded command shows ``DIR`` in its place.
_SCRATCH_OPTIONS = ("--workdir",)


def command_line() -> str:
    """The command that produced this run, as a user would type it from the repository root."""
    argv = [os.path.relpath(sys.argv[0]), *sys.argv[1:]]
    for i, arg in enumerate(argv):
        option, equals, _ = arg.partition("=")
        if option in _SCRATCH_OPTIONS:
            if equals:
                argv[i] = f"{option}=DIR"
            elif i + 1 < len(argv):
                argv[i + 1] = "DIR"
    return "python " + " ".join(shlex.quote(a) for a in argv)


def heading(title: str, info: dict[str, object], command: str, cores: str = "") -> list[str]:
    """The first lines of a section: its title, the machine, the date and the exact command.

    ``cores`` adds to the core count (e2e: how many of them the run could use).
    """
    return [
        f"## {title}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores ({cores}shared with other jobs), Python "
        f"{info['python']}, {info['date']}. Command:",
        "",
        f"    {command}",
        "",
    ]


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md with ``body``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    RESULTS_MD.write_text(text)
