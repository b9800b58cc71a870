"""Run detail: live charts (only the chart fragment reruns), config, model, environment,
log, checkpoints with downloads, metrics as CSV, the error of a failed run."""

from __future__ import annotations

import time
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from core.calibration import set_operating_point
from core.errors import ImoriError
from core.jobs.kinds import CALIBRATE, EXPORT
from core.records import checkpoints as checkpoint_records
from core.records import queries, store
from core.selection import default_checkpoint
from core.status import FAILED, RUNNING, SUCCEEDED
from dashboard import charts, fmt, jobs, live, loading, nav
from dashboard import search as auto_search
from worker import client

COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}

head, badge = st.columns([8, 1], vertical_alignment="center")
picked = nav.run_picker(key="detail_run")
if picked is None:
    head.title("Run detail")
    if queries.count_runs() == 0:
        st.info("No runs yet. Queue one from **New run**.", icon=":material/info:")
        st.page_link(nav.NEW_RUN, label="New run", icon=":material/add_circle:")
    st.stop()
run = queries.get_run(picked.id)

head.title(f"Run {run.id} · {run.name}")
with badge:
    fmt.status_badge(run.status)

actions = st.container(horizontal=True, vertical_alignment="center")
if run.status in live.ACTIVE:
    if actions.button("Cancel run", icon=":material/stop:", key="detail_cancel"):
        with fmt.user_errors():
            client.cancel(run.id)
            st.rerun()
if actions.button("Clone", icon=":material/content_copy:", key="detail_clone", help="A new queued run with these settings"):
    with fmt.user_errors("Not cloned: "):
        new_id = client.clone(run.id)
        st.switch_page(nav.RUN_DETAIL, query_params={"run": new_id})
if run.checkpoints:
    actions.page_link(nav.PREDICT, label="Predict with it", icon=":material/image_search:",
                      query_params={"run": run.id})
actions.page_link(nav.COMPARE, label="Compare", icon=":material/compare_arrows:", query_params={"runs": run.id})


def save_tags_and_note(run_id: int) -> None:
    """The editor's tags and note into the records (a callback: before the page redraws)."""
    s = st.session_state
    chosen = [t.strip() for chip in s.get(f"detail_tags_{run_id}") or [] for t in str(chip).split(",") if t.strip()]
    try:
        current = set(queries.get_run(run_id).tags)
        store.tag_runs([run_id], add=[t for t in chosen if t not in current],
                       remove=[t for t in current if t not in chosen])
        store.set_note(run_id, s.get(f"detail_note_{run_id}"))
        s.detail_saved = (run_id, None)
    except ImoriError as err:
        s.detail_saved = (run_id, str(err))


with st.expander(("Tags: " + ", ".join(run.tags) if run.tags else "Tags and note")
                 + (" · " + fmt.first_line(run.note, 60) if run.note else ""), icon=":material/sell:",
                 expanded=bool(run.note or run.tags)):
    tag_key, note_key = f"detail_tags_{run.id}", f"detail_note_{run.id}"
    if tag_key not in st.session_state:
        st.session_state[tag_key] = list(run.tags)
    if note_key not in st.session_state:
        st.session_state[note_key] = run.note or ""
    known_tags = sorted(set(queries.run_tags()) | set(st.session_state[tag_key]))
    st.multiselect("Tags", known_tags, key=tag_key, accept_new_options=True, placeholder="type a tag and press Enter",
                   help="Find runs by tag on the Runs page (or `imori runs --tag T`).")
    st.text_area("Note", key=note_key, height=90, max_chars=10_000,
                 placeholder="what this run tried, what you learnt from it")
    st.button("Save tags and note", key="detail_save", on_click=save_tags_and_note, args=(run.id,),
              icon=":material/save:")
    saved = st.session_state.pop("detail_saved", None)
    if saved and saved[0] == run.id:
        if saved[1]:
            st.error(f"Not saved: {saved[1]}", icon=":material/warning:")
        else:
            st.toast(f"Run {run.id}: tags and note saved")

