"""Runs: every run, searched, filtered and paged (any number of them), live while anything
trains; select several to compare, tag, cancel or delete at once; manage one (cancel,
clone, continue, delete); the workers and what each trains."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import date, datetime, time, timedelta, timezone

import pandas as pd
import streamlit as st

from core.records import queries, store
from core.status import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED
from core.text import plural
from dashboard import fmt, live, nav
from worker import client

PER_PAGE = 50
ANY = "any"


def table(runs, notes) -> pd.DataFrame:
    rows = []
    for r in runs:
        if r.status == QUEUED:
            note = notes.get(r.id, "")
        elif r.status == RUNNING and r.cancel_requested:
            note = "cancelling…"
        elif r.status == FAILED:
            note = fmt.first_line(r.error)
        else:
            note = r.note.splitlines()[0] if r.note else ""
        rows.append(
            {
                "run": r.id,
                "name": r.name,
                "status": r.status,
                "progress": r.progress or 0.0,
                "step": f"{r.step:,} / {r.total_steps:,}" if r.total_steps else f"{r.step:,}",
                # Text, so a run with no figure yet shows a dash (the list sorts by them on the server).
                "best val acc": fmt.pct(r.best_val_accuracy),
                "test acc": fmt.pct(r.test_accuracy),
                "tags": ", ".join(r.tags),
                "time": time_text(r),
                "note": note,
            }
        )
    return pd.DataFrame(rows, columns=list(WIDTHS))


def time_text(r) -> str:
    """One column of time: what is left while a run runs, what it took once it ran."""
    if r.status == RUNNING:
        return f"{fmt.duration(r.eta_seconds)} left" if r.eta_seconds is not None else ""
    return fmt.duration(fmt.elapsed(r)) if r.started_at else ""


# Every column's width in pixels: together they fit the wide layout beside the sidebar on a
# 1280-pixel screen, so no column is cut off at the right (the trial lost all past
# "duration"); run and name stay pinned when a narrower window scrolls. The device is on
# the run's page.
WIDTHS = {"run": 50, "name": 170, "status": 85, "progress": 75, "step": 95, "best val acc": 85, "test acc": 75,
          "time": 105, "tags": 80, "note": 150}
FITS_IN = 980  # 1280 less the sidebar and the page's margins

COLUMNS = {
    "run": st.column_config.NumberColumn("run", format="%d", width=WIDTHS["run"], pinned=True),
    "name": st.column_config.TextColumn("name", width=WIDTHS["name"], pinned=True),
    "status": st.column_config.TextColumn("status", width=WIDTHS["status"]),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent",
                                                width=WIDTHS["progress"]),
    "step": st.column_config.TextColumn("step", width=WIDTHS["step"]),
    "best val acc": st.column_config.TextColumn("best val acc", width=WIDTHS["best val acc"]),
    "test acc": st.column_config.TextColumn("test acc", width=WIDTHS["test acc"]),
    "time": st.column_config.TextColumn("time", width=WIDTHS["time"],
                                        help="Running: the time left; finished: how long it ran"),
    "tags": st.column_config.TextColumn("tags", width=WIDTHS["tags"]),
    "note": st.column_config.TextColumn("queue / note", width=WIDTHS["note"]),
}


def status_color(status: str) -> str:
    return f"color: {fmt.STATUS_HEX.get(status, '#444')}; font-weight: 600"


def devices_of(queued) -> dict[int, str]:
    out = {}
    for r in queued:
        try:
            out[r.id] = (queries.get_run(r.id).config or {}).get("device", "auto")
        except Exception:  # noqa: BLE001 - deleted meanwhile
            continue
    return out


def done_with_selection() -> None:
    """After a bulk action: clear the table's ticks (a new table key) and redraw."""
    st.session_state.runs_generation = st.session_state.get("runs_generation", 0) + 1
    st.rerun()


def first_page() -> None:
    st.session_state.runs_page = 1


def go_to_page(number: int) -> None:
    st.session_state.runs_page = max(1, number)


def day_start(d: date, shift: int = 0) -> datetime:
    return datetime.combine(d + timedelta(days=shift), time(), timezone.utc)


