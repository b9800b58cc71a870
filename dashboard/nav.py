"""The pages' paths (as registered in app.py, for st.switch_page / st.page_link) and the
run picker that follows ``?run=`` in the URL and finds any recorded run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import streamlit as st

from core.records import queries
from dashboard.fmt import run_label


# Pages, as registered in app.py; st.switch_page / st.page_link take these paths.
NEW_RUN = "app_pages/new_run.py"


RUNS = "app_pages/runs.py"


RUN_DETAIL = "app_pages/run_detail.py"


COMPARE = "app_pages/compare.py"


PREDICT = "app_pages/predict.py"


DATASETS = "app_pages/datasets.py"


def query_int(name: str) -> int | None:
    raw = st.query_params.get(name)
    try:
        return int(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None


PICKER_LIMIT = 100  # runs a picker lists at once; its search box finds the others


def run_picker(runs: Sequence[Any] | None = None, *, key: str, label: str = "Run", param: str = "run",
               where: Any | None = None) -> Any | None:
    """A selectbox of runs that follows ``?run=`` in the URL, and keeps it up to date, with
    a search box that finds any recorded run however many there are (``where``, a
    ``queries.RunFilter``, narrows them: e.g. not queued). ``runs``, when given, are the
    choices instead (no search box). None when no run matches at all.

    Choosing a run writes the URL at once (a callback), so a URL that disagrees with the
    selection when the page runs was followed from a link or typed: it wins. Without one
    (the sidebar clears query parameters) the last choice is kept across pages.
    """
    wanted = query_int(param)
    if runs is None:
        base = where or queries.RunFilter()
        search_col, pick_col = st.columns([1, 3], vertical_alignment="bottom")
        text = search_col.text_input("Find a run", key=f"{key}_search", placeholder="name, model, dataset, tag or #id",
                                     persist_state="session",
                                     help=f"The newest {PICKER_LIMIT} matching runs are listed; type to find older ones.")
        found = queries.list_runs(where=replace(base, text=text or None), limit=PICKER_LIMIT)
        searched = (text or "").strip()
        if searched != st.session_state.get(f"{key}_searched", ""):
            # A new search picks its first match (the newest), not the run chosen before it.
            st.session_state[f"{key}_searched"] = searched
            if found:
                st.session_state[key] = found[0].id
                st.query_params[param] = str(found[0].id)
                wanted = found[0].id
        if not searched:
            keep = [i for i in (wanted, st.session_state.get(key)) if isinstance(i, int) and i not in {r.id for r in found}]
            if keep:  # the run in the URL, or the one chosen before, stays choosable
                found = list(queries.list_runs(where=replace(base, ids=keep), limit=None)) + list(found)
        runs = found
        container = pick_col
        if not runs and not text and queries.count_runs(base) == 0:
            return None
        if not runs:
            search_col.caption("No run matches.")
            return None
    else:
        container = st
    if not runs:
        return None
    ids = [r.id for r in runs]
    by_id = {r.id: r for r in runs}
    if wanted in ids and st.session_state.get(key) != wanted:
        st.session_state[key] = wanted
    if st.session_state.get(key) not in ids:
        st.session_state[key] = ids[0]

    def follow() -> None:
        st.query_params[param] = str(st.session_state[key])

    chosen = container.selectbox(label, ids, key=key, format_func=lambda i: run_label(by_id[i]), on_change=follow,
                                 persist_state="session")
    if st.query_params.get(param) != str(chosen):
        st.query_params[param] = str(chosen)
    return by_id.get(chosen)