x_kind, smoothing, log = charts.chart_controls("detail")
is_auto = run.search is not None or run.config.get("recipe") == "auto"


def search_now(current) -> dict | None:
    """An automatic run's search: the tick's own read while it runs (it changes as the
    search goes: ``live_run`` reads it in its first statement), the page's read otherwise."""
    if is_auto and current.status == RUNNING:
        return current.search
    return run.search


def progress_now(current, search: dict | None) -> tuple[float, float | None, str]:
    """(done 0..1, seconds left, the bar's text) of a running run: an automatic run's whole
    search by its deadline, another run's steps at the recent speed."""
    if search is not None:
        return auto_search.progress(search)
    return (current.progress or 0.0, current.eta_seconds,
            f"{fmt.pct(current.progress, 0)} · {fmt.num(current.steps_per_second, 3)} it/s")


def chart_specs(now: queries.LiveRun, x_kind: str, smoothing: float, log: bool) -> list[dict]:
    """The loss, accuracy and learning-rate charts as Vega-Lite specs (the costly part of a
    tick: Altair builds and serialises them), ready for ``st.vega_lite_chart``."""
    current, series, evals = now.run, now.series, now.evals
    spe = current.steps_per_epoch
    t0 = current.started_at.timestamp() if current.started_at else None
    x_title = charts.X_TITLES[x_kind]
    markers = charts.phase_markers(run.config, spe, x_kind)
    specs = [
        charts.line_chart(
            charts.series_frame(series, metric, x=x_kind, steps_per_epoch=spe, t0=t0, smoothing=smoothing),
            charts.eval_frame(evals, metric, x=x_kind, steps_per_epoch=spe, t0=t0),
            x_title=x_title, y_title=metric, log=log, percent=metric == "accuracy", colors=COLORS, markers=markers,
        )
        for metric in ("loss", "accuracy")
    ]
    specs.append(charts.line_chart(
        charts.series_frame(series, "lr", x=x_kind, steps_per_epoch=spe, t0=t0, smoothing=0.0, label="lr"),
        x_title=x_title, y_title="learning rate", log=log, height=160, colors={"lr": "#9467bd"}, markers=markers,
    ))
    return [chart.to_dict() for chart in specs]


# What a watched run costs (bench/dashboard_cpu.py): the figures redraw every couple of
# seconds (one statement), the charts only as often as live.chart_every allows and only when
# the run recorded something since (building them is most of a redraw's CPU).
PAGE_RUN = object()  # each full run of the page draws its charts anew
DRAWN_KEY, PACE_KEY = f"rd_drawn_{run.id}", f"rd_pace_{run.id}"


def paces(current) -> tuple[float, float]:
    """(seconds between the figures' redraws, between the charts') for the run as it is now."""
    every = live.refresh_every(current.steps_per_second, current.eta_seconds,
                               in_stage=getattr(current, "stage", None) is not None)
    build_s = (st.session_state.get(DRAWN_KEY) or {}).get("build_s", 0.0)
    return every, live.chart_every(every, build_s, current.eta_seconds)


EVERY, CHARTS_EVERY = st.session_state.get(PACE_KEY) or paces(run)


def keep_pace(current) -> None:
    """The page again, its live parts at the run's new pace, when it changed twofold."""
    wanted = paces(current)
    if current.status == RUNNING and any(not have / 2 < want < have * 2
                                         for have, want in zip((EVERY, CHARTS_EVERY), wanted)):
        st.session_state[PACE_KEY] = wanted
        st.rerun()


