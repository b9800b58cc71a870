"""Compare: overlay several runs' curves; their settings and best metrics side by side,
what differs highlighted; two of them image by image (a ``diff`` job: ``core.diff``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from PIL import Image

from core.data.registry import load_dataset
from core.diff import RunDiff
from core.jobs import diff as diff_job
from core.jobs.kinds import DIFF
from core.records import queries
from core.status import QUEUED, SUCCEEDED
from core.text import plural
from dashboard import charts, fmt, jobs, live, loading, nav

DIFF_SHOWN = 24  # thumbnails a group shows (`imori diff --json` lists them all)

METRICS = {
    "train loss": ("steps", "loss"),
    "train accuracy": ("steps", "accuracy"),
    "val accuracy": ("val", "accuracy"),
    "val loss": ("val", "loss"),
    "test accuracy": ("test", "accuracy"),
    "test loss": ("test", "loss"),
    "learning rate": ("steps", "lr"),
}

st.title("Compare runs")
if queries.count_runs() == 0:
    st.info("No runs yet. Queue some from **New run** (a sweep makes several at once).", icon=":material/info:")
    st.stop()

# The choices: the runs already chosen or linked, and the newest ones the search finds
# (any recorded run can be found, however many there are).
linked = [int(p) for p in str(st.query_params.get("runs", "")).split(",") if p.strip().isdigit()]
search = st.text_input("Find runs to add", key="compare_search", placeholder="name, model, dataset, tag or #id",
                       persist_state="session",
                       help=f"The newest {nav.PICKER_LIMIT} matching runs are offered below; type to find older ones.")
found = queries.list_runs(where=queries.RunFilter(text=search or None), limit=nav.PICKER_LIMIT)
wanted = set(linked) | set(st.session_state.get("compare_runs", []))
known = {r.id: r for r in found}
missing = [i for i in wanted if i not in known]
if missing:
    known.update({r.id: r for r in queries.list_runs(ids=missing, limit=None)})
by_id = dict(sorted(known.items(), reverse=True))
linked = [i for i in linked if i in by_id]
current = [i for i in st.session_state.get("compare_runs", []) if i in by_id]
if linked and linked != current:
    # A link: several runs replace the selection; one run (from its detail page) joins it.
    current = linked if len(linked) > 1 else linked + [i for i in current if i not in linked]
if len(current) < 2 and "compare_runs" not in st.session_state:
    current += [r.id for r in found if r.status != QUEUED and r.id not in current][: 2 - len(current)]
st.session_state.compare_runs = current


def follow() -> None:
    st.query_params["runs"] = ",".join(map(str, st.session_state.compare_runs))


chosen = st.multiselect("Runs", list(by_id), key="compare_runs", format_func=lambda i: fmt.run_label(by_id[i]),
                        on_change=follow, persist_state="session")
if not chosen:
    st.info("Pick two or more runs.", icon=":material/info:")
    st.stop()
st.query_params["runs"] = ",".join(map(str, chosen))

details = {i: queries.get_run(i) for i in chosen}
labels = {i: f"#{i} {details[i].name}" for i in chosen}
metric = st.segmented_control("Metric", list(METRICS), default="train loss", key="compare_metric",
                              persist_state="session") or "train loss"
x_kind, smoothing, log = charts.chart_controls("compare")
source, field = METRICS[metric]


@live.fragment(lambda: tuple(queries.run_status(i)[0] for i in chosen))
def overlay() -> None:
    """The chosen runs' curves (while one trains, redrawn; when it finishes, the page once,
    and then the part stops ticking)."""
    frames, points = [], []
    if source == "steps":
        all_series = queries.compare_series(chosen, max_points=800)
        for run_id, series in all_series.items():
            run = details[run_id]
            t0 = run.started_at.timestamp() if run.started_at else None
            frames.append(charts.series_frame(series, field, x=x_kind, steps_per_epoch=run.steps_per_epoch, t0=t0,
                                               smoothing=0.0 if field == "lr" else smoothing, label=labels[run_id]))
    else:
        for run_id in chosen:
            run = details[run_id]
            t0 = run.started_at.timestamp() if run.started_at else None
            frame = charts.eval_frame(queries.eval_series(run_id, split=source), field, x=x_kind,
                                       steps_per_epoch=run.steps_per_epoch, t0=t0)
            points.append(frame.assign(series=labels[run_id]))
    band = pd.concat(frames, ignore_index=True) if frames else None
    dots = pd.concat(points, ignore_index=True) if points else None
    if (band is None or band.empty) and (dots is None or dots.empty):
        st.info(f"No {metric} recorded yet for these runs.", icon=":material/info:")
        return
    st.altair_chart(
        charts.line_chart(band, dots, x_title=charts.X_TITLES[x_kind], y_title=metric, log=log,
                           percent="accuracy" in field, height=360),
        width="stretch",
    )


overlay()

# Settings and results, one column per run.
st.subheader("Settings and results")
# An automatic run: the settings its winner trained with (as its Config tab and `imori show
# --config` give them), not the nominal ones its search started from.
configs = {i: queries.trained_settings(details[i].config, details[i].search) for i in chosen}
keys = sorted(set().union(*[set(c) for c in configs.values()]))
results = {
    "status": {i: details[i].status for i in chosen},
    "best val accuracy": {i: fmt.pct(details[i].best_val_accuracy, 2) for i in chosen},
    "test accuracy": {i: fmt.pct(details[i].test_accuracy, 2) for i in chosen},
    "test loss": {i: fmt.num(details[i].test_loss) for i in chosen},
    "steps": {i: f"{details[i].step:,}" for i in chosen},
    "duration": {i: fmt.duration(fmt.elapsed(details[i])) for i in chosen},
}
rows = {name: values for name, values in results.items()}
for key in keys:
    rows[key] = {i: fmt.plain(configs[i].get(key)) for i in chosen}
frame = pd.DataFrame.from_dict(rows, orient="index")
frame.columns = [labels[i] for i in chosen]
differs = frame.nunique(axis=1) > 1
only = st.toggle("Only what differs", value=True, key="compare_only_diff", persist_state="session")
shown = frame[differs | frame.index.isin(list(results))] if only else frame
st.caption(f"{int(differs[~frame.index.isin(list(results))].sum())} settings differ (highlighted).")


def highlight(row: pd.Series) -> list[str]:
    return ["background-color: rgba(255, 196, 0, 0.28)" if differs.get(row.name, False) else "" for _ in row]


st.dataframe(shown.style.apply(highlight, axis=1), height=min(35 * (len(shown) + 1) + 12, 760))


# -- image by image ----------------------------------------------------------------------------

if len(chosen) < 2:
    st.stop()
st.subheader("Image by image")
st.caption("Both runs' checkpoints on the same images (matched by their bytes' SHA-256): what B fixed, what it "
           "broke, what both get wrong, and McNemar's exact test on where they disagree.")
pick_a, pick_b, pick_data, pick_split = st.columns([3, 3, 3, 2])
run_a = pick_a.selectbox("A (before)", chosen, index=0, key="compare_diff_a", format_func=lambda i: labels[i])
others = [i for i in chosen if i != run_a] or chosen
run_b = pick_b.selectbox("B (after)", others, index=0, key="compare_diff_b", format_func=lambda i: labels[i])
trained_on = str(configs[run_a].get("dataset") or "")
names = [n for n in dict.fromkeys([trained_on, *(d.name for d in loading.all_datasets())]) if n]
dataset = pick_data.selectbox("Dataset", names, index=0, key="compare_diff_dataset")
split = pick_split.segmented_control("Split", ["test", "train"], default="test", key="compare_diff_split") or "test"
subject = diff_job.subject(run_a, run_b)
wanted_params = diff_job.params(run_a, run_b, dataset, split)
if st.button("Compare image by image", key="compare_diff_go", icon=":material/compare:",
             disabled=run_a == run_b or not dataset or jobs.busy(DIFF, subject)):
    if jobs.submit(DIFF, subject, wanted_params) is not None:
        st.rerun()
jobs.job_view(DIFF, subject, f"Comparing {labels[run_a]} with {labels[run_b]}")


@st.cache_resource(max_entries=2, show_spinner="Loading the images…")
def split_images(checkpoint: str, dataset: str, split: str) -> Any:
    """The uint8 images of a split as ``checkpoint`` saw them (for images without a file)."""
    predictor = loading.cached_predictor(checkpoint)
    data = load_dataset(dataset, predictor.preprocessing, seed=int(predictor.checkpoint.config.get("seed", 0)))
    return {"test": data.test, "train": data.train}[split].images


def picture(entry: dict[str, Any], result: RunDiff) -> Any:
    """An image of the diff, for a thumbnail: its file, else the split's decoded image."""
    if Path(entry["path"]).is_file():
        return loading.upscale(Image.open(entry["path"]))
    checkpoint = result.b_checkpoint if entry["a"] is None else result.a_checkpoint
    return loading.tensor_to_image(split_images(checkpoint, result.dataset, result.split)[entry["index"]])


