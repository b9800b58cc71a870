"""Metric charts and tables: series and evaluations as Altair layers (mean line, min-max
band, per-epoch points, phase markers), the chart controls, probability bars and the
per-class metrics table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st


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


def bars(top: Sequence[tuple[str, float]], height: int | None = None, *, chosen: str | None = None,
         threshold: float | None = None):
    """Top-k probabilities as horizontal bars, most likely on top; ``height``: pixels per
    bar. The answer's bar is green (``chosen``, default the likeliest); ``threshold``: a
    dashed line where an operating point decides ``chosen``."""
    frame = pd.DataFrame({"class": [str(c) for c, _ in top], "probability": [p for _, p in top]})
    frame["chosen"] = frame["class"] == str(chosen) if chosen is not None else [i == 0 for i in range(len(frame))]
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title=None),
        y=alt.Y("class:N", sort=list(frame["class"]), title=None),
        color=alt.condition(alt.datum.chosen, alt.value("#2e7d32"), alt.value("#90a4ae")),
        tooltip=[alt.Tooltip("class:N"), alt.Tooltip("probability:Q", format=".2%")],
    )
    text = chart.transform_filter(alt.datum.probability >= 0.0005).mark_text(align="left", dx=3).encode(
        text=alt.Text("probability:Q", format=".1%"), color=alt.value("#333"))
    layers = chart + text
    if threshold is not None:
        layers += alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(strokeDash=[4, 3], color="#c62828").encode(
            x="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", title=f"threshold for {chosen}", format=".3f")])
    return layers.properties(height=alt.Step(height or 22))


CLASS_METRIC_COLUMNS = ("precision", "recall", "f1")


def class_metrics_table(metrics: dict[str, dict[str, float]], *, key: str) -> None:
    """One row a class: precision, recall, F1 (3 decimals) and support, as
    ``core.metrics.class_metrics`` gives them (a class never predicted has precision 0)."""
    frame = pd.DataFrame(
        [{"class": str(name), **{k: m[k] for k in CLASS_METRIC_COLUMNS}, "support": int(m["support"])}
         for name, m in metrics.items()],
        columns=["class", *CLASS_METRIC_COLUMNS, "support"],
    )
    st.dataframe(frame, hide_index=True, key=key,
                 column_config={k: st.column_config.NumberColumn(format="%.3f") for k in CLASS_METRIC_COLUMNS})