@live.fragment(lambda: run.status, every=EVERY)
def progress_view() -> None:
    """The run's figures, its progress (or its stage's) and an automatic run's search: one
    statement a tick, every 2 s, or slower for a slow or long run (``live.refresh_every``)."""
    current = queries.live_run(run.id, series=False).run
    if current.status != run.status:
        st.rerun()  # started or finished: the whole page, once
    keep_pace(current)
    total = current.total_steps
    search = search_now(current)
    done, eta, progress_text = progress_now(current, search)
    cols = st.columns(5)
    probe = queries.probe_winner(current)
    if probe is not None:  # fitted on features: "Step 0 / Epoch 0" would say it did nothing
        backbone = probe.partition(":")[2].strip()
        cols[0].metric("Winner", "Linear probe", help=f"The search's winner: {probe}.")
        cols[1].metric("Training steps", "None", help=f"A linear probe is fitted on {backbone or 'the backbone'}'s "
                       "features: no training steps, no epochs.")
    else:
        cols[0].metric("Step", f"{current.step:,}" + (f" / {total:,}" if total else ""))
        cols[1].metric("Epoch", current.epoch)
    cols[2].metric("Best val accuracy", fmt.pct(current.best_val_accuracy))
    cols[3].metric("Test accuracy", fmt.pct(current.test_accuracy))
    if current.status == RUNNING:
        cols[4].metric("ETA" + (" (whole search)" if search is not None else ""), fmt.duration(eta))
    else:
        cols[4].metric("Duration", fmt.duration(fmt.elapsed(current)))
    if current.stage is not None:  # a long stage before (or between) the iterations: what it does, how far
        stage = current.stage
        st.progress(min(1.0, stage.done / stage.total) if stage.total else 0.0, text=stage.describe())
    elif current.status in live.ACTIVE:
        st.progress(min(1.0, done), text=progress_text if current.status == RUNNING else "queued: waiting for a worker")
    if current.status == RUNNING and current.cancel_requested:
        st.info("Cancel requested: the run stops after this iteration and keeps a checkpoint.", icon=":material/stop_circle:")
    if search is not None:
        with st.container(border=True):
            auto_search.search_view(search, active=current.status in live.ACTIVE)


@live.fragment(lambda: run.status, every=CHARTS_EVERY)
def charts_view() -> None:
    """The loss, accuracy and learning-rate charts and the evaluations: read (two statements
    more) and built again only when the run recorded something since they were drawn."""
    drawn = st.session_state.get(DRAWN_KEY)
    controls = (x_kind, smoothing, log)
    fresh = drawn is None or drawn["page"] is not PAGE_RUN or drawn["controls"] != controls
    now = queries.live_run(run.id, max_points=1000, since=None if fresh else drawn["live"])
    if now.run.status != run.status:
        st.rerun()
    if fresh or now.recorded != drawn["live"].recorded:
        started = time.monotonic()
        specs = chart_specs(now, x_kind, smoothing, log) if len(now.series) else []
        drawn = {"page": PAGE_RUN, "controls": controls, "live": now, "specs": specs,
                 "build_s": time.monotonic() - started}
        st.session_state[DRAWN_KEY] = drawn
        keep_pace(now.run)  # drawing is slow on this machine: its charts redrawn less often
    current, series, evals = now.run, now.series, now.evals
    if now.not_learning:
        st.warning(queries.not_learning_advice(queries.trained_settings(run.config, run.search)),
                   icon=":material/trending_flat:")
    total = current.total_steps
    redraws = ""
    if current.status in live.ACTIVE:
        redraws = (f" · figures refreshed every {EVERY:.0f} s, the charts every {CHARTS_EVERY:.0f} s when something "
                   "new was recorded")
    st.caption(f"step {current.step:,}" + (f" of {total:,}" if total else "") +
               f" · {len(series)} chart points" + (f" (each the mean of up to {series.width} steps)" if series.width > 1 else "")
               + redraws)
    if not drawn["specs"]:
        if current.stage is not None:
            return  # the stage's bar says what the run does before its first iteration
        st.info("No iterations recorded yet." if current.status in live.ACTIVE else "This run recorded no iterations.",
                icon=":material/hourglass_top:" if current.status in live.ACTIVE else ":material/info:")
        return
    if charts.phase_markers(run.config, current.steps_per_epoch, x_kind):
        st.caption("The dashed line marks where the backbone joins training: before it, only the new head "
                   "trained, on the frozen backbone's features.")
    loss_spec, accuracy_spec, lr_spec = drawn["specs"]
    for column, metric, spec in zip(st.columns(2), ("loss", "accuracy"), (loss_spec, accuracy_spec)):
        with column:
            st.markdown(f"**{metric.capitalize()}**")
            st.vega_lite_chart(spec, width="stretch")
    st.markdown("**Learning rate**")
    st.vega_lite_chart(lr_spec, width="stretch")
    latest = next((e for e in reversed(evals) if e.split == "test" and e.per_class), None) or next(
        (e for e in reversed(evals) if e.per_class), None)
    if latest is not None:
        split = "test" if latest.split == "test" else "validation"
        st.markdown(f"**Per-class precision, recall and F1** ({split} split, epoch {latest.epoch}, "
                    f"{latest.count:,} images; balanced accuracy {fmt.pct(latest.balanced_accuracy)})")
        charts.class_metrics_table(latest.per_class, key="rd_class_metrics")
    if evals:
        with st.expander("Per-epoch evaluations"):
            st.dataframe(
                pd.DataFrame([e.to_dict() for e in evals]).drop(columns=["time", "per_class"]),
                hide_index=True,
                column_config={"accuracy": st.column_config.NumberColumn(format="percent"),
                               "balanced_accuracy": st.column_config.NumberColumn("balanced accuracy", format="percent")},
            )


