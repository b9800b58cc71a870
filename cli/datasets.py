"""``imori datasets ACTION``, ``models``, ``recipes``: what there is to train on and with.

``imori datasets`` has one subcommand per action (``ACTIONS``: list, import, check, fix,
delete); ``old_spelling`` keeps the spellings of before (the action anywhere among the
arguments, or none for list) working."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ImoriError
from core.models.specs import get_spec, list_models, pretrained_available
from core.recipes import RECIPES, recipe_results
from core.text import plural


@dataclass(frozen=True)
class Action:
    """One ``imori datasets ACTION``: its help, its options and the function that runs it.
    A new action (``label``, ``suggest``...) is a ``cmd_`` function, an ``_options``
    function, and one line in ``ACTIONS``."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    options: Callable[[argparse.ArgumentParser], None]
    description: str = ""


def list_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def import_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="the folder, ZIP or CSV to import")
    p.add_argument("--name", help="the dataset's name (default: from PATH)")
    p.add_argument("--file-column", dest="file_column", metavar="COLUMN",
                   help="the CSV column holding the image files, by header name or 0-based index "
                        "(default: a header such as file/image/path, else the column whose cells name files)")
    p.add_argument("--label-column", dest="label_column", metavar="COLUMN",
                   help="the CSV column holding the labels, by header name or 0-based index "
                        "(default: a header such as label/class/category, else the other column)")
    p.add_argument("--filename-encoding", dest="filename_encoding", metavar="ENC",
                   help="the encoding of file names (and of a CSV) that are not UTF-8, e.g. cp932 for a ZIP "
                        "made by Windows on a Japanese system, gbk, euc-kr, cp850, cp1252 (default: UTF-8 when they "
                        "are, else the likeliest legacy encoding, which the report names)")
    p.add_argument("--json", action="store_true")


def check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="NAME", help="any dataset `imori datasets` lists, or a folder or ZIP")
    p.add_argument("--no-features", dest="features", action="store_false",
                   help="the image checks only (seconds), not the pretrained-feature checks")
    p.add_argument("--json", action="store_true")


def fix_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="NAME", help="an imported dataset (or one of its versions, NAME@vN)")
    p.add_argument("--drop-test-copies", action="store_true", help="drop the test images that duplicate training images")
    p.add_argument("--drop-kind", action="append", default=[], metavar="KIND",
                   help="drop the images of every finding of KIND (dark, blurry, exact_duplicates...; repeatable)")
    p.add_argument("--relabel-suggested", action="store_true",
                   help="each likely label error takes the class the model believes")
    p.add_argument("--drop", action="append", default=[], metavar="PATH", help="drop this image (repeatable)")
    p.add_argument("--relabel", action="append", default=[], metavar="PATH=CLASS",
                   help="give this image this class (repeatable)")
    p.add_argument("--reviewed", action="append", default=[], metavar="KIND:PATH",
                   help="mark the findings of KIND naming PATH as reviewed, fine as they are (repeatable)")
    p.add_argument("--json", action="store_true")


