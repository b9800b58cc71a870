"""``imori diff A B``: two runs (or checkpoint files) compared image by image on one
dataset split: what B fixed, what it broke, what both get wrong, McNemar's exact test on
the disagreements, and the settings that differ (``core.diff``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # core.diff loads scipy: `imori --help` stays light
    from core.diff import RunDiff

SHOWN = 10  # images listed per group in the text output (--json lists them all)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="what changed from run A to run B, image by image, and whether it is chance")
    p.add_argument("a", metavar="A", help="a run id or a checkpoint file: the before")
    p.add_argument("b", metavar="B", help="a run id or a checkpoint file: the after")
    p.add_argument("--dataset", help="the dataset both are evaluated on (default: the one A was trained on)")
    p.add_argument("--split", default="test", choices=("test", "train"))
    p.add_argument("--json", action="store_true",
                   help="everything as JSON: fixed, broken, both_wrong, only_a, only_b, a_correct, b_correct, p_value")
    p.set_defaults(func=cmd_diff)


def _answer(side: dict | None) -> str:
    return f"{side['class']} ({100 * side['confidence']:.0f} %)" if side else "-"


def print_diff(result: RunDiff) -> None:
    print(f"A: {result.a} ({result.a_checkpoint})\nB: {result.b} ({result.b_checkpoint})\n"
          f"on {result.dataset} ({result.split} split)")
    print(result.summary())
    for name, group in (("fixed by B", result.fixed), ("broken by B", result.broken),
                        ("wrong by both", result.both_wrong)):
        print(f"\n{name}: {len(group)}")
        for e in group[:SHOWN]:
            print(f"  {e['path']}  truth {e['truth']}  A {_answer(e['a'])}  B {_answer(e['b'])}")
        if len(group) > SHOWN:
            print(f"  ... and {len(group) - SHOWN} more (--json lists them all)")
    if result.only_a or result.only_b:
        print(f"\nimages in one split only: {len(result.only_a)} in A's, {len(result.only_b)} in B's")
    if result.settings:
        print("\nsettings that differ:")
        for key, (va, vb) in result.settings.items():
            print(f"  {key}: {va} -> {vb}")


def cmd_diff(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.jobs.diff import diff  # torch, at the CLI's edge

    with tqdm(total=100, unit="%", file=sys.stderr, disable=args.json or not sys.stderr.isatty(),
              leave=False) as bar:
        def progress(stage: str, share: float) -> None:
            bar.set_description(stage)
            bar.n = round(100 * share)
            bar.refresh()

        result = diff(args.a, args.b, dataset=args.dataset, split=args.split, progress=progress)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_diff(result)
    return 0
