"""The CLI tells bad input (one line, exit 2) from a bug (traceback and summary, exit 1)."""

from __future__ import annotations

import argparse
import types

from jobs.cli import main, run_command
from pipeline.errors import UserError


def command_raising(exc: BaseException) -> types.SimpleNamespace:
    def run(_args: argparse.Namespace) -> int:
        raise exc

    return types.SimpleNamespace(run=run)


def test_a_bug_is_reported_with_its_traceback_and_exit_1(capsys):
    code = run_command(command_raising(ValueError("shapes (3,) and (4,) differ")), None)
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback (most recent call last)" in err and "in run" in err
    assert "vaepipe: internal error: ValueError: shapes (3,) and (4,) differ" in err
    assert "vaepipe: error:" not in err  # not dressed up as bad input


def test_user_error_stays_one_line_and_exit_2(capsys):
    code = run_command(command_raising(UserError("data.source: no such file /x")), None)
    assert code == 2
    assert capsys.readouterr().err == "vaepipe: error: data.source: no such file /x\n"


def test_a_config_error_is_bad_input(capsys):
    # A ConfigError is a ValueError, but a wanted one: one line naming key and value, exit 2.
    code = main(["train", "--data", "digits", "--set", "train.epochs=2.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("vaepipe: error: train.epochs=2.5")