def current_filter() -> queries.RunFilter:
    s = st.session_state
    dates = s.get("runs_dates") or ()
    since = day_start(dates[0]) if len(dates) >= 1 else None
    until = day_start(dates[-1], 1) if len(dates) >= 2 else None
    return queries.RunFilter(
        text=(s.get("runs_search") or "").strip() or None,
        status=s.get("runs_status") or None,
        model=None if s.get("runs_model", ANY) == ANY else s.runs_model,
        dataset=None if s.get("runs_dataset", ANY) == ANY else s.runs_dataset,
        tags=s.get("runs_tags") or None,
        since=since,
        until=until,
    )


st.title("Runs")
counts_at_start = queries.status_counts()

# -- search and filters -------------------------------------------------------------------------
facets = queries.run_facets()
all_tags = queries.run_tags()
search_col, status_col, order_col = st.columns([3, 3, 2], vertical_alignment="bottom")
search_col.text_input("Search", key="runs_search", on_change=first_page, persist_state="session",
                      placeholder="name, model, dataset, tag, note or #id")
status_col.multiselect("Status", list(fmt.STATUS_ICONS), key="runs_status", on_change=first_page,
                       persist_state="session", placeholder="every status")
order_col.selectbox("Order", list(queries.ORDERS), key="runs_order", on_change=first_page, persist_state="session")
model_col, dataset_col, tags_col, dates_col = st.columns(4, vertical_alignment="bottom")
for column, key, label in ((model_col, "runs_model", "Model"), (dataset_col, "runs_dataset", "Dataset")):
    options = [ANY, *facets[label.lower()]]
    if st.session_state.get(key) not in options:
        st.session_state[key] = ANY
    column.selectbox(label, options, key=key, on_change=first_page, persist_state="session")
if any(t not in all_tags for t in st.session_state.get("runs_tags") or ()):
    st.session_state.runs_tags = [t for t in st.session_state.runs_tags if t in all_tags]
tags_col.multiselect("Tags", list(all_tags), key="runs_tags", on_change=first_page, persist_state="session",
                     format_func=lambda t: f"{t} ({all_tags.get(t, 0)})", placeholder="any tags")
dates_col.date_input("Created between", value=(), key="runs_dates", on_change=first_page, format="YYYY-MM-DD",
                     help="One day, or a first and a last day (UTC).")
where = current_filter()


def bulk_actions(selected: list[int], by_id: dict[int, object]) -> None:
    """What can be done to the selected runs at once."""
    n = len(selected)
    bar = st.container(horizontal=True, vertical_alignment="center")
    bar.markdown(f"**{n} selected**")
    if bar.button(f"Compare {n}", key="runs_bulk_compare", icon=":material/compare_arrows:", disabled=n < 2,
                  help="Pick at least two runs" if n < 2 else None):
        st.switch_page(nav.COMPARE, query_params={"runs": ",".join(map(str, selected))})
    active = [i for i in selected if by_id[i].status in live.ACTIVE]
    if bar.button(f"Cancel {len(active)}", key="runs_bulk_cancel", icon=":material/stop:", disabled=not active):
        with fmt.user_errors("Not cancelled: "):
            for run_id in active:
                client.cancel(run_id)
            st.session_state.runs_message = f"Cancelled {plural(len(active), 'run')}: " + ", ".join(f"#{i}" for i in active)
            done_with_selection()
    with bar.popover(f"Tag {n}", icon=":material/sell:"):
        st.text_input("Tags (commas between several)", key="runs_bulk_tags", placeholder="baseline, paper")
        add_col, remove_col = st.columns(2)
        given = [t for t in (st.session_state.get("runs_bulk_tags") or "").split(",") if t.strip()]
        for column, verb, key in ((add_col, "Add", "runs_bulk_tag_add"), (remove_col, "Remove", "runs_bulk_tag_remove")):
            if column.button(verb, key=key, disabled=not given, width="stretch"):
                with fmt.user_errors("Not tagged: "):
                    store.tag_runs(selected, **({"add": given} if verb == "Add" else {"remove": given}))
                    st.session_state.runs_message = (f"{'Tagged' if verb == 'Add' else 'Untagged'} {plural(n, 'run')}: "
                                                     + ", ".join(store.clean_tags(given)))
                    done_with_selection()
    deletable = [i for i in selected if by_id[i].status != RUNNING]
    if bar.button(f"Delete {len(deletable)}", key="runs_bulk_delete", icon=":material/delete:", disabled=not deletable,
                  help="Running runs are left alone: cancel them first" if len(deletable) < n else None):
        st.session_state.runs_confirm_bulk = deletable
    if st.session_state.get("runs_confirm_bulk") and set(st.session_state.runs_confirm_bulk) <= set(deletable):
        doomed = st.session_state.runs_confirm_bulk
        confirm_delete(doomed, "runs_confirm_bulk", "runs_bulk_delete",
                       f"Delete {plural(len(doomed), 'run')} ({', '.join(f'#{i}' for i in doomed)}), their metrics and "
                       "checkpoints? This cannot be undone.", f"Yes, delete {plural(len(doomed), 'run')}", "Keep them",
                       f"Deleted {plural(len(doomed), 'run')} with their checkpoints.")