def delete_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="NAME", help="an imported dataset (`imori datasets` lists them)")
    p.add_argument("--json", action="store_true")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list datasets, import a folder or ZIP, check one's health, fix or delete one",
                       description="One subcommand per action; `imori datasets ACTION --help` gives its options. "
                                   "With no action: list.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action in ACTIONS:
        q = actions.add_parser(action.name, help=action.help, description=action.description or action.help)
        action.options(q)
        q.set_defaults(func=action.run)

    p = sub.add_parser("models", help="list models, or show one's parameters")
    p.add_argument("name", nargs="?")
    p.add_argument("--classes", type=int, default=10, help="class count for the summary")
    p.add_argument("--kernel", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("recipes", help="the tutorials' recipes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_recipes)


def old_spelling(argv: list[str]) -> list[str]:
    """``imori datasets`` as it was spelled before it had subcommands: the action anywhere
    among the arguments (``imori datasets --json``, ``imori datasets --name x import
    a.zip``), or none for list. Returns the arguments with the action first."""
    names = [a.name for a in ACTIONS]
    if argv[:1] != ["datasets"] or (argv[1:2] and argv[1] in names):
        return argv
    rest = argv[1:]
    positional, i = None, 0
    while i < len(rest):
        token = rest[i]
        if token.startswith("-"):
            i += 2 if _takes_value(token) else 1
            continue
        positional = i
        break
    if positional is not None:
        if rest[positional] not in names:
            return argv  # argparse says which actions there are
        return ["datasets", rest[positional], *rest[:positional], *rest[positional + 1:]]
    if any(token in ("-h", "--help") for token in rest):
        return argv
    listing = _option_strings(next(a for a in ACTIONS if a.name == "list"))
    for token in rest:
        option = token.split("=", 1)[0]
        if option.startswith("-") and option not in listing:
            owners = [a.name for a in ACTIONS if option in _option_strings(a)]
            if owners:
                raise ImoriError(f"{option} goes with {' or '.join(owners)}: imori datasets {owners[0]} --help says how")
    return ["datasets", "list", *rest]


def _option_strings(action: Action) -> dict[str, bool]:
    """An action's option strings, each with whether it takes a value."""
    p = argparse.ArgumentParser(add_help=False)
    action.options(p)
    return {flag: a.nargs != 0 for a in p._actions for flag in a.option_strings}


def _takes_value(token: str) -> bool:
    if "=" in token:
        return False
    return any(_option_strings(a).get(token, False) for a in ACTIONS)


def cmd_list(args: argparse.Namespace) -> int:
    """``imori datasets [list]``: every dataset, how many runs used it, where it lives."""
    from core.data.registry import list_datasets
    from core.records import queries

    infos = list_datasets()
    if args.json:
        print(json.dumps([_info_dict(i) for i in infos], indent=2, default=str))
        return 0
    for info in infos:
        d = _info_dict(info)
        used = queries.count_runs(queries.RunFilter(dataset=d["name"]))
        classes = d.get("classes") or []
        where = d.get("location") or ""
        if not d.get("present", True):
            where = f"not downloaded (train with --download, or put it under {where})" if where else "not downloaded"
        print(f"{d['name']:<16} {d['kind']:<12} {len(classes):>3} classes  {used:>4} {'run ' if used == 1 else 'runs'}  {where}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """``imori datasets import PATH``: a folder, ZIP or CSV becomes a dataset, with its report."""
    from core.data.registry import import_dataset
    from core.health.check import check_after_import

    info = import_dataset(args.path, name=args.name, file_column=args.file_column, label_column=args.label_column,
                          filename_encoding=args.filename_encoding)
    # The cheap checks, so `imori datasets check` and the Health tab have a report; what
    # they find that changes what the figures mean joins the import's report.
    health = check_after_import(info.name)
    if getattr(info, "report", None) is not None:
        info.report.warnings += health
    if args.json:
        print(json.dumps({**_info_dict(info), "health_warnings": health}, indent=2, default=str))
        return 0
    layout = {"folder": "class folders", "csv": "a CSV of images and labels"}.get(info.kind, info.kind)
    print(f"imported {info.name} ({layout} from {Path(args.path).name}) into {info.location}")
    print(info.description)
    report = getattr(info, "report", None)
    if report is not None:
        print(report.as_text())
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """``imori datasets delete NAME``: an imported dataset; the runs keep their records."""
    from core.data.registry import delete_dataset

    delete_dataset(args.dataset)
    if args.json:
        print(json.dumps({"deleted": args.dataset}))
    else:
        print(f"deleted dataset {args.dataset} (runs trained on it keep their records and checkpoints)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``imori datasets check NAME``: the health report, with a progress bar per stage."""
    from tqdm import tqdm

    from core.health.check import check_dataset

    bars: dict[str, Any] = {}

    def progress(what: str, done: int, total: int) -> None:
        bar = bars.get(what)
        if bar is None:
            bar = bars[what] = tqdm(total=total, desc=what, unit="img" if total > 1 else "", file=sys.stderr,
                                    disable=args.json or None, leave=False)
        bar.update(done - bar.n)

    try:
        report = check_dataset(args.dataset, features=args.features, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    ratio = report.imbalance_ratio
    print(f"{report.dataset}: {report.images} images, {len(report.classes)} classes"
          + (f", largest to smallest class {ratio:.1f} to 1" if ratio else "")
          + f"; checks: {', '.join(report.checks)} ({', '.join(f'{k} {v:.1f} s' for k, v in report.seconds.items())})")
    if report.inflated_test_images:
        print(f"warning: test accuracy may be inflated: {plural(report.inflated_test_images, 'test image')} duplicate "
              "training images")
    if not report.findings:
        print("no problems found")
    for kind, count, meaning in report.summary():
        print(f"\n{kind} ({count}): {meaning}")
        for finding in report.of_kind(kind)[:10]:
            where = ", ".join(f"{n} [{s}, {c}]" for n, s, c in zip(finding.images, finding.splits, finding.labels))
            print(f"  {finding.score:.2f}  {finding.reason}" + (f": {where}" if where else ""))
        if count > 10:
            print(f"  ... and {count - 10} more (--json lists them all)")
    if report.reviewed:
        print(f"\n{plural(len(report.reviewed), 'finding')} marked as reviewed in this version are not listed")
    for note in report.notes:
        print(f"note: {note}")
    if "features" not in report.checks and args.features is False:
        print("\n(the pretrained-feature checks, near copies and likely label errors: run without --no-features)")
    return 0


def cmd_fix(args: argparse.Namespace) -> int:
    """``imori datasets fix NAME ...``: a new version with the fixes, the old one kept."""
    from core.health.fix import fix_dataset

    if not (args.drop_test_copies or args.drop_kind or args.relabel_suggested or args.drop or args.relabel
            or args.reviewed):
        raise ImoriError("no fix asked for: give --drop-test-copies, --drop-kind KIND, --relabel-suggested, "
                         "--drop PATH, --relabel PATH=CLASS or --reviewed KIND:PATH")
    relabel = {}
    for item in args.relabel:
        path, sep, cls = item.rpartition("=")
        if not sep or not path or not cls:
            raise ImoriError(f"--relabel wants PATH=CLASS, not {item!r}")
        relabel[path] = cls
    info = fix_dataset(args.dataset, drop_test_copies=args.drop_test_copies, drop_kinds=tuple(args.drop_kind),
                       relabel_suggested=args.relabel_suggested, drop=tuple(args.drop), relabel=relabel,
                       reviewed=tuple(args.reviewed))
    if args.json:
        print(json.dumps(_info_dict(info), indent=2, default=str))
    elif info.reused:
        print(f"{info.name} already holds exactly these fixes ({info.description}): no new version made. "
              f"Train on it: imori train --dataset {info.name}")
        return 0
    else:
        print(f"made {info.name}: {info.description}")
        print(f"{info.counts.get('train', 0)} train / {info.counts.get('test', 0)} test images; "
              f"{args.dataset} stays as it was. Train on it: imori train --dataset {info.name}")
    return 0


ACTIONS = (
    Action("list", "every dataset: built-in, torchvision and imported, with how many runs used it",
           cmd_list, list_options),
    Action("import", "import a folder of class folders, a ZIP of them, or a CSV of images and labels",
           cmd_import, import_options,
           "imori datasets import PATH [--name NAME] [--file-column C --label-column L] [--filename-encoding ENC]: "
           "the dataset is copied under IMORI_HOME/datasets, its images checked, and a report printed"),
    Action("check", "a dataset's health: duplicates across the split, balance, odd images, likely label errors",
           cmd_check, check_options),
    Action("fix", "a new version of an imported dataset with fixes (NAME@vN); the dataset itself stays as it was",
           cmd_fix, fix_options),
    Action("delete", "delete an imported dataset (runs trained on it keep their records and checkpoints)",
           cmd_delete, delete_options),
)
def _info_dict(info: Any) -> dict[str, Any]:
    if hasattr(info, "to_dict"):
        return info.to_dict()
    import dataclasses

    return dataclasses.asdict(info)


def _weights(spec) -> dict[str, object] | None:
    """Where a model's pretrained weights come from, their licence, and whether they are here."""
    if not spec.pretrainable:
        return None
    present, where = pretrained_available(spec.name)
    return {"source": spec.weights_source, "licence": spec.weights_licence, "available": present, "where": where}


def _backbone_figures(spec) -> dict[str, object]:
    """A backbone's published ImageNet top-1 (%), its measured CPU cost per image (ms, on
    this machine, cached) and its weights' licence; empty for a model without weights."""
    from core.models.cost import cpu_ms_per_image  # torch, at the CLI's edge

    if not spec.pretrainable:
        return {}
    return {"imagenet_top1": spec.imagenet_top1, "cpu_ms_per_image": cpu_ms_per_image(spec.name),
            "licence": spec.weights_licence}


def cmd_models(args: argparse.Namespace) -> int:
    from core.models.registry import build_model  # torch: only `imori models` pays for it
    from core.models.summary import summarize

    if args.name:
        spec = get_spec(args.name)
        options = {"kernel": args.kernel} if args.kernel else {}
        model = build_model(spec.name, args.classes, options=options)
        summary = summarize(model)
        weights = _weights(spec)
        if args.json:
            print(json.dumps({**summary.to_dict(), "pretrained_weights": weights}, indent=2))
        else:
            print(f"{spec.name}: {spec.title}")
            if weights:
                state = "on this machine: " if weights["available"] else "not here: "
                print(f"pretrained weights: {weights['source']}\n  licence: {weights['licence']}\n  {state}{weights['where']}")
            print(summary.as_text())
        return 0
    specs = list_models()
    from core.models.cost import cached_cpu_ms

    if any(s.pretrainable and cached_cpu_ms(s.name) is None for s in specs) and not args.json:
        print("measuring each backbone's CPU cost per image once (cached)...", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps([
            {"name": s.name, "title": s.title, "seed": s.seed, "in_channels": s.in_channels,
             "default_size": list(s.default_size), "allowed_sizes": s.allowed_sizes, "output": s.output,
             "pretrained_weights": _weights(s), **_backbone_figures(s)}
            for s in specs
        ], indent=2))
        return 0
    for s in specs:
        size = "x".join(map(str, s.default_size))
        weights = _weights(s)
        note = "" if weights is None else ("  [pretrained weights here]" if weights["available"] else "  [no pretrained weights here]")
        figures = _backbone_figures(s)
        cost = (f"  ImageNet {figures['imagenet_top1']:.1f} %, {figures['cpu_ms_per_image']:.0f} ms/image on this CPU"
                if figures else "")
        print(f"{s.name:<20} {s.in_channels}x{size:<8} {s.output:<9} {s.title}{note}{cost}")
    return 0


def measured_line(measured: dict) -> str:
    """What bench/recipes.py measured a recipe reaching, in one line."""
    rows = [r for r in measured.get("results") or [] if not r.get("compare_only")]
    if not rows:
        return "not measured yet (bench/recipes.py)"
    first = rows[0]
    if first.get("error"):
        return f"not measured on {measured.get('machine', '?')} ({measured.get('date', '?')}): {first['error']}"
    fp32 = next((r for r in measured["results"] if r.get("compare_only") and r["variant"] == f"{first['variant']} (fp32)"), None)
    line = (f"measured {measured.get('date', '?')} on {measured.get('machine', '?')}: "
            f"{100 * first['test_accuracy']:.1f} % test accuracy on {first.get('dataset', '?')} "
            f"({first.get('iterations', '?')} iterations, {first.get('seconds', '?')} s, {first.get('precision', 'fp32')})")
    if fp32 and fp32.get("test_accuracy") is not None:
        line += f"; in fp32 {100 * fp32['test_accuracy']:.1f} %"
    return line


def cmd_recipes(args: argparse.Namespace) -> int:
    results = recipe_results()
    if args.json:
        print(json.dumps({k: {**v, "measured": results.get(k)} for k, v in RECIPES.items()}, indent=2))
        return 0
    for key, recipe in RECIPES.items():
        print(f"{key}: {recipe['title']}\n    {recipe['about']}\n    {measured_line(results.get(key) or {})}")
    return 0


def warn_about_health(dataset: str) -> None:
    """What the dataset's newest health report says against training on it or believing
    its test accuracy, on stderr (a warning: the run goes ahead)."""
    from core.health.cache import latest_report

    try:
        report = latest_report(str(dataset))
    except OSError:
        return
    if report is None:
        return
    if report.stale:
        print(f"note: {dataset} has changed since its health report ({report.created}), so that report's warnings "
              f"are not repeated: `imori datasets check {dataset}` checks it as it is now", file=sys.stderr)
        return
    if report.inflated_test_images:
        print(f"warning: {dataset}: test accuracy may be inflated: {plural(report.inflated_test_images, 'test image')} "
              f"{'duplicates a training image' if report.inflated_test_images == 1 else 'duplicate training images'} (imori datasets check {dataset}; imori datasets fix {dataset} "
              "--drop-test-copies)", file=sys.stderr)
    small = [f.labels[0] for f in report.of_kind("small_class") if f.labels]
    if small:
        print(f"warning: {dataset}: too few images to learn or test in {', '.join(small)}", file=sys.stderr)

