"""The top-level CLI: a command imports only its own module; help and errors list every command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cleanroom.cli import COMMANDS, build_parser


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
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(out.split())


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
