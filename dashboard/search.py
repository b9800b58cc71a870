"""An automatic run's search (``--recipe auto``, core.auto) on its run page: the
leaderboard with the winner marked, why it won, the notes (the k-fold cross-validation
where validation is too small to choose on), where the minutes went, and the whole
search's progress and ETA while it runs."""

from __future__ import annotations

import time
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import fmt


def running_candidate(search: dict[str, Any]) -> str | None:
    """The candidate the search is working on now (None between phases)."""
    return next((c["name"] for c in reversed(search.get("candidates") or []) if c.get("status") == "running"), None)


def progress(search: dict[str, Any], now: float | None = None) -> tuple[float, float | None, str]:
    """(done 0..1, seconds left, the bar's text) of the whole search: its progress (by time)
    and its deadline, not the steps of the phase that trains now. Between two reports of
    the search (a long feature pass) the clock moves the bar on, as the search's own
    progress would (elapsed / budget)."""
    done = min(1.0, max(0.0, float(search.get("progress") or 0.0)))
    deadline, budget = search.get("deadline"), search.get("budget_seconds")
    eta = max(0.0, float(deadline) - (time.time() if now is None else now)) if deadline else None
    if eta is not None and budget and done < 1.0:
        done = max(done, min(0.99, 1.0 - eta / float(budget)))
    phase = running_candidate(search)
    text = (f"{fmt.pct(done, 0)} of the search's {fmt.duration(budget)}"
            + (f" · now: {phase}" if phase else "")
            + (" · past its deadline: finishing" if eta == 0.0 and done < 1.0 else ""))
    return done, eta, text


def leaderboard(search: dict[str, Any]) -> pd.DataFrame:
    """One row a candidate, in the order tried; the winner marked; its status beside its
    name (a skip's reason is long: after the figures it ran off a laptop's screen); the
    cross-validation column only where the candidates were compared by it."""
    candidates = search.get("candidates") or []
    with_cv = any(c.get("cv_accuracy") is not None for c in candidates)
    rows = []
    for c in candidates:
        # The candidate's name holds its backbone ("linear probe: efficientnet_lite0").
        row = {"winner": "★" if c.get("name") == search.get("winner") else "", "candidate": c.get("name"),
               "status": c.get("status"), "validation accuracy": c.get("val_accuracy"),
               "balanced": c.get("val_balanced_accuracy")}
        if with_cv:
            row["cross-validation accuracy"] = c.get("cv_accuracy")
        row.update({"seconds": c.get("seconds"), "settings": fmt.plain(c.get("settings"))})
        rows.append(row)
    return pd.DataFrame(rows)


def phases_chart(phases: dict[str, float]) -> alt.Chart:
    """Seconds per phase, one bar each, in the order they ran."""
    frame = pd.DataFrame({"phase": list(phases), "seconds": [float(v) for v in phases.values()]})
    bars = alt.Chart(frame).mark_bar(color="#1f77b4").encode(
        x=alt.X("seconds:Q", title="seconds"), y=alt.Y("phase:N", sort=None, title=None, axis=alt.Axis(labelOverlap=False)),
        tooltip=["phase", alt.Tooltip("seconds:Q", format=".1f")])
    labels = bars.mark_text(align="left", dx=3).encode(text=alt.Text("seconds:Q", format=".0f"))
    return (bars + labels).properties(height=30 * len(frame) + 10)


def search_view(search: dict[str, Any], active: bool) -> None:
    """The search as it stands: leaderboard, winner (or the leader, while it runs) and
    reason, notes, where the minutes went."""
    chosen_by = search.get("chosen_by") or "validation"
    how = "on the validation split" if chosen_by == "validation" else f"by {chosen_by}"
    st.markdown(f"**Automatic search** (candidates compared {how}; the test split only once, at the end, "
                "on the winner)")
    if chosen_by != "validation":
        st.info(f"Chosen by {chosen_by} on the cached features: the validation split holds too few images to "
                "choose on by itself.", icon=":material/rule:")
    frame = leaderboard(search)
    if frame.empty:
        st.caption("No candidate measured yet." if active else "The search measured no candidate.")
    else:
        percent = {"format": "percent"}
        st.dataframe(frame, hide_index=True, column_config={
            "winner": st.column_config.TextColumn("", width="small"),
            "validation accuracy": st.column_config.NumberColumn(**percent),
            "balanced": st.column_config.NumberColumn("balanced accuracy", **percent),
            "cross-validation accuracy": st.column_config.NumberColumn(**percent),
            "seconds": st.column_config.NumberColumn(format="%.1f"),
            "status": st.column_config.TextColumn(width="medium")})  # "skipped: ..." whole on hover
    if search.get("winner"):
        text = f"**{'Leading' if active else 'Winner'}: {search['winner']}**"
        if search.get("winner_backbone") and search["winner_backbone"] not in search["winner"]:
            text += f" ({search['winner_backbone']})"
        if search.get("reason"):
            text += f": {search['reason']}"
        (st.info if active else st.success)(text, icon=":material/emoji_events:")
    notes = search.get("notes") or []
    if notes:
        st.markdown("**Notes**\n" + "\n".join(f"- {note}" for note in notes))
    phases = {k: v for k, v in (search.get("phases") or {}).items() if v is not None}
    if phases:
        spent = search.get("elapsed_seconds")
        st.markdown(f"**Where the minutes went** ({fmt.duration(spent)} of a {fmt.duration(search.get('budget_seconds'))} "
                    "budget)")
        st.altair_chart(phases_chart(phases), width="stretch")