def answer(side: dict[str, Any] | None) -> str:
    return f"{side['class']} ({100 * side['confidence']:.0f} %)" if side else "–"


def grid(entries: list[dict[str, Any]], result: RunDiff, what: str) -> None:
    """Thumbnails, six a row, each with its truth and both answers."""
    if not entries:
        st.caption(f"No image {what}.")
        return
    for start in range(0, min(len(entries), DIFF_SHOWN), 6):
        for column, entry in zip(st.columns(6), entries[start:start + 6]):
            column.image(picture(entry, result), width="stretch")
            column.caption(f"**{Path(entry['path']).name}** · truth {entry['truth']}  \n"
                           f"A: {answer(entry['a'])} · B: {answer(entry['b'])}")
    if len(entries) > DIFF_SHOWN:
        st.caption(f"The {DIFF_SHOWN} most confident of {len(entries)} shown; `imori diff {result.a.split()[0].lstrip('#')} "
                   f"{result.b.split()[0].lstrip('#')} --json` lists them all.")


done = jobs.latest(DIFF, subject)
if done is not None and done.status == SUCCEEDED and done.result and done.params == wanted_params:
    result = RunDiff.from_dict(done.result)
    figures, beside = st.columns([3, 2])
    with figures:
        n = max(result.matched, 1)
        a_col, b_col, p_col = st.columns(3)
        # A is the reference: its figure alone; only B has a change (against A).
        a_col.metric("A right", f"{result.a_correct} / {result.matched}",
                     help=f"{100 * result.a_correct / n:.1f} % of the images both runs were evaluated on")
        b_col.metric("B right", f"{result.b_correct} / {result.matched}",
                     f"{100 * (result.b_correct - result.a_correct) / n:+.1f} points vs A",
                     delta_color="normal" if result.b_correct != result.a_correct else "off",  # no green for no change
                     help=f"{100 * result.b_correct / n:.1f} % of the images both runs were evaluated on")
        p_col.metric("McNemar's exact p", f"{result.p_value:.3g}",
                     help="Two-sided exact test on the images one run gets right and the other wrong: the chance of a "
                          "split at least this uneven if both runs were equally good.")
        verdict = ("more than chance (p < 0.05)" if result.p_value < 0.05 else "could be chance (p ≥ 0.05)")
        st.caption(f"B fixed {len(result.fixed)} and broke {len(result.broken)}: {verdict}."
                   + (f" {plural(len(result.only_a), 'image')} only in A's split, {len(result.only_b)} only in B's."
                      if result.only_a or result.only_b else ""))
    with beside:
        if result.settings:
            st.dataframe(pd.DataFrame([{"setting": k, "A": fmt.plain(v[0]), "B": fmt.plain(v[1])}
                                       for k, v in result.settings.items()]).set_index("setting"))
        else:
            st.caption("The two runs have the same settings.")
    fixed_tab, broken_tab, wrong_tab = st.tabs([f"Fixed ({len(result.fixed)})", f"Broken ({len(result.broken)})",
                                                 f"Both wrong ({len(result.both_wrong)})"])
    with fixed_tab:
        grid(result.fixed, result, "that B fixed")
    with broken_tab:
        grid(result.broken, result, "that B broke")
    with wrong_tab:
        grid(result.both_wrong, result, "that both get wrong")
