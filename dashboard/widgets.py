"""What several pages share: formatting, the run picker, metric charts, uploads checked on
the server, the cached predictor, checkpoint downloads, the "not learning" test.

Pages are short scripts of widgets; anything two of them need lives here. Nothing here
builds SQL (reads go through ``core.records.queries``) and nothing imports torch at
module level: the dashboard process stays light until it has to predict.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import statistics
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import streamlit as st

from core.errors import ImoriError

# Pages, as registered in app.py; st.switch_page / st.page_link take these paths.
NEW_RUN = "app_pages/new_run.py"
RUNS = "app_pages/runs.py"
RUN_DETAIL = "app_pages/run_detail.py"
COMPARE = "app_pages/compare.py"
PREDICT = "app_pages/predict.py"
DATASETS = "app_pages/datasets.py"

ACTIVE = ("queued", "running")
REFRESH = "2s"  # how often live parts redraw while something trains

# Upload limits, checked here on the server whatever the browser let through.
MB = 1024 * 1024
MAX_IMAGE_BYTES = 20 * MB
MAX_IMAGES = 64
MAX_CHECKPOINT_BYTES = 1024 * MB
MAX_ZIP_BYTES = 1024 * MB
CHECKPOINT_TYPES = ("pt", "pth", "bin", "ckpt")

STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/play_circle:",
    "succeeded": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/stop_circle:",
}
STATUS_HEX = {"queued": "#6b7280", "running": "#1d4ed8", "succeeded": "#15803d", "failed": "#b91c1c", "cancelled": "#c2410c"}
STATUS_COLORS = {"queued": "gray", "running": "blue", "succeeded": "green", "failed": "red", "cancelled": "orange"}


class UploadError(ImoriError):
    """An upload refused on the server (too large, wrong kind, unreadable)."""


# -- formatting -------------------------------------------------------------------------------


def pct(value: float | None, digits: int = 1) -> str:
    """0.9638 -> '96.4 %'; None -> '—'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{100 * value:.{digits}f} %"


def num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}g}"


def duration(seconds: float | None) -> str:
    """Seconds as '12 s', '3 min 05 s' or '2 h 04 min'."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def plain(value: Any) -> str:
    """A setting as text: None and empty values as '—', lists without brackets."""
    if value is None or value == [] or value == {} or value == ():
        return "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def status_label(status: str) -> str:
    """The status with its icon, for markdown-capable places (metrics, captions)."""
    return f"{STATUS_ICONS.get(status, '')} {status}".strip()


def status_badge(status: str) -> None:
    st.badge(status, icon=None, color=STATUS_COLORS.get(status, "gray"))  # type: ignore[arg-type]


def run_label(run: Any) -> str:
    """'#7 mnist_cnn on digits' for pickers (no status: a picker's labels are not
    redrawn while its options stay the same, and a status would go stale)."""
    return f"#{run.id} {run.name}"


def elapsed(run: Any) -> float | None:
    """Seconds the run has trained: start to finish, or to now while it runs."""
    if run.started_at is None:
        return None
    end = run.finished_at or (datetime.now(timezone.utc) if run.status == "running" else None)
    if end is None:
        return None
    start = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=timezone.utc)
    end = end if end.tzinfo else end.replace(tzinfo=timezone.utc)
    return (end - start).total_seconds()


def first_line(text: str | None, width: int = 160) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


# -- errors ----------------------------------------------------------------------------------


@contextlib.contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """Show an ImoriError (a problem the user can fix) as a message, never a traceback."""
    try:
        yield
    except ImoriError as err:
        st.error(f"{prefix}{err}" if prefix else str(err), icon=":material/warning:")


# -- the queue -------------------------------------------------------------------------------


def workers() -> tuple[list[Any], str | None]:
    """(live workers, None) or ([], why the queue cannot be asked)."""
    try:
        from worker.presence import live_workers

        return live_workers(), None
    except Exception as err:  # noqa: BLE001 - Redis down or unreachable: say so, keep the page
        return [], f"the queue (Redis) does not answer: {type(err).__name__}"


def queue_notes(queued: Sequence[Any], devices: dict[int, str], live: Sequence[Any], offline: str | None) -> dict[int, str]:
    """For each queued run (oldest first is served first): its place in the queue, or
    what it waits for. ``devices`` maps run id -> its config's device."""
    notes: dict[int, str] = {}
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
            doing = f"training run {w.run_id}" if w.run_id else "idle"
            st.caption(f"`{w.device}` {w.device_name} — {doing}")


