"""The ``imori`` entry point: one parser assembled from the command groups."""

from __future__ import annotations

import argparse
import sys

from cli import datasets, queue, records, serve, train
from core.errors import ImoriError

GROUPS = (train, queue, records, serve, datasets)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imori", description="Train image classifiers: the imori command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ImoriError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
