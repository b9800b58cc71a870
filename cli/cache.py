"""``imori cache``: what the decoded-data and feature caches hold, and clearing them."""

from __future__ import annotations

import argparse
import json

from core import paths
from core.text import plural

# core.data.cache.KINDS, written out so that `imori --help` imports no torch (the cache
# module holds tensors); tests/cli/test_cache.py keeps the two in step.
KINDS = ("data", "features", "health")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="list what the data, feature and health caches hold, or clear them",
                       description="imori cache [list] [--kind data|features|health] [--json]; imori cache clear "
                                   "[--kind ...]. Every cache is rebuilt on demand: clearing one loses nothing.")
    p.add_argument("action", nargs="?", choices=("list", "clear"), default="list")
    p.add_argument("--kind", choices=KINDS,
                   help="data: decoded datasets (in memory .pt, on disk .u8); features: a frozen backbone's features; health: datasets' health "
                        "reports (default: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cache)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def cmd_cache(args: argparse.Namespace) -> int:
    from core.data import cache

    if args.action == "clear":
        before = sum(e.bytes for e in cache.entries(args.kind))
        removed = cache.clear(args.kind)
        print(f"removed {plural(removed, 'cached file')}, {_size(before)} (rebuilt when a run needs them)")
        return 0
    found = cache.entries(args.kind)
    if args.json:
        print(json.dumps([e.to_dict() for e in found], indent=2))
        return 0
    if not found:
        print(f"the caches are empty ({paths.cache_dir()})")
        return 0
    for kind in cache.KINDS:
        mine = [e for e in found if e.kind == kind]
        if mine:
            print(f"{kind}: {plural(len(mine), 'file')}, {_size(sum(e.bytes for e in mine))}")
            for e in mine[:20]:
                print(f"  {_size(e.bytes):>9}  {e.name}")
            if len(mine) > 20:
                print(f"  ... and {len(mine) - 20} more")
    print(f"in {paths.cache_dir()}; `imori cache clear` empties them (they are rebuilt on demand)")
    return 0