# -- run picking -----------------------------------------------------------------------------


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
    from dataclasses import replace

    from core.records import queries

    wanted = query_int(param)
    if runs is None:
        base = where or queries.RunFilter()
        search_col, pick_col = st.columns([1, 3], vertical_alignment="bottom")
        text = search_col.text_input("Find a run", key=f"{key}_search", placeholder="name, model, dataset, tag or #id",
                                     persist_state="session",
                                     help=f"The newest {PICKER_LIMIT} matching runs are listed; type to find older ones.")
        found = queries.list_runs(where=replace(base, text=text or None), limit=PICKER_LIMIT)
        keep = [i for i in (wanted, st.session_state.get(key)) if isinstance(i, int) and i not in {r.id for r in found}]
        if keep:  # the run in the URL, or the one chosen before the search, stays choosable
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


# -- charts ----------------------------------------------------------------------------------


def ema(values: Sequence[float | None], weight: float) -> list[float | None]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start."""
    if weight <= 0:
        return list(values)
    out: list[float | None] = []
    last, n = 0.0, 0
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(None)
            continue
        n += 1
        last = weight * last + (1 - weight) * v
        out.append(last / (1 - weight**n))
    return out


X_TITLES = {"step": "step", "epoch": "epoch", "time": "minutes since start"}


def x_values(kind: str, steps: Sequence[int], epochs: Sequence[int], times: Sequence[float],
             steps_per_epoch: int | None, t0: float | None) -> list[float]:
    """The x of each point: the step, the (fractional) epoch, or minutes since start."""
    if kind == "epoch":
        if steps_per_epoch:
            return [s / steps_per_epoch for s in steps]
        return [float(e) for e in epochs]
    if kind == "time":
        start = t0 if t0 is not None else (min(times) if times else 0.0)
        return [(t - start) / 60 for t in times]
    return [float(s) for s in steps]


def series_frame(series: Any, metric: str, *, x: str, steps_per_epoch: int | None, t0: float | None,
                 smoothing: float, label: str = "train"):
    """A reduced Series as rows (x, value, lo, hi, series): mean line smoothed, band raw."""
    import pandas as pd

    if series is None or len(series) == 0:
        return pd.DataFrame(columns=["x", "value", "lo", "hi", "series", "step"])
    mean = getattr(series, metric)
    lo = getattr(series, f"{metric}_min")
    hi = getattr(series, f"{metric}_max")
    frame = pd.DataFrame(
        {
            "x": x_values(x, series.step, series.epoch, series.time, steps_per_epoch, t0),
            "value": ema(mean, smoothing),
            "lo": lo,
            "hi": hi,
            "series": label,
            "step": series.step,
        }
    )
    return frame.dropna(subset=["value"])


def eval_frame(rows: Sequence[Any], metric: str, *, x: str, steps_per_epoch: int | None, t0: float | None,
               label_prefix: str = ""):
    """Per-epoch evaluations as rows (x, value, series)."""
    import pandas as pd

    if not rows:
        return pd.DataFrame(columns=["x", "value", "series", "step"])
    xs = x_values(x, [r.step for r in rows], [r.epoch for r in rows], [r.time for r in rows], steps_per_epoch, t0)
    if x == "epoch":
        xs = [float(r.epoch) if steps_per_epoch is None else r.step / steps_per_epoch for r in rows]
    frame = pd.DataFrame(
        {
            "x": xs,
            "value": [getattr(r, metric) for r in rows],
            "series": [f"{label_prefix}{r.split}" for r in rows],
            "step": [r.step for r in rows],
        }
    )
    return frame.dropna(subset=["value"])


def phase_markers(config: dict, steps_per_epoch: int | None, x_kind: str) -> dict[str, float]:
    """Where a fine-tune's backbone joins training, on the chart's x axis (by step or epoch)."""
    freeze = int((config or {}).get("freeze_epochs") or 0)
    if not freeze or not steps_per_epoch or x_kind not in ("step", "epoch"):
        return {}
    return {"all layers train": float(freeze * steps_per_epoch if x_kind == "step" else freeze)}


def line_chart(band_frame, point_frame=None, *, x_title: str, y_title: str, log: bool = False,
               percent: bool = False, height: int = 260, colors: dict[str, str] | None = None,
               markers: dict[str, float] | None = None):
    """Mean lines with their min/max band, plus per-epoch points, as one Altair chart;
    ``markers`` ({label: x}) draw labelled vertical rules (where a phase begins)."""
    import altair as alt
    import pandas as pd

    frames = [f for f in (band_frame, point_frame) if f is not None and len(f)]
    if log:
        frames = [f[f["value"] > 0] for f in frames]
        if band_frame is not None and len(band_frame):
            band_frame = band_frame[band_frame["value"] > 0].assign(
                lo=lambda d: d["lo"].where(d["lo"] > 0, d["value"]))
        if point_frame is not None and len(point_frame):
            point_frame = point_frame[point_frame["value"] > 0]
    names = sorted(set().union(*[set(f["series"]) for f in frames])) if frames else []
    if colors:
        domain = [n for n in colors if n in names] + [n for n in names if n not in colors]
        scale = alt.Scale(domain=domain, range=[colors.get(n, "#888888") for n in domain])
    else:
        # Tableau's categorical palettes: neighbours differ in hue (Streamlit's default
        # draws the first two series in two blues).
        scale = alt.Scale(scheme="tableau10" if len(names) <= 10 else "tableau20")
    color = alt.Color("series:N", scale=scale, title=None, legend=alt.Legend(orient="top", symbolOpacity=1))
    y_scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
    y_axis = alt.Axis(format="%") if percent else alt.Axis(format="~g")
    x_enc = alt.X("x:Q", title=x_title)
    layers = []
    if band_frame is not None and len(band_frame):
        base = alt.Chart(band_frame)
        layers.append(
            base.mark_area(opacity=0.18).encode(x=x_enc, y=alt.Y("lo:Q", scale=y_scale, title=y_title, axis=y_axis),
                                                 y2="hi:Q", color=color)
        )
        layers.append(
            base.mark_line(strokeWidth=1.6).encode(
                x=x_enc, y=alt.Y("value:Q", scale=y_scale, title=y_title, axis=y_axis), color=color,
                tooltip=[alt.Tooltip("series:N"), alt.Tooltip("step:Q"), alt.Tooltip("value:Q", format=".4g"),
                         alt.Tooltip("lo:Q", title="min", format=".4g"), alt.Tooltip("hi:Q", title="max", format=".4g")],
            )
        )
    if point_frame is not None and len(point_frame):
        layers.append(
            alt.Chart(point_frame).mark_line(point=True, strokeDash=[4, 2]).encode(
                x=x_enc, y=alt.Y("value:Q", scale=y_scale, title=y_title, axis=y_axis), color=color,
                tooltip=[alt.Tooltip("series:N"), alt.Tooltip("step:Q"), alt.Tooltip("value:Q", format=".4g")],
            )
        )
    if not layers:
        return alt.Chart(pd.DataFrame({"x": [], "value": []})).mark_line()
    if markers:
        rules = alt.Chart(pd.DataFrame({"x": list(markers.values()), "label": list(markers)}))
        layers.append(rules.mark_rule(strokeDash=[6, 3], color="#666666").encode(x="x:Q", tooltip=["label:N"]))
        layers.append(rules.mark_text(align="left", dx=4, dy=-height / 2 + 12, color="#444444", fontSize=11)
                      .encode(x="x:Q", text="label:N"))
    return alt.layer(*layers).properties(height=height).interactive(bind_y=False)


def chart_controls(key: str, *, default_x: str = "step") -> tuple[str, float, bool]:
    """x axis, smoothing and log scale, in one row."""
    left, middle, right = st.columns([2, 3, 1], vertical_alignment="bottom")
    x = left.segmented_control("x axis", ["step", "epoch", "time"], default=default_x, key=f"{key}_x",
                               persist_state="session") or default_x
    smoothing = middle.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key=f"{key}_smooth", persist_state="session",
                              help="Exponential moving average of the mean line (as TensorBoard's). "
                                   "The shaded band is each point's raw min..max.")
    log = right.toggle("Log scale", key=f"{key}_log", persist_state="session")
    return x, smoothing, log


# -- "not learning" --------------------------------------------------------------------------

NOT_LEARNING = "not learning: raise the learning rate or add momentum"
STALL_RATIO = 0.95


def stalled(early: Sequence[float], latest: Sequence[float], ratio: float = STALL_RATIO) -> bool:
    """True when the latest epoch's median loss is not below ``ratio`` x the median loss of
    the first steps of epoch 1 (medians: a few spikes do not decide)."""
    early = [v for v in early if v is not None and math.isfinite(v)]
    latest = [v for v in latest if v is not None and math.isfinite(v)]
    if not early or not latest:
        return False
    return statistics.median(latest) >= ratio * statistics.median(early)


def stall_windows(step: int, steps_per_epoch: int | None) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """((first, last) of epoch 1's first 10 %, (first, last) of the latest epoch), or None
    before one full epoch has run."""
    if not steps_per_epoch or step < steps_per_epoch or steps_per_epoch < 2:
        return None
    early = (1, max(1, steps_per_epoch // 10))
    epoch = math.ceil(step / steps_per_epoch)
    in_epoch = step - (epoch - 1) * steps_per_epoch
    if in_epoch < max(1, steps_per_epoch // 10) and epoch > 1:
        epoch -= 1  # the current epoch has barely begun: judge the last full one
        last = epoch * steps_per_epoch
    else:
        last = step
    return early, ((epoch - 1) * steps_per_epoch + 1, last)


def not_learning(run: Any) -> bool:
    """The loss has not fallen after the first epoch (see ``stalled``)."""
    from core.records import queries

    windows = stall_windows(run.step, getattr(run, "steps_per_epoch", None))
    if windows is None:
        return False
    (e0, e1), (l0, l1) = windows
    early = queries.series(run.id, max_points=200, step_from=e0, step_to=e1)
    latest = queries.series(run.id, max_points=200, step_from=l0, step_to=l1)
    return stalled(early.loss, latest.loss)


# -- uploads ---------------------------------------------------------------------------------


def safe_uploader(label: str, types: Sequence[str], mime: str, **kwargs: Any):
    """``st.file_uploader`` that leaves the file-type check to the page.

    With only extensions in ``type=``, Streamlit itself refuses another file while
    restoring widget state, before the page runs, and the user sees a traceback. A MIME
    type in the list (``mime``, which also guides the browser's file picker) makes it
    trust the browser instead; ``read_upload`` then checks the name, the size and the
    content on the server and says what is wrong.
    """
    return st.file_uploader(label, type=[*(f".{t}" for t in types), mime], **kwargs)


def image_types() -> tuple[str, ...]:
    """Extensions for the image pickers: every format imori opens (``core.data.formats``:
    Pillow's, plus HEIC/HEIF), from the one list every page and command uses. They only
    guide the browser's file picker: ``read_image_upload`` judges the content."""
    from core.data.formats import upload_types

    return upload_types()


def read_image_upload(uploaded: Any, *, max_bytes: int | None = None, what: str = "image") -> bytes:
    """The bytes of an uploaded image, accepted by its content (any file Pillow can open,
    whatever its name says: ``newt.jfif``, ``IMG_0001.HEIC``, a PNG without extension)."""
    from core.data.formats import identify, not_an_image_reason

    data = read_upload(uploaded, max_bytes=MAX_IMAGE_BYTES if max_bytes is None else max_bytes, kinds=(), what=what)
    if identify(data) is None:
        name = getattr(uploaded, "name", None) or what
        raise UploadError(f"{name} was refused: {not_an_image_reason(name)}")
    return data


def read_zip_upload(uploaded: Any, *, max_bytes: int | None = None) -> bytes:
    """The bytes of an uploaded ZIP, accepted by its content (``dataset.ZIP``, a name without extension)."""
    import io
    import zipfile

    data = read_upload(uploaded, max_bytes=MAX_ZIP_BYTES if max_bytes is None else max_bytes, kinds=(), what="ZIP file")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        name = getattr(uploaded, "name", None) or "the upload"
        raise UploadError(f"{name} was refused: not a ZIP file (make one of the class folders, e.g. with Compress / Send to ZIP)")
    return data


def read_upload(uploaded: Any, *, max_bytes: int, kinds: Sequence[str], what: str) -> bytes:
    """The bytes of an uploaded file, after checking its size (and, given ``kinds``, its
    extension) on the server."""
    name = getattr(uploaded, "name", None) or what
    size = getattr(uploaded, "size", None)
    if size is not None and size > max_bytes:
        raise UploadError(f"{name} is {size / MB:.1f} MB; {what} may be at most {max_bytes // MB} MB")
    suffix = Path(name).suffix.lower().lstrip(".")
    if kinds and suffix not in kinds:
        article = "an" if what[:1].lower() in "aeiou" else "a"
        raise UploadError(f"{name} was refused: not {article} {what} (expected {', '.join('.' + k for k in kinds)})")
    data = uploaded.getvalue()
    if len(data) > max_bytes:
        raise UploadError(f"{name} is {len(data) / MB:.1f} MB; {what} may be at most {max_bytes // MB} MB")
    if not data:
        raise UploadError(f"{name} is empty")
    return data


def safe_name(name: str, fallback: str = "upload") -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).name).strip(".-")
    return stem[:80] or fallback


def store_upload(data: bytes, name: str, folder: str) -> Path:
    """Keep an upload under ``IMORI_HOME/uploads/<folder>/`` (where workers see it too),
    named by its content so the same file is stored once."""
    from core.paths import subdir

    digest = hashlib.sha256(data).hexdigest()[:16]
    target = subdir("uploads") / folder
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{digest}-{safe_name(name)}"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


# -- prediction ------------------------------------------------------------------------------


@st.cache_resource(max_entries=6, show_spinner="Loading the model…")
def _cached_predictor(path: str, mtime: float, model: str | None, classes: tuple[str, ...] | None, options: str):
    import torch

    from core.predict import Predictor

    torch.set_num_threads(1)  # the dashboard answers a few images at a time; workers train
    bare: dict[str, Any] = {}
    if model:
        bare = {"model": model, "classes": list(classes) if classes else None, "options": json.loads(options)}
    return Predictor(path, **bare)


def load_predictor(path: str | Path, *, model: str | None = None, classes: Sequence[str] | None = None,
                   options: dict[str, Any] | None = None):
    """A Predictor for ``path``, cached by path and modification time (a second upload of
    images answers without loading the model again)."""
    from core.errors import CheckpointError

    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError:
        raise CheckpointError(f"{p}: no such checkpoint file (was it deleted?)") from None
    return _cached_predictor(str(p.resolve()), mtime, model or None, tuple(classes) if classes else None,
                             json.dumps(options or {}, sort_keys=True))


def predict(predictor: Any, images: Sequence[Any], names: Sequence[str]) -> list[Any]:
    """Every class's probability for each image, on one thread.

    ``torch.set_num_threads`` holds for the calling thread only (OpenMP), and Streamlit
    runs each rerun in a thread of its own: so it is set here, before each prediction,
    not once when the model is loaded.
    """
    import torch

    torch.set_num_threads(1)
    return predictor.predict(list(images), top_k=len(predictor.classes), names=list(names))


def bars(top: Sequence[tuple[str, float]], height: int | None = None):
    """``height``: pixels per bar."""
    """Top-k probabilities as horizontal bars, most likely on top."""
    import altair as alt
    import pandas as pd

    frame = pd.DataFrame({"class": [str(c) for c, _ in top], "probability": [p for _, p in top]})
    frame["rank"] = range(len(frame))
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title=None),
        y=alt.Y("class:N", sort=list(frame["class"]), title=None),
        color=alt.condition(alt.datum.rank == 0, alt.value("#2e7d32"), alt.value("#90a4ae")),
        tooltip=[alt.Tooltip("class:N"), alt.Tooltip("probability:Q", format=".2%")],
    )
    text = chart.transform_filter(alt.datum.probability >= 0.0005).mark_text(align="left", dx=3).encode(
        text=alt.Text("probability:Q", format=".1%"), color=alt.value("#333"))
    return (chart + text).properties(height=alt.Step(height or 22))


