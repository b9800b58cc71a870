"""``imori train --recipe auto`` against its targets (issue "The best model your photos allow").

    .venv/bin/python bench/auto.py                       # ELPV 15 min, digits 1 min, shapes2 4 min
    .venv/bin/python bench/auto.py --only digits,shapes2 # the quick ones
    .venv/bin/python bench/auto.py --per-class 300       # an ELPV subset, to develop

ELPV is the protocol of bench/levers.py (``elpv-dataset`` from PyPI, CC BY-NC-SA 4.0: used
to measure, never shipped): every cell, ``defective`` where the defect probability is at
least 0.5, imported as a user does (``imori datasets import elpv.zip``), a seeded 80/20
train/test split (about 525 test images: +-2.8 points at 95 %). Each target runs the real
command in a fresh process and a fresh IMORI_HOME (no feature cache: what a new user
waits), and its wall time is measured around the whole command. Targets: ELPV >= 88.42 %
(Deitsch et al. 2019's GPU CNN) within 16.5 minutes; digits >= 96.4 % (seed 003's figure)
with 1 minute; shapes2 100 % with 4 minutes.

It prints a Markdown section for bench/RESULTS.md and writes bench/auto.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.levers import elpv_zip  # noqa: E402 - after the path
from bench.real_photos import ensure_elpv  # noqa: E402

TARGETS = {  # name: (dataset, minutes, the accuracy to reach)
    "elpv": ("elpv", 15.0, 0.8842),
    "digits": ("digits", 1.0, 0.964),
    "shapes2": ("shapes2", 4.0, 1.0),
}


def run_auto(name: str, dataset: str, minutes: float, per_class: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"imori-bench-auto-{name}-") as home:
        env = {**os.environ, "IMORI_HOME": home}  # never the user's own
        if dataset == "elpv":
            archive = Path(home) / "elpv.zip"
            elpv_zip(ensure_elpv(), archive, per_class)
            subprocess.check_call([sys.executable, "-m", "cli", "datasets", "import", str(archive), "--name", "elpv"],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "cli", "train", "--recipe", "auto", "--dataset", dataset,
                               "--max-minutes", str(minutes), "--json", "--quiet"],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{name}: imori train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout)
    return {"target": name, "dataset": dataset, "minutes": minutes, "wall_seconds": round(wall, 1),
            "test_accuracy": round(summary["test"]["accuracy"], 4),
            "test_balanced_accuracy": round(summary["test"].get("balanced_accuracy") or 0, 4),
            "test_images": summary["test"].get("count"), "search": summary["search"]}


def markdown(rows: list[dict]) -> str:
    out = ["| target | budget | wall time | test accuracy | balanced | goal | winner |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        goal = TARGETS[r["target"]][2]
        met = "met" if r["test_accuracy"] >= goal and r["wall_seconds"] <= 66 * r["minutes"] else "NOT met"
        out.append(f"| {r['target']} | {r['minutes']:g} min | {r['wall_seconds'] / 60:.1f} min | "
                   f"{100 * r['test_accuracy']:.2f} % | {100 * r['test_balanced_accuracy']:.2f} % | "
                   f">= {100 * goal:.2f} % ({met}) | {r['search']['winner']} |")
    for r in rows:
        out += ["", f"**{r['target']}**: {r['search']['reason']}", "",
                "| candidate | val accuracy | cv accuracy | seconds | status |", "|---|---|---|---|---|"]
        for c in r["search"]["candidates"]:
            val = f"{100 * c['val_accuracy']:.2f} %" if c.get("val_accuracy") is not None else "-"
            cv = f"{100 * c['cv_accuracy']:.2f} %" if c.get("cv_accuracy") is not None else "-"
            out.append(f"| {c['name']} | {val} | {cv} | {c['seconds']:.0f} | {c['status']} |")
        out.append("")
        out.append("Where the minutes went: " + ", ".join(f"{k} {v:.0f} s" for k, v in r["search"]["phases"].items()))
        for note in r["search"].get("notes", []):
            out.append(f"- {note}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated targets: " + ", ".join(TARGETS))
    parser.add_argument("--per-class", type=int, default=None, help="ELPV: at most this many cells per class")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",")] if args.only else list(TARGETS)
    rows = []
    for name in chosen:
        dataset, minutes, _ = TARGETS[name]
        row = run_auto(name, dataset, minutes, args.per_class)
        print(json.dumps({k: v for k, v in row.items() if k != "search"}), file=sys.stderr, flush=True)
        rows.append(row)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "command": "python bench/auto.py " + " ".join(sys.argv[1:]), "per_class": args.per_class, "rows": rows}
    (ROOT / "bench" / "auto.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
