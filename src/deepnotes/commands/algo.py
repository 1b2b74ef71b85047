"""`deepnotes algo ...`: the algorithm notes on the command line.

deepnotes algo max-gap 3 6 9 1                        -> 3
deepnotes algo combination-sum --target 7 2 3 6 7     -> 2 2 3 / 7
deepnotes algo combination-sum-unique --target 8 10 1 2 7 6 1 5
"""

from __future__ import annotations

import argparse
import sys

from deepnotes.cli import command


def _ints(values: list[str], what: str) -> list[int]:
    if not values:
        raise ValueError(f"give at least one {what}")
    out = []
    for v in values:
        try:
            out.append(int(v))
        except ValueError:
            raise ValueError(f"{v!r} is not an integer") from None
    return out


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="algo", metavar="{max-gap,combination-sum,...}")
    p = sub.add_parser("max-gap", help="largest gap between neighbours of the sorted numbers")
    p.add_argument("numbers", nargs="*", help="integers (negative ones too)")
    for name, what in (
        ("combination-sum", "each candidate reusable (LeetCode 39)"),
        ("combination-sum-unique", "each candidate used at most once (LeetCode 40)"),
    ):
        p = sub.add_parser(name, help=f"combinations summing to --target, {what}")
        p.add_argument("--target", required=True, help="a non-negative integer")
        p.add_argument("candidates", nargs="*", help="positive integers")


@command(
    "algo", "the algorithm notes: max-gap, combination-sum, combination-sum-unique", _add_arguments
)
def algo(args: argparse.Namespace) -> int:
    from deepnotes.algorithms import combination_sum, combination_sum_unique, maximum_gap

    if args.algo is None:
        print("usage: deepnotes algo {max-gap,combination-sum,combination-sum-unique} ...",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        if args.algo == "max-gap":
            print(maximum_gap(_ints(args.numbers, "number")))
            return 0
        target = _ints([args.target], "target")[0]
        if target < 0:
            raise ValueError(f"--target must be >= 0, got {target}")
        candidates = _ints(args.candidates, "candidate")
        fn = combination_sum if args.algo == "combination-sum" else combination_sum_unique
        combos = fn(candidates, target)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for c in combos:
        print(" ".join(map(str, c)))
    if not combos:
        print(f"(no combination sums to {target})", file=sys.stderr)
    return 0
