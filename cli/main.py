"""The ``imori`` entry point: one parser assembled from the command groups."""

from __future__ import annotations

import argparse
import sys

from cli import cache, datasets, diff, endpoint, jobs, queue, records, serve, train
from core.errors import ImoriError

GROUPS = (train, queue, records, diff, jobs, serve, endpoint, datasets, cache)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imori", description="Train image classifiers: the imori command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = make_parser()
    try:
        args = parser.parse_args(datasets.old_spelling(argv))
        code = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at exit
        return code
    except ImoriError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `imori show 5 | head` closed the pipe: stop quietly, as Unix tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