for warning in loading.health_warnings(loading.dataset_health(run.dataset or run.config.get("dataset", ""))):
    if warning.startswith("test accuracy"):
        st.warning(f"**{run.dataset}**: {warning} (its Health tab on Datasets names them).", icon=":material/warning:")
progress_view()
charts_view()

if run.status == FAILED and run.error:
    st.error(f"**This run failed:** {fmt.first_line(run.error, 400)}", icon=":material/error:")
    if "\n" in run.error.strip():
        with st.expander("Full error"):
            st.code(run.error, language=None)

config_tab, model_tab, env_tab, log_tab, ckpt_tab, csv_tab = st.tabs(
    ["Config", "Model", "Environment", "Log", "Checkpoints", "Metrics CSV"]
)
with config_tab:
    config = run.config or {}
    st.dataframe(
        pd.DataFrame({"setting": list(config), "value": [fmt.plain(v) for v in config.values()]}),
        hide_index=True, height=min(35 * (len(config) + 1) + 3, 600),
    )
    trained_with = (run.search or {}).get("trained_with")
    if trained_with:
        # The run's own settings above are what a clone searches again; these are the winner's.
        st.markdown(f"**What the search's winner trained with** ({(run.search or {}).get('winner') or 'the winner'}; "
                    "its checkpoint carries these)")
        st.dataframe(
            pd.DataFrame({"setting": list(trained_with), "value": [fmt.plain(v) for v in trained_with.values()]}),
            hide_index=True, height=min(35 * (len(trained_with) + 1) + 3, 600), key="trained_with",
        )
    if run.classes:
        st.caption(f"{len(run.classes)} classes: " + ", ".join(map(str, run.classes[:50])) +
                   (" …" if len(run.classes) > 50 else ""))
with model_tab:
    summary = run.model_summary
    if not summary:
        st.caption("Recorded when the run starts.")
    else:
        st.metric("Parameters", f"{summary.get('total', 0):,}",
                  help=f"{summary.get('trainable', 0):,} trainable")
        st.dataframe(
            pd.DataFrame(
                [
                    {"parameter": r["name"], "shape": "x".join(map(str, r["shape"])) or "scalar",
                     "count": r["numel"], "trainable": r["trainable"]}
                    for r in summary.get("rows", [])
                ]
            ),
            hide_index=True,
        )
