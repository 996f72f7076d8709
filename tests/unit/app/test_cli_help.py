"""The command line explains itself: help on every option, the environment variable behind each default."""

from __future__ import annotations

import argparse

import pytest

from app import __version__
from app.cli import build_parser

ENV_BACKED = {
    "--host": "SWITCHBOARD_HOST",
    "--port": "SWITCHBOARD_PORT",
    "--concurrency": "SWITCHBOARD_WORKER_CONCURRENCY",
}


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(_commands(sub, f"{prefix}{name} "))
    return found


def test_every_option_has_help_and_names_its_environment_variable() -> None:
    commands = _commands(build_parser())
    assert {
        "run",
        "web",
        "worker",
        "migrate",
        "admin create",
        "token create",
        "flows import",
    } <= commands.keys()
    for name, parser in commands.items():
        for action in parser._actions:
            if not action.option_strings or action.option_strings[0] in ("-h", "--help"):
                continue
            option = action.option_strings[0]
            assert action.help, f"`switchboard {name} {option}` has no help text"
            if option in ENV_BACKED:
                assert f"env {ENV_BACKED[option]}" in action.help, (name, option, action.help)


def test_web_has_no_worker_options() -> None:
    web = _commands(build_parser())["web"]
    assert "--concurrency" not in {o for a in web._actions for o in a.option_strings}


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"switchboard {__version__}"


def test_import_choices_exclude_each_other(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["flows", "import", "a.flow.json", "--replace", "--copy"])
    assert "not allowed with argument" in capsys.readouterr().err
