"""Compare: overlay several runs' curves; their settings and best metrics side by side,
what differs highlighted."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.records import queries
from core.status import QUEUED
from dashboard import charts, fmt, live, nav

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
configs = {i: details[i].config or {} for i in chosen}
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