with env_tab:
    if run.environment:
        st.json(run.environment)
    else:
        st.caption("Recorded when the run starts.")
    st.caption(f"worker: {run.worker or '—'} · device: {run.device or '—'} · attempt {run.attempt} · "
               f"folder: {run.run_dir or '—'}")
with log_tab:
    lines = queries.run_logs(run.id, limit=2000)
    if lines:
        st.code("\n".join(f"[attempt {line.attempt}] {line.message}" for line in lines), language=None)
    else:
        st.caption("Nothing logged yet: the log starts when a worker starts the run."
                   if run.status in live.ACTIVE else "This run logged nothing (it never started).")
def calibration_view(row, calibration: dict) -> None:
    """A calibrated checkpoint's reliability diagram, before and after temperature scaling."""
    points = [{"when": when, "confidence": b["confidence"], "accuracy": b["accuracy"], "images": b["count"]}
              for when, bins in (("as trained", calibration["reliability_before"]),
                                 (f"T = {calibration['temperature']:.2f}", calibration["reliability_after"]))
              for b in bins if b["count"]]
    with st.container(border=True):
        test = calibration.get("ece_test_before")
        st.markdown(f"**Calibration of {fmt.checkpoint_label(row)}**: temperature {calibration['temperature']:.3f}; "
                    f"expected calibration error on the {'test' if test is not None else 'validation'} split "
                    f"{fmt.pct(test if test is not None else calibration['ece_val_before'])} → "
                    f"{fmt.pct(calibration['ece_test_after'] if test is not None else calibration['ece_val_after'])} "
                    f"({calibration.get('bins', 15)} bins)")
        frame = pd.DataFrame(points)
        diagonal = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(strokeDash=[4, 4], color="#999").encode(
            x="x:Q", y="y:Q")
        dots = alt.Chart(frame).mark_line(point=True).encode(
            x=alt.X("confidence:Q", scale=alt.Scale(domain=[0, 1]), title="confidence (mean of the bin)"),
            y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy"),
            color=alt.Color("when:N", title=None), tooltip=["when", "confidence", "accuracy", "images"])
        st.altair_chart((diagonal + dots).properties(height=260), width="stretch")
        if calibration.get("pr_curves"):
            operating_points_view(row, calibration)


def operating_points_view(row, calibration: dict) -> None:
    """Each class's precision-recall curve on the validation split (one class against the
    rest, at the fitted temperature), and a decision threshold chosen by a target recall
    or precision: stored with the calibration, used by Predict, imori predict and exports."""
    curves, thresholds = calibration["pr_curves"], calibration.get("thresholds") or {}
    st.markdown("**Operating points** (precision and recall of one class against the rest, on the validation split)")
    frame = pd.DataFrame([{"class": cls, "recall": r, "precision": p, "threshold": t}
                          for cls, c in curves.items() for t, p, r in zip(c["threshold"], c["precision"], c["recall"])])
    chosen = pd.DataFrame([{"class": cls, "recall": p["recall"], "precision": p["precision"], "threshold": p["threshold"]}
                           for cls, p in thresholds.items()])
    lines = alt.Chart(frame).mark_line(interpolate="step-after").encode(
        x=alt.X("recall:Q", scale=alt.Scale(domain=[0, 1])), y=alt.Y("precision:Q", scale=alt.Scale(domain=[0, 1.02])),
        color=alt.Color("class:N"), tooltip=["class", "threshold", "precision", "recall"])
    chart = lines if chosen.empty else lines + alt.Chart(chosen).mark_point(size=120, filled=True, shape="diamond").encode(
        x="recall:Q", y="precision:Q", color="class:N", tooltip=["class", "threshold", "precision", "recall"])
    st.altair_chart(chart.properties(height=260), width="stretch")
    st.caption(" · ".join(f"{cls}: average precision {fmt.pct(c['average_precision'])} ({c['positives']} of "
                          f"{c['images']} images)" for cls, c in curves.items()))
    for cls, p in thresholds.items():
        st.markdown(f"Decides **{cls}** when p({cls}) ≥ {p['threshold']:.3f}: recall {fmt.pct(p['recall'])}, "
                    f"precision {fmt.pct(p['precision'])} on the validation split (target {p['by']} "
                    f"{fmt.pct(p['target'])})")
        if p.get("warning"):
            st.warning(f"{cls}: {p['warning']}")
    key = f"rd_op_{row.path}"
    which, by, target, go, clear = st.columns([3, 2, 2, 1, 1], vertical_alignment="bottom")
    cls = which.selectbox("Class", list(curves), key=f"{key}_class")
    by_name = by.selectbox("Chosen by", ["recall", "precision"], key=f"{key}_by",
                           help="A target recall misses at most that share of the class (inspection: find every defect); "
                                "a target precision is wrong at most that often when it says the class.")
    value = target.number_input(f"Target {by_name} (%)", min_value=1.0, max_value=100.0, value=95.0, step=1.0,
                                key=f"{key}_target")
    if go.button("Set", key=f"{key}_set", icon=":material/tune:"):
        with fmt.user_errors("Not set: "):
            set_operating_point(row.path, cls, **{f"target_{by_name}": value / 100})
            st.rerun()
    if clear.button("Clear", key=f"{key}_clear", disabled=cls not in thresholds, help="Decide by the top probability again"):
        set_operating_point(row.path, cls)
        st.rerun()


