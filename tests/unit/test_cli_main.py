"""The top-level CLI: a command imports only its own module; help and errors list every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cleanroom.cli import (
    _EARLY_FORK_SERVER_BYTES,
    COMMANDS,
    _match_needs_workers,
    build_parser,
)


def modules_after(argv: list[str]) -> set[str]:
    """The cleanroom modules a fresh interpreter has imported after parsing ``argv``."""
    code = (
        "import sys\n"
        "from cleanroom.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(m for m in sys.modules if m.startswith('cleanroom')))\n"
    )
    return set(python_output(code).split())


def python_output(code: str, env: dict[str, str] | None = None) -> str:
    """What ``code`` prints, run in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    ).stdout


def test_match_imports_neither_the_platform_nor_the_demo() -> None:
    loaded = modules_after(["match", "--help"])
    assert "cleanroom.cli.match" in loaded
    assert not loaded & {
        "cleanroom.cli.platform",
        "cleanroom.cli.demo",
        "cleanroom.service.server",
        "cleanroom.demo",
    }


def test_platform_does_not_import_match_or_demo() -> None:
    loaded = modules_after(["platform", "--help"])
    assert "cleanroom.cli.platform" in loaded
    assert not loaded & {"cleanroom.cli.match", "cleanroom.cli.demo"}


@pytest.mark.parametrize("command", [None, "no-such-command", "--help"])
def test_help_and_unknown_commands_see_every_command(command: str | None) -> None:
    parser = build_parser(command)
    help_text = parser.format_help()
    for name in COMMANDS:
        assert name in help_text
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(choices) == set(COMMANDS)


def test_an_unknown_command_is_a_usage_error_naming_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cleanroom.cli import main

    with pytest.raises(SystemExit) as raised:
        main(["no-such-command"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'no-such-command'" in err
    for name in COMMANDS:
        assert name in err


@pytest.fixture
def lists(tmp_path: Path) -> tuple[Path, Path]:
    """A list file past the size at which match starts the fork server early, and a small one."""
    large, small = tmp_path / "large.csv", tmp_path / "small.csv"
    large.write_bytes(b"x" * _EARLY_FORK_SERVER_BYTES)
    small.write_bytes(b"x" * (_EARLY_FORK_SERVER_BYTES - 1))
    return large, small


def test_a_match_of_a_large_list_starts_the_fork_server_early(lists: tuple[Path, Path]) -> None:
    large, small = lists
    base = ["match", "--server", "127.0.0.1:7443", "--mode", "count"]
    assert _match_needs_workers([*base, "--input", str(large)])
    assert _match_needs_workers([*base, f"--input={large}"])
    assert _match_needs_workers([*base, "--input", str(large), "--workers", "2"])
    # Work that never reaches this process's pool, or no pool worth starting.
    assert not _match_needs_workers([*base, "--input", str(small)])
    assert not _match_needs_workers([*base, "--input", str(large), "--workers", "1"])
    assert not _match_needs_workers([*base, "--input", str(large), "--workers=1"])
    assert not _match_needs_workers([*base, "--input", str(large), "--dask-scheduler", "h:8786"])
    assert not _match_needs_workers([*base, "--input", str(large.with_name("missing.csv"))])
    assert not _match_needs_workers([*base, "--input", "bad\x00path"])
    assert not _match_needs_workers([*base, "--input"])
    assert not _match_needs_workers(base)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="pins a process to one core")
def test_on_a_single_core_match_starts_no_fork_server_unless_told_to(
    lists: tuple[Path, Path],
) -> None:
    # The default engine there has one worker and runs every job without a pool.
    large = str(lists[0])
    code = (
        "import os\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from cleanroom.cli import _match_needs_workers\n"
        f"base = ['match', '--input', {large!r}]\n"
        "print(_match_needs_workers(base), _match_needs_workers([*base, '--workers', '2']))\n"
    )
    assert python_output(code).split() == ["False", "True"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads parents from /proc")
def test_the_pool_forks_its_workers_from_the_fork_server_started_early() -> None:
    # In a fresh interpreter: which processes start_fork_server started, and whose children
    # the engine's workers are.
    code = (
        "import os\n"
        "from pathlib import Path\n"
        "from cleanroom._fork_server import start_fork_server\n"
        "def parent(pid):\n"
        "    try:\n"
        "        stat = Path(f'/proc/{pid}/stat').read_text()\n"
        "    except OSError:  # gone meanwhile\n"
        "        return None\n"
        "    return int(stat.rsplit(')', 1)[1].split()[1])\n"
        "def children():\n"
        "    pids = (int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "    return {p for p in pids if parent(p) == os.getpid()}\n"
        "start_fork_server()\n"
        "early = children()\n"
        "from cleanroom.crypto import BatchEngine\n"
        "with BatchEngine(workers=2) as engine:\n"
        "    engine.start()\n"
        "    print(len(early), sorted({parent(p) in early for p in engine.worker_pids}))\n"
    )
    started, workers_from_early = python_output(code).split(maxsplit=1)
    assert int(started) >= 1  # the fork server (and the resource tracker)
    assert workers_from_early.strip() == "[True]"


def console_script_output(main_body: str, unset: str) -> str:
    """What the console script prints when its ``main`` is ``main_body`` (indented code that
    returns 0), run in a fresh interpreter without the environment variable ``unset``."""
    code = (
        "import os, sys\n"
        "import cleanroom.cli as cli\n"
        "def main():\n"
        f"{main_body}"
        "cli.main = main\n"
        "sys.argv = ['cleanroom']\n"
        "cli.console_main()\n"
    )
    return python_output(code, {k: v for k, v in os.environ.items() if k != unset})


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="counts threads in /proc")
def test_the_console_script_keeps_numpy_to_one_blas_thread() -> None:
    # OpenBLAS would start a thread per core when numpy loads; the CLI does no linear algebra.
    main_body = (
        "    import numpy\n"
        "    threads = open('/proc/self/status').read().split('Threads:')[1].split()[0]\n"
        "    print(os.environ.get('OPENBLAS_NUM_THREADS'), threads)\n"
        "    return 0\n"
    )
    assert console_script_output(main_body, "OPENBLAS_NUM_THREADS").split() == ["1", "1"]


def test_the_console_script_keeps_numpy_from_asking_for_huge_pages() -> None:
    # A command's large arrays are fresh memory; ordinary pages are cheaper to fault in.
    main_body = (
        "    try:\n"
        "        from numpy._core import multiarray\n"
        "    except ImportError:  # numpy 1.x\n"
        "        from numpy.core import multiarray\n"
        "    print(os.environ.get('NUMPY_MADVISE_HUGEPAGE'), multiarray._get_madvise_hugepage())\n"
        "    return 0\n"
    )
    assert console_script_output(main_body, "NUMPY_MADVISE_HUGEPAGE").split() == ["0", "False"]