def confirm_delete(run_ids: list[int], state: str, key: str, question: str, yes_label: str, no_label: str,
                   done: str) -> None:
    """The question before runs and their checkpoints are deleted; ``state`` is the
    session key that asked it (cleared by either answer)."""
    with st.container(border=True):
        st.warning(question, icon=":material/delete:")
        yes, no = st.columns(2)
        if yes.button(yes_label, type="primary", key=f"{key}_yes"):
            with fmt.user_errors("Not deleted: "):
                for run_id in run_ids:
                    store.delete_run(run_id, remove_files=True)
                st.session_state[state] = None
                st.session_state.runs_message = done
                done_with_selection()
        if no.button(no_label, key=f"{key}_no"):
            st.session_state[state] = None
            done_with_selection()


@live.fragment(queries.status_counts)
def live_table() -> None:
    """The counts, the table, the pager and what the selection can do (a run that starts,
    finishes, appears or goes redraws the whole page once, its buttons too)."""
    counts = queries.status_counts()
    # The counters follow the search and filters (all but the status filter itself).
    shown = queries.status_counts(dataclasses.replace(where, status=None))
    cols = st.columns(len(fmt.STATUS_ICONS))
    for col, status in zip(cols, fmt.STATUS_ICONS):
        col.metric(fmt.status_label(status), f"{shown.get(status, 0):,}")
    if not counts:
        st.info("No runs yet. Queue one from **New run**.", icon=":material/info:")
        st.page_link(nav.NEW_RUN, label="New run", icon=":material/add_circle:")
        return
    page = queries.run_page(where, page=int(st.session_state.get("runs_page") or 1), per_page=PER_PAGE,
                            order=st.session_state.get("runs_order") or "newest")
    if not page.runs:
        st.info("No run matches the search and filters.", icon=":material/search_off:")
        return
    up, offline = live.workers()
    queued = queries.list_runs(status=QUEUED, limit=1000, order="oldest")  # the queue's places count them all
    notes = live.queue_notes(queued, devices_of(queued), up, offline)
    frame = table(page.runs, notes)
    # Streamlit's selection is by row position: the table's key names the runs it shows
    # (and a counter bumped by every bulk action), so that a tick never moves to another
    # run when the page, the filters, the order or the runs change: it is cleared instead.
    shown = ",".join(str(r.id) for r in page.runs)
    key = f"runs_table_{hashlib.sha256(shown.encode()).hexdigest()[:12]}_{st.session_state.get('runs_generation', 0)}"
    st.session_state.runs_table_key = key
    event = st.dataframe(frame.style.map(status_color, subset=["status"]), hide_index=True, column_config=COLUMNS,
                         key=key, on_select="rerun", selection_mode="multi-row", width="stretch",
                         height=min(36 * len(frame) + 40, 1600))
    rows = [i for i in (event.selection.rows if event is not None else []) if i < len(frame)]
    selected = [int(frame.iloc[i]["run"]) for i in rows]
    first = (page.page - 1) * page.per_page + 1
    pager = st.container(horizontal=True, vertical_alignment="center")
    pager.button("Newer", key="runs_prev", icon=":material/chevron_left:", disabled=page.page <= 1,
                 on_click=go_to_page, args=(page.page - 1,))
    pager.caption(f"runs {first:,}-{first + len(page.runs) - 1:,} of {page.total:,} · page {page.page:,} of "
                  f"{page.pages:,}" + (" · refreshing every 2 s" if any(counts.get(s) for s in live.ACTIVE) else ""))
    pager.button("Older", key="runs_next", icon=":material/chevron_right:", disabled=page.page >= page.pages,
                 on_click=go_to_page, args=(page.page + 1,))
    if selected:
        bulk_actions(selected, {r.id: r for r in page.runs})
    else:
        st.caption("Tick runs in the table's first column to compare, tag, cancel or delete several at once.")


