"""Measure what each tutorial recipe reaches on the built-in data, for the recipe cards.

    .venv/bin/python bench/recipes.py            # every recipe, as written and tuned
    .venv/bin/python bench/recipes.py seed003    # one recipe
    .venv/bin/python bench/recipes.py --no-fp32 finetune   # without the fp32 comparison
    .venv/bin/python bench/recipes.py --add-fp32 finetune  # only the fp32 row, added to the
                                                           # recorded one (another machine's bf16)

Writes core/recipe_results.json (shipped with the package, read by
``core.recipes.recipe_results``), so a card's figure is always one this script measured,
with its date and machine, never a number typed by hand.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.recipes import RECIPES, recipe_config  # noqa: E402
from core.errors import ImoriError  # noqa: E402
from core.recorder import MemoryRecorder  # noqa: E402
from core.train import fit  # noqa: E402

RESULTS = ROOT / "core" / "recipe_results.json"

# What to measure per recipe: the recipe as written, plus the variant the card suggests
# where the tutorial's numbers do not learn on this data.
VARIANTS = {
    "seed000": [("as written", {}), ("300 iterations", {"iterations": 300})],
    "seed003": [("as written", {})],
    "seed004": [("as written", {}), ("lr 0.01, momentum 0.9", {"lr": 0.01, "momentum": 0.9})],
    "seed002": [("as written", {})],
    "finetune": [("as written", {})],
}
# Each variant also trains in fp32, to show the CPU fast path (bf16) keeps accuracy:
# the card shows the default precision's figure and the fp32 one beside it.
COMPARE_FP32 = {"seed000", "seed003", "seed004", "finetune"}


def measure(recipe: str, overrides: dict) -> dict:
    config = recipe_config(recipe, **overrides)
    precision = "fp32"
    started = time.time()
    recorder = MemoryRecorder()
    with tempfile.TemporaryDirectory() as run_dir:
        try:
            result = fit(config, run_dir, recorder)
            precision = result.precision
        except ImoriError as err:
            return {"error": str(err).split(". ")[0]}  # the reason, not the how-to
    return {
        "dataset": config.dataset,
        "test_accuracy": round(result.test.get("accuracy", float("nan")), 4),
        "best_val_accuracy": round(result.best_val_accuracy or 0.0, 4),
        "iterations": result.step,
        "epochs": result.epoch,
        "seconds": round(time.time() - started, 1),
        "train_images": recorder.starts[0].train_size if recorder.starts else None,
        "precision": precision,
    }


def main(names: list[str]) -> None:
    compare = "--no-fp32" not in names  # skip the fp32 comparison rows (they double the time)
    add_fp32 = "--add-fp32" in names  # a machine without native bf16 measures only the fp32 rows
    names = [n for n in names if n not in ("--no-fp32", "--add-fp32")]
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    machine = f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores"
    for name in names or list(RECIPES):
        if add_fp32:
            recorded = results[name]
            for label, overrides in VARIANTS.get(name, [("as written", {})]):
                fp32 = {"variant": f"{label} (fp32)", "overrides": {**overrides, "precision": "fp32"}, "compare_only": True,
                        "machine": machine, "date": time.strftime("%Y-%m-%d"), **measure(name, {**overrides, "precision": "fp32"})}
                print(name, json.dumps(fp32), file=sys.stderr, flush=True)
                recorded["results"] = [r for r in recorded["results"] if r["variant"] != fp32["variant"]] + [fp32]
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
            continue
        rows = []
        for label, overrides in VARIANTS.get(name, [("as written", {})]):
            row = {"variant": label, "overrides": overrides, **measure(name, overrides)}
            print(name, json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
            if compare and name in COMPARE_FP32 and row.get("precision") not in (None, "fp32"):
                fp32 = {"variant": f"{label} (fp32)", "overrides": {**overrides, "precision": "fp32"},
                        "compare_only": True, **measure(name, {**overrides, "precision": "fp32"})}
                print(name, json.dumps(fp32), file=sys.stderr, flush=True)
                rows.append(fp32)
        results[name] = {"date": time.strftime("%Y-%m-%d"), "machine": machine, "device": "cpu", "results": rows}
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")  # after each recipe: a long run keeps what it measured
    print("| recipe | variant | precision | dataset | test accuracy | iterations | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name in names or list(RECIPES):
        for row in results[name]["results"]:
            accuracy = f"{100 * row['test_accuracy']:.1f} %" if "test_accuracy" in row else row.get("error", "-")
            print(f"| {name} | {row['variant']} | {row.get('precision', '-')} | {row.get('dataset', '-')} | {accuracy} "
                  f"| {row.get('iterations', '-')} | {row.get('seconds', '-')} |")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main(sys.argv[1:])
