"""Runs: every run with its progress, live while anything trains; cancel, clone, continue,
delete; the workers and what each trains."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.records import queries
from dashboard import widgets


def table(runs, notes) -> pd.DataFrame:
    rows = []
    for r in runs:
        if r.status == "queued":
            note = notes.get(r.id, "")
        elif r.status == "running" and r.cancel_requested:
            note = "cancelling…"
        elif r.status == "failed":
            note = widgets.first_line(r.error)
        else:
            note = ""
        rows.append(
            {
                "run": r.id,
                "name": r.name,
                "status": r.status,
                "progress": r.progress or 0.0,
                "step": f"{r.step:,} / {r.total_steps:,}" if r.total_steps else f"{r.step:,}",
                "ETA": widgets.duration(r.eta_seconds) if r.status == "running" else "",
                "best val acc": r.best_val_accuracy,
                "test acc": r.test_accuracy,
                "device": r.device or "",
                "duration": widgets.duration(widgets.elapsed(r)) if r.started_at else "",
                "note": note,
            }
        )
    return pd.DataFrame(rows)


COLUMNS = {
    "run": st.column_config.NumberColumn("run", format="%d", width="small"),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
    "best val acc": st.column_config.NumberColumn("best val acc", format="percent"),
    "test acc": st.column_config.NumberColumn("test acc", format="percent"),
    "note": st.column_config.TextColumn("queue / note", width="large"),
}


def status_color(status: str) -> str:
    return f"color: {widgets.STATUS_HEX.get(status, '#444')}; font-weight: 600"


def devices_of(queued) -> dict[int, str]:
    out = {}
    for r in queued:
        try:
            out[r.id] = (queries.get_run(r.id).config or {}).get("device", "auto")
        except Exception:  # noqa: BLE001 - deleted meanwhile
            continue
    return out


st.title("Runs")
runs_now = queries.list_runs(limit=500)
live_at_start = any(r.status in widgets.ACTIVE for r in runs_now)
statuses_at_start = {r.id: r.status for r in runs_now}


@st.fragment(run_every=widgets.REFRESH if live_at_start else None)
def live_table() -> None:
    runs = queries.list_runs(limit=500)
    active = any(r.status in widgets.ACTIVE for r in runs)
    if {r.id: r.status for r in runs} != statuses_at_start:
        # A run started, finished, appeared or went: redraw the whole page once (its
        # buttons too); when nothing is left running, without the timer.
        st.rerun()
    live, offline = widgets.workers()
    queued = [r for r in runs if r.status == "queued"]
    notes = widgets.queue_notes(queued, devices_of(queued), live, offline)
    counts = {s: sum(1 for r in runs if r.status == s) for s in widgets.STATUS_ICONS}
    cols = st.columns(len(counts))
    for col, (status, n) in zip(cols, counts.items()):
        col.metric(widgets.status_label(status), n)
    if not runs:
        st.info("No runs yet. Queue one from **New run**.", icon=":material/info:")
        st.page_link(widgets.NEW_RUN, label="New run", icon=":material/add_circle:")
    else:
        frame = table(runs, notes)
        st.dataframe(frame.style.map(status_color, subset=["status"]), hide_index=True, column_config=COLUMNS,
                     key="runs_table")
        if active:
            st.caption(f"Refreshing every {widgets.REFRESH} while runs are queued or running.")


live_table()

if runs_now:
    st.subheader("Manage a run")
    run = widgets.run_picker(runs_now, key="runs_pick")
    if run is not None:
        run = queries.get_run(run.id)
        open_col, cancel_col, clone_col, cont_col, delete_col = st.columns(5, vertical_alignment="bottom")
        if open_col.button("Open", icon=":material/monitoring:", key="runs_open", width="stretch"):
            st.switch_page(widgets.RUN_DETAIL, query_params={"run": run.id})
        if cancel_col.button("Cancel", icon=":material/stop:", key="runs_cancel", width="stretch",
                             disabled=run.status not in widgets.ACTIVE):
            from worker import client

            with widgets.user_errors():
                status = client.cancel(run.id)
                st.toast(f"Run {run.id}: {'cancelled' if status == 'cancelled' else 'stopping after this iteration'}")
                st.rerun()
        if clone_col.button("Clone", icon=":material/content_copy:", key="runs_clone", width="stretch",
                            help="A new queued run with the same settings"):
            from worker import client

            with widgets.user_errors("Not cloned: "):
                new_id = client.clone(run.id)
                st.session_state.runs_message = f"Run {run.id} cloned as run {new_id} (queued)."
                st.rerun()
        if run.status in ("succeeded", "failed", "cancelled"):
            config = run.config or {}
            unit = "epochs" if config.get("epochs") is not None else "iterations"
            current = config.get(unit) or 1
            if run.status == "succeeded":
                suggested = current + (1 if unit == "epochs" else (run.steps_per_epoch or 100))
            else:
                suggested = current
            with cont_col.popover("Continue", icon=":material/fast_forward:", width="stretch"):
                total = st.number_input(f"Train to this many {unit} in total", min_value=1, value=int(suggested),
                                        step=1, key="runs_continue_total")
                if st.button("Queue it again", key="runs_continue", type="primary"):
                    from worker import client

                    with widgets.user_errors("Not continued: "):
                        client.continue_run(run.id, **{unit: int(total)})
                        st.session_state.runs_message = f"Run {run.id} queued again to train to {int(total)} {unit}."
                        st.rerun()
        else:
            cont_col.button("Continue", icon=":material/fast_forward:", disabled=True, key="runs_continue_off",
                            width="stretch", help="Only a finished, failed or cancelled run can continue")
        if delete_col.button("Delete", icon=":material/delete:", key="runs_delete", width="stretch",
                             disabled=run.status == "running",
                             help="Cancel a running run first" if run.status == "running" else None):
            st.session_state.runs_confirm_delete = run.id
        if st.session_state.get("runs_confirm_delete") == run.id:
            with st.container(border=True):
                st.warning(f"Delete run {run.id} ({run.name}), its metrics and its checkpoints? This cannot be undone.",
                           icon=":material/delete:")
                yes, no = st.columns(2)
                if yes.button(f"Yes, delete run {run.id}", type="primary", key="runs_delete_yes"):
                    from core.records import store

                    with widgets.user_errors("Not deleted: "):
                        store.delete_run(run.id, remove_files=True)
                        st.session_state.runs_confirm_delete = None
                        st.session_state.runs_message = f"Run {run.id} deleted with its checkpoints."
                        st.rerun()
                if no.button("Keep it", key="runs_delete_no"):
                    st.session_state.runs_confirm_delete = None
                    st.rerun()
        message = st.session_state.pop("runs_message", None)
        if message:
            st.success(message, icon=":material/check_circle:")


@st.fragment(run_every=widgets.REFRESH if live_at_start else None)
def live_workers() -> None:
    live, offline = widgets.workers()
    st.subheader("Workers")
    if offline:
        st.warning(f"{offline}. Start the stack with `imori up` (or Redis and `imori worker`).", icon=":material/warning:")
    elif not live:
        st.info("No worker is running: queued runs wait for one. Start one with `imori worker`.", icon=":material/info:")
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "worker": w.name,
                        "device": w.device,
                        "hardware": w.device_name,
                        "threads": w.threads,
                        "queues": ", ".join(w.queues),
                        "training": f"run {w.run_id}" if w.run_id else "idle",
                    }
                    for w in live
                ]
            ),
            hide_index=True,
        )


live_workers()
