"""What is live: the run states that redraw (``ACTIVE``), the one helper every page's
live part is made with (``fragment``), the workers and each queued run's place in the queue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from core.status import QUEUED, RUNNING
from worker.app import cpu_queue, gpu_queue
from worker.broker import NoBroker, require
from worker.presence import live_workers

ACTIVE = (QUEUED, RUNNING)
REFRESH = "2s"  # how often live parts redraw while something trains
SLOWEST_REFRESH = 15.0  # seconds: a run that records an iteration a minute still looks alive
# A chart's redraw (building its Altair spec: 0.1 to 0.5 s of a core for a few hundred
# points) comes at most every CHART_EVERY seconds and takes at most CHART_SHARE of the time.
CHART_EVERY = 15.0
CHART_SHARE = 0.025
SHORT_RUN = 300.0  # seconds left: a run this close to its end redraws its charts with its figures


def fragment(watch: Callable[[], Any], *, active: Callable[[Any], bool] | None = None, every: float | None = None):
    """Make a page's live part: a ``st.fragment`` that redraws every ``REFRESH`` (or
    ``every`` seconds) while what it shows is active, and reruns the whole page once when
    ``watch()`` (the states it depends on: a run's status, the status counts) changes, so
    that the rest of the page follows and a part whose runs have all finished stops ticking.

    ``active(value)`` says whether ``watch()``'s value needs the timer (default: it holds
    a queued or running state: a status, or a collection or mapping of them).
    """
    at_start = watch()
    is_active = active or _holds_active
    every = (every or REFRESH) if is_active(at_start) else None

    def wrap(body: Callable[..., Any]) -> Callable[..., Any]:
        @st.fragment(run_every=every)
        def part(*args: Any, **kwargs: Any) -> Any:
            if watch() != at_start:
                st.rerun()  # something started or finished: the whole page, once
            return body(*args, **kwargs)

        part.__doc__ = body.__doc__
        return part

    return wrap


def refresh_every(steps_per_second: float | None, seconds_left: float | None = None, *,
                  in_stage: bool = False) -> float:
    """Seconds between a run's live redraws: ``REFRESH``, or longer where nothing new
    would show sooner: the time between two iterations of a slow run, a hundredth of the
    time left of a long one (its bar moves by a hundredth at most); at most
    ``SLOWEST_REFRESH``. A stage before the iterations moves its count about every second
    and its time left by minutes: 5 s."""
    base = float(REFRESH.rstrip("s"))
    if in_stage:
        return max(base, 5.0)
    slower = [base]
    if steps_per_second and steps_per_second > 0:
        slower.append(1.0 / steps_per_second)
    if seconds_left:
        slower.append(seconds_left / 100)
    return min(SLOWEST_REFRESH, max(slower))


def chart_every(refresh: float, build_seconds: float, seconds_left: float | None = None) -> float:
    """Seconds between a live part's chart redraws. A run with ``SHORT_RUN`` seconds or
    less to go (or whose length is not known yet) is watched closely: the figures' own
    ``refresh``, its cost lasts minutes at most. A longer one: at least ``CHART_EVERY``
    and ``refresh``, and long enough that building the charts (``build_seconds`` the last
    time) takes at most ``CHART_SHARE`` of the time (a slow machine redraws less often)."""
    if seconds_left is None or seconds_left <= SHORT_RUN:
        return refresh
    return max(CHART_EVERY, refresh, build_seconds / CHART_SHARE)


def _holds_active(value: Any) -> bool:
    if isinstance(value, str):
        return value in ACTIVE
    if isinstance(value, dict):
        return any(value.get(s) for s in ACTIVE)
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_active(v) for v in value)
    return False


def workers() -> tuple[list[Any], str | None]:
    """(live workers, None) or ([], why the queue cannot be asked)."""
    try:
        require()
        return live_workers(), None
    except NoBroker as err:
        return [], str(err)
    except Exception as err:  # noqa: BLE001 - Redis down or unreachable: say so, keep the page
        return [], f"the queue (Redis) does not answer: {type(err).__name__}"


def queue_notes(queued: Sequence[Any], devices: dict[int, str], live: Sequence[Any], offline: str | None) -> dict[int, str]:
    """For each queued run (oldest first is served first): its place in the queue, or
    what it waits for. ``devices`` maps run id -> its config's device."""
    notes: dict[int, str] = {}
    live = [w for w in live if {cpu_queue(), gpu_queue()} & set(w.queues)]  # a worker of jobs alone trains none
    has_gpu = any(w.device == "cuda" for w in live)
    for position, run in enumerate(sorted(queued, key=lambda r: r.id), start=1):
        if offline:
            notes[run.id] = "queue offline"
        elif devices.get(run.id) == "cuda" and not has_gpu:
            notes[run.id] = "waiting for a GPU worker"
        elif not live:
            notes[run.id] = "waiting for a worker (start one: imori worker)"
        else:
            notes[run.id] = f"#{position} in the queue"
    return notes


def sidebar_status() -> None:
    """The workers, in one line each, at the bottom of the sidebar."""
    live, offline = workers()
    with st.sidebar:
        st.caption("**Workers**")
        if offline:
            st.caption(f":material/warning: {offline}. Start everything with `imori up`.")
        elif not live:
            st.caption("No worker is running: queued runs wait. Start one with `imori worker`.")
        for w in live:
            st.caption(f"`{w.device}` {w.device_name} · {w.lanes} — {w.doing}")