def tensor_to_image(tensor: Any, channel_order: str = "RGB", size: int | None = 112):
    """A uint8 C x H x W tensor (as datasets are cached) as a Pillow image for display."""
    import numpy as np
    from PIL import Image

    array = tensor.numpy() if hasattr(tensor, "numpy") else np.asarray(tensor)
    if array.shape[0] == 1:
        image = Image.fromarray(array[0], mode="L")
    else:
        if channel_order == "BGR":
            array = array[::-1]
        image = Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)), mode="RGB")
    return upscale(image, size) if size else image


def upscale(image: Any, size: int = 112):
    """Small images (8x8 digits) drawn large enough to see, with crisp pixels; float,
    16-bit, CMYK... images as 8-bit pictures a browser can show."""
    from PIL import Image

    from core.data.preprocess import for_display

    image = for_display(image)
    if max(image.size) >= size:
        return image
    scale = max(1, size // max(image.size))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


# -- checkpoints -----------------------------------------------------------------------------


def under_home(path: str | Path) -> Path | None:
    """``path`` resolved, if it is a file inside IMORI_HOME; None otherwise (never serve
    files from elsewhere, whatever a record says)."""
    from core.paths import imori_home

    try:
        resolved = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    home = imori_home().resolve()
    if not resolved.is_file() or not resolved.is_relative_to(home):
        return None
    return resolved


def checkpoint_reader(path: Path):
    """A deferred download: the bytes are read when the button is clicked."""
    def read() -> bytes:
        return path.read_bytes()
    return read


def state_dict_reader(path: Path):
    """A deferred download of the bare ``state_dict`` (what the tutorial's class loads)."""
    def export() -> bytes:
        import tempfile

        from core.checkpoint import export_state_dict

        with tempfile.TemporaryDirectory(prefix="imori-export-") as tmp:
            out = export_state_dict(path, Path(tmp) / "weights.pt")
            return out.read_bytes()
    return export


def checkpoint_label(row: Any) -> str:
    metrics = row.metrics or {}
    val = metrics.get("val_accuracy")
    name = Path(row.path).name
    extra = f", val {pct(val)}" if val is not None else ""
    return f"{name} — epoch {row.epoch}, step {row.step}{extra}"


# -- datasets --------------------------------------------------------------------------------


@st.cache_data(ttl=30, show_spinner=False)
def all_datasets() -> list[Any]:
    """``core.data.list_datasets()``, briefly cached; ``all_datasets.clear()`` after an
    import or a delete so every page sees the change at once."""
    from core.data import list_datasets

    return list_datasets()


def dataset_label(info: Any) -> str:
    if info.kind == "torchvision" and not info.present:
        return f"{info.name} (torchvision, not downloaded)"
    parts = [info.kind]
    if info.classes:
        parts.append(f"{len(info.classes)} classes")
    if info.total:
        parts.append(f"{info.total:,} images")
    return f"{info.name} ({', '.join(parts)})"


# -- per-class metrics -------------------------------------------------------------------------

CLASS_METRIC_COLUMNS = ("precision", "recall", "f1")


def class_metrics_table(metrics: dict[str, dict[str, float]], *, key: str) -> None:
    """One row a class: precision, recall, F1 (3 decimals) and support, as
    ``core.metrics.class_metrics`` gives them (a class never predicted has precision 0)."""
    import pandas as pd

    frame = pd.DataFrame(
        [{"class": str(name), **{k: m[k] for k in CLASS_METRIC_COLUMNS}, "support": int(m["support"])}
         for name, m in metrics.items()],
        columns=["class", *CLASS_METRIC_COLUMNS, "support"],
    )
    st.dataframe(frame, hide_index=True, key=key,
                 column_config={k: st.column_config.NumberColumn(format="%.3f") for k in CLASS_METRIC_COLUMNS})
