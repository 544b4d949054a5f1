"""The CLI skeleton: help, version, unknown commands, user errors -> exit 2."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from trl_seqpo import __version__
from trl_seqpo.cli import main as cli
from trl_seqpo.errors import UserInputError


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: trl-seqpo" in capsys.readouterr().err


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2


def test_user_error_is_one_line_and_exit_2(monkeypatch, capsys):
    def add_parser(subparsers):
        parser = subparsers.add_parser("boom")

        def run(args):
            raise UserInputError("timestamp does not parse", path="show.srt", line=12)

        parser.set_defaults(func=run)

    monkeypatch.setitem(cli.COMMANDS, "boom", ("raise a user error", f"{__name__}:_unused"))
    monkeypatch.setattr(sys.modules[__name__], "_unused", add_parser, raising=False)
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err == "trl-seqpo: error: show.srt:12: timestamp does not parse\n"


def _registered(parser: argparse.ArgumentParser, path: str = "trl-seqpo"):
    """(command path, listed help, parser) of every command and action below ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", listed[name], sub
                yield from _registered(sub, f"{path} {name}")


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_and_action_has_its_function_help_and_description(command):
    registered = list(_registered(cli.build_parser([command])))
    mine = [(path, listed, sub) for path, listed, sub in registered if path.split()[1] == command]
    assert mine, command
    for path, listed, sub in mine:
        assert callable(sub.get_default("func")), path
        assert listed and "\n" not in listed and not listed.endswith("."), (path, listed)
        assert sub.description and sub.description != listed, path


def test_an_action_runs_the_function_it_was_registered_with(capsys):
    from trl_seqpo.cli.options import add_action

    def run_echo(args):
        """say a word

        Print WORD on stdout.
        """
        print(args.word)
        return 3

    parser = argparse.ArgumentParser(prog="tool")
    echo = add_action(parser.add_subparsers(dest="command"), "echo", run_echo)
    echo.add_argument("word")
    args = parser.parse_args(["echo", "hello"])
    assert args.func(args) == 3 and capsys.readouterr().out == "hello\n"
    assert re.search(r"\n\s+echo\s+say a word\n", parser.format_help())
    assert "Print WORD on stdout." in echo.format_help()


def test_console_script_help_does_not_import_torch():
    code = (
        "import sys; from trl_seqpo.cli import main as cli; cli.build_parser(['--help']); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
