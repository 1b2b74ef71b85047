"""`deepnotes algo ...`: outputs and clear errors."""

from __future__ import annotations

import pytest

from deepnotes.cli import main


@pytest.mark.parametrize(
    "argv,out",
    [
        (["max-gap", "3", "6", "9", "1"], "3\n"),
        (["max-gap", "-5", "3", "10"], "8\n"),
        (["max-gap", "4"], "0\n"),
        (["combination-sum", "--target", "7", "2", "3", "6", "7"], "2 2 3\n7\n"),
        (
            ["combination-sum-unique", "--target", "8", "10", "1", "2", "7", "6", "1", "5"],
            "1 1 6\n1 2 5\n1 7\n2 6\n",
        ),
    ],
)
def test_outputs(argv, out, capsys):
    assert main(["algo", *argv]) == 0
    assert capsys.readouterr().out == out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["max-gap"], "at least one number"),
        (["max-gap", "1", "x"], "'x' is not an integer"),
        (["max-gap", "1.5", "2"], "'1.5' is not an integer"),
        (["combination-sum", "--target", "-7", "2", "3"], "--target must be >= 0"),
        (["combination-sum", "--target", "7"], "at least one candidate"),
        (["combination-sum", "--target", "seven", "2"], "'seven' is not an integer"),
        (["combination-sum-unique", "--target", "7", "0", "3"], "positive"),
    ],
)
def test_errors(argv, message, capsys):
    assert main(["algo", *argv]) != 0
    assert message in capsys.readouterr().err


def test_no_combination_is_not_an_error(capsys):
    assert main(["algo", "combination-sum", "--target", "1", "2"]) == 0
    assert "no combination" in capsys.readouterr().err
