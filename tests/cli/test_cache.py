"""`imori cache`: what the decoded-data and feature caches hold, with sizes, and clearing them."""

from __future__ import annotations

import json

import torch

from cli.main import main
from core import paths
from core.data import cache


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_caches_are_listed_with_sizes_and_cleared(imori_home, capsys):
    from core.data.preprocess import Preprocessing
    from core.data.registry import load_dataset

    load_dataset("digits", Preprocessing(28, 28, channels=1))  # a decoded dataset, cached
    features = paths.cache_dir() / "features" / "0123456789abcdef0123.pt"
    assert cache.save(features, {"features": torch.zeros(64, 16)})
    code, out, _ = run(capsys, "cache", "--json")
    listed = json.loads(out)
    assert code == 0 and {e["kind"] for e in listed} == {"data", "features"}
    data = next(e for e in listed if e["kind"] == "data")
    assert data["name"].startswith("digits-") and data["bytes"] > 28 * 28 * 1000
    code, out, _ = run(capsys, "cache")
    assert "data: 1 file," in out and "features: 1 file," in out and "digits-" in out
    code, out, _ = run(capsys, "cache", "clear", "--kind", "features")
    assert code == 0 and "removed 1 cached file," in out
    assert [e.kind for e in cache.entries()] == ["data"]
    code, out, _ = run(capsys, "cache", "clear")
    assert "removed 1 cached file," in out and cache.entries() == []
    code, out, _ = run(capsys, "cache")
    assert "the caches are empty" in out


def test_the_commands_kinds_are_the_caches_own():
    """`imori cache --kind` lists the kinds without importing the cache module (torch)."""
    from cli import cache as cli_cache

    assert cli_cache.KINDS == cache.KINDS