def calibrate_view(rows) -> None:
    """Calibrate a checkpoint on a worker: the temperature, the reliability diagram and the
    precision-recall curves come from its validation split."""
    paths = {r.path: fmt.checkpoint_label(r) for r in rows if Path(r.path).is_file()}
    if not paths:
        return
    with st.container(border=True):
        st.markdown("**Calibrate** (fits a temperature on the validation split so that 70 % means right 7 times in 10)")
        pick, go = st.columns([4, 1], vertical_alignment="bottom")
        chosen = pick.selectbox("Checkpoint", list(paths), format_func=paths.get, key="rd_calibrate_ckpt")
        if go.button("Calibrate", key="rd_calibrate", icon=":material/balance:", disabled=jobs.busy(CALIBRATE, chosen)):
            if jobs.submit(CALIBRATE, chosen) is not None:
                st.rerun()
        jobs.job_view(CALIBRATE, chosen, f"Calibrating {Path(chosen).name}")


def export_view(exportable: dict[str, str]) -> None:
    """ONNX and torch.export's .pt2, each checked against PyTorch on the run's test split
    before it is offered (core.export), as a ZIP with its preprocess.json."""
    with st.container(border=True):
        st.markdown("**Export for another program** (checked against PyTorch before it is offered)")
        pick, kind, go = st.columns([3, 2, 1], vertical_alignment="bottom")
        chosen = pick.selectbox("Checkpoint", list(exportable), format_func=exportable.get, key="rd_export_ckpt")
        fmt_name = kind.selectbox("Format", ["onnx", "pt2", "onnx-int8"], key="rd_export_format",
                                  format_func={"onnx": "ONNX (ONNX Runtime, other apps)", "pt2": "torch.export .pt2",
                                               "onnx-int8": "ONNX INT8 (smaller; checked against the float model)"}.get)
        if go.button("Export", key="rd_export", icon=":material/output:", disabled=jobs.busy(EXPORT, chosen)):
            if jobs.submit(EXPORT, chosen, {"format": fmt_name}, run_id=run.id) is not None:
                st.rerun()
        done = jobs.latest(EXPORT, chosen)
        if done is not None and done.status == SUCCEEDED and done.params.get("format") == fmt_name:
            archive = loading.under_home(done.result["zip"])
            if archive is not None:
                st.success(f"Checked against PyTorch: {done.result['parity']}", icon=":material/verified:")
                if done.result.get("int8"):  # agreement, both accuracies, bytes, ms per image
                    st.success(f"Checked against the float model: {done.result['int8']}", icon=":material/compress:")
                if done.result.get("note"):
                    st.caption(done.result["note"])
                st.download_button(f"Download the {fmt_name} export (ZIP, with preprocess.json)",
                                   loading.file_reader(archive),
                                   file_name=f"run{run.id}-{Path(chosen).stem}-{fmt_name}.zip", mime="application/zip",
                                   key="rd_export_download", on_click="ignore", icon=":material/download:")
        jobs.job_view(EXPORT, chosen, f"Exporting {Path(chosen).name}")