live_table()
message = st.session_state.pop("runs_message", None)
if message:
    st.success(message, icon=":material/check_circle:")

if counts_at_start:
    st.subheader("Manage a run")
    run = nav.run_picker(key="runs_pick")
    if run is not None:
        run = queries.get_run(run.id)
        open_col, cancel_col, clone_col, cont_col, delete_col = st.columns(5, vertical_alignment="bottom")
        if open_col.button("Open", icon=":material/monitoring:", key="runs_open", width="stretch"):
            st.switch_page(nav.RUN_DETAIL, query_params={"run": run.id})
        if cancel_col.button("Cancel", icon=":material/stop:", key="runs_cancel", width="stretch",
                             disabled=run.status not in live.ACTIVE):
            with fmt.user_errors():
                status = client.cancel(run.id)
                st.toast(f"Run {run.id}: {'cancelled' if status == CANCELLED else 'stopping after this iteration'}")
                st.rerun()
        if clone_col.button("Clone", icon=":material/content_copy:", key="runs_clone", width="stretch",
                            help="A new queued run with the same settings"):
            with fmt.user_errors("Not cloned: "):
                new_id = client.clone(run.id)
                st.session_state.runs_message = f"Run {run.id} cloned as run {new_id} (queued)."
                st.rerun()
        if run.status in (SUCCEEDED, FAILED, CANCELLED):
            config = run.config or {}
            unit = "epochs" if config.get("epochs") is not None else "iterations"
            current = config.get(unit) or 1
            if run.status == SUCCEEDED:
                suggested = current + (1 if unit == "epochs" else (run.steps_per_epoch or 100))
            else:
                suggested = current
            with cont_col.popover("Continue", icon=":material/fast_forward:", width="stretch"):
                total = st.number_input(f"Train to this many {unit} in total", min_value=1, value=int(suggested),
                                        step=1, key="runs_continue_total")
                if st.button("Queue it again", key="runs_continue", type="primary"):
                    with fmt.user_errors("Not continued: "):
                        client.continue_run(run.id, **{unit: int(total)})
                        st.session_state.runs_message = f"Run {run.id} queued again to train to {int(total)} {unit}."
                        st.rerun()
        else:
            cont_col.button("Continue", icon=":material/fast_forward:", disabled=True, key="runs_continue_off",
                            width="stretch", help="Only a finished, failed or cancelled run can continue")
        if delete_col.button("Delete", icon=":material/delete:", key="runs_delete", width="stretch",
                             disabled=run.status == RUNNING,
                             help="Cancel a running run first" if run.status == RUNNING else None):
            st.session_state.runs_confirm_delete = run.id
        if st.session_state.get("runs_confirm_delete") == run.id:
            confirm_delete([run.id], "runs_confirm_delete", "runs_delete",
                           f"Delete run {run.id} ({run.name}), its metrics and its checkpoints? This cannot be undone.",
                           f"Yes, delete run {run.id}", "Keep it", f"Run {run.id} deleted with its checkpoints.")


@live.fragment(queries.status_counts)
def live_workers() -> None:
    up, offline = live.workers()
    st.subheader("Workers")
    if offline:
        hint = "" if "imori up" in offline else ". Start the stack with `imori up` (or Redis and `imori worker`)"
        st.warning(f"{offline}{hint}", icon=":material/warning:")
    elif not up:
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
                    for w in up
                ]
            ),
            hide_index=True,
        )


live_workers()