with ckpt_tab:
    rows = checkpoint_records.checkpoints(run.id)
    if not rows:
        st.caption("No checkpoints yet: one is written after each epoch (and on cancel).")
    for row in sorted(rows, key=lambda r: (not r.is_best, -r.step)):
        path = loading.under_home(row.path)
        with st.container(border=True):
            text, imori_col, bare_col = st.columns([3, 1, 1], vertical_alignment="center")
            metrics = row.metrics or {}
            text.markdown(
                f"**{':material/star: best — ' if row.is_best else ''}{fmt.checkpoint_label(row)}**  \n"
                + " · ".join(f"{k.replace('_', ' ')} {fmt.pct(v) if 'accuracy' in k else fmt.num(v)}"
                             for k, v in metrics.items())
            )
            if path is None:
                text.caption("file missing, or outside IMORI_HOME: not offered for download")
                continue
            stem = f"run{run.id}-{path.stem}"
            imori_col.download_button("imori checkpoint", loading.file_reader(path), file_name=f"{stem}.pt",
                                      mime="application/octet-stream", key=f"dl_{row.path}", on_click="ignore",
                                      icon=":material/download:", help="Weights, optimizer and position: resumable")
            bare_col.download_button("bare state_dict", loading.state_dict_reader(path), file_name=f"{stem}-state_dict.pt",
                                     mime="application/octet-stream", key=f"dl_bare_{row.path}", on_click="ignore",
                                     icon=":material/download:",
                                     help="model.load_state_dict(torch.load(...)) in the tutorial's own script")
    calibrated = [(r, checkpoint_records.calibration_of(r.path)) for r in rows]
    # A run's own end stores only its "none of these" threshold: a temperature is a calibration.
    calibrated = [(r, c) for r, c in calibrated if c and c.get("temperature") is not None]
    for row, calibration in calibrated[:2]:
        calibration_view(row, calibration)
    if rows and not calibrated:
        st.caption("Its probabilities are as trained. Calibrating fits a temperature on the validation split; then "
                   "Predict, `imori predict` and every export use it (`imori calibrate CHECKPOINT` does it too).")
    # Calibrate and Export start from the checkpoint Predict uses (core.selection), so that
    # a calibration lands where it is read.

    default = default_checkpoint(run.id)[0] if rows else None
    ordered = sorted(rows, key=lambda r: (r.path != default, not r.is_best, -r.step))
    if rows:
        calibrate_view(ordered)
    exportable = {r.path: fmt.checkpoint_label(r) for r in ordered if loading.under_home(r.path) is not None}
    if exportable:
        export_view(exportable)
with csv_tab:
    a, b = st.columns(2)
    a.download_button("Every iteration (CSV)", lambda: queries.metrics_csv(run.id, kind="steps"),
                      file_name=f"run{run.id}-iterations.csv", mime="text/csv", key="dl_steps_csv", on_click="ignore",
                      icon=":material/download:")
    b.download_button("Every evaluation (CSV)", lambda: queries.metrics_csv(run.id, kind="eval"),
                      file_name=f"run{run.id}-evaluations.csv", mime="text/csv", key="dl_eval_csv", on_click="ignore",
                      icon=":material/download:")
