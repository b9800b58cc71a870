"""Predict: a run's checkpoint or an uploaded one; images uploaded or taken with the
camera, each with its top-k probabilities. Evaluate a checkpoint on a dataset's split as a
job on a worker: accuracy and balanced accuracy, confusion matrix, per-class accuracy,
precision, recall and F1, the most confident mistakes.

A run's default checkpoint is ``core.selection``'s: best.pt, or the last checkpoint when
validation held too few images to choose (the reason is shown). The page names the
checkpoint it uses and shows that checkpoint's own metrics. Each image is shown as the
model receives it, with warnings when it differs from the training images
(``core.predict.input_warnings``, with those that make it unlike every training image
first) and, where its negative looks like them, an option to invert it. With an operating
point, the headline says that it decided and the bars mark its threshold; an evaluation
reports both by the top class and with the operating point. An image whose
out-of-distribution score (``core.ood``) is beyond the checkpoint's stored threshold is
answered "none of these", beside "not sure" for a low probability."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from core.records import checkpoints as checkpoint_records
from core import selection
from core.data.images import open_image, original_size
from core.data.preprocess import Preprocessing
from core.data.registry import load_dataset
from core.errors import ImoriError
from core.jobs.evaluate import EvaluationJob, params as evaluation_params, split_warnings
from core.jobs.kinds import CALIBRATE, EVALUATE
from core.metrics import balanced_accuracy, class_metrics, most_confused
from core.models.specs import list_models
from core.predict import UNLIKE, Evaluation, invert_image, operating_point_rule, predictions_csv
from core.records import jobs as job_records, queries
from core.saliency import explain
from core.status import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED
from core.text import plural
from dashboard import charts, fmt, jobs, live, loading, nav, uploads

FROM_CHECKPOINT = "(as the checkpoint says)"

st.title("Predict")


# -- which checkpoint -------------------------------------------------------------------------


@st.cache_data(max_entries=64, show_spinner=False)
def _checkpoint_data(path: str, mtime: float) -> dict[str, Any]:
    return selection.read_data(path)


def checkpoint_data(path: str) -> dict[str, Any]:
    """A checkpoint's ``data``, cached by path and modification time."""
    return _checkpoint_data(path, Path(path).stat().st_mtime)


def choose(path: str) -> None:
    st.session_state.pr_ckpt = path


def from_run() -> tuple[str | None, dict[str, Any], int | None]:
    started = queries.RunFilter(status=(RUNNING, SUCCEEDED, FAILED, CANCELLED))
    run = nav.run_picker(key="pr_run", where=started)
    if run is None:
        if queries.count_runs(started) == 0:
            st.info("No run has a checkpoint yet: train one, or upload a checkpoint.", icon=":material/info:")
        return None, {}, None
    rows = sorted(checkpoint_records.checkpoints(run.id), key=lambda r: (not r.is_best, -r.step))
    if not rows:
        st.info(f"Run {run.id} has no checkpoint yet (one is written after each epoch).", icon=":material/info:")
        return None, {}, run.id
    choice = selection.choose_checkpoint(run.id, data_of=checkpoint_data)
    last = choice.last.path if choice.last is not None else None

    def label(row: Any) -> str:
        text = ("★ " if row.is_best else "") + fmt.checkpoint_label(row)
        tags = (["best validation score"] if row.is_best else []) + (["last"] if row.path == last else [])
        tags += ["default"] if row.path == choice.path else []
        return text + (f" ({', '.join(tags)})" if tags else "")

    labels = {r.path: label(r) for r in rows}
    if st.session_state.get("pr_ckpt") not in labels:
        st.session_state.pr_ckpt = choice.path if choice.path in labels else rows[0].path
    pick, best_button, last_button = st.columns([6, 1, 1], vertical_alignment="bottom")
    path = pick.selectbox("Checkpoint", list(labels), key="pr_ckpt", format_func=labels.get)
    if choice.best is not None:
        best_button.button("Best", key="pr_use_best", on_click=choose, args=(choice.best.path,),
                           disabled=path == choice.best.path, width="stretch",
                           help="best.pt: the checkpoint with the best validation score")
    if last:
        last_button.button("Last", key="pr_use_last", on_click=choose, args=(last,), disabled=path == last,
                           width="stretch", help="the run's newest checkpoint: the most trained model")
    if choice.few:
        st.warning(f"**Validation cannot choose the best checkpoint here, so the last one is the default.** "
                   f"{choice.reason[:1].upper()}{choice.reason[1:]}.", icon=":material/warning:")
    elif choice.path:
        st.caption(f"Default: {choice.reason}.")
    return path, {}, run.id


def shown_name(path: str) -> str:
    """A checkpoint's name as the user knows it: an upload's own file name, not the name
    it is stored under."""
    return (st.session_state.get("pr_upload_names") or {}).get(str(path)) or Path(path).name


def show_checkpoint(predictor: Any, path: str) -> None:
    """Name the checkpoint in use and show its own metrics (those of its step)."""
    ckpt = predictor.checkpoint
    name = shown_name(path)
    if ckpt.kind != "imori":
        st.markdown(f"Using **{name}** (a bare state_dict: no metrics recorded)")
        return
    st.markdown(f"Using **{name}**: epoch {ckpt.epoch}, step {ckpt.step}. Its metrics, at that step:")
    metrics = ckpt.metrics or {}
    columns = st.columns(4)
    for column, (key, label) in zip(columns, (("val_accuracy", "Validation accuracy"), ("val_loss", "Validation loss"),
                                             ("test_accuracy", "Test accuracy"), ("test_loss", "Test loss"))):
        value = metrics.get(key)
        column.metric(label, fmt.pct(value) if key.endswith("accuracy") else fmt.num(value))
    if not metrics:
        st.caption("This checkpoint was written mid-epoch, before an evaluation: it has no metrics of its own.")
    few = selection.few_validation_images(ckpt.data)
    if few and metrics.get("val_accuracy") is not None:
        total = sum(int(n) for n in (ckpt.data.get("val_per_class") or {}).values())
        st.caption(f"Its validation accuracy is over {plural(total, 'image')} only: a difference of one image moves it by "
                   f"{fmt.pct(1 / max(1, total))}.")


def from_upload() -> tuple[str | None, dict[str, Any], None]:
    left, right = st.columns(2)
    with left:
        uploaded = uploads.safe_uploader(
            "Checkpoint (.pt / .pth): imori's, or a tutorial's bare state_dict",
            uploads.CHECKPOINT_TYPES, "application/octet-stream", key="pr_ckpt_upload", max_upload_size=max(1, uploads.MAX_CHECKPOINT_BYTES // uploads.MB),
        )
    specs = {s.name: s for s in list_models()}
    with right:
        model = st.selectbox("Model", [FROM_CHECKPOINT, *specs], key="pr_model",
                             help="An imori checkpoint names its model; a bare state_dict (torch.save(model.state_dict())) "
                                  "needs it: e.g. mynet for seed 000's cnn.pt")
        classes_text = st.text_input("Class names, in output order (bare state_dict)", key="pr_classes",
                                     placeholder="e.g. akahara, madara  (default: 0, 1, 2, …)")
        options: dict[str, Any] = {}
        if model in specs:
            for option, choices in specs[model].option_choices.items():
                options[option] = st.selectbox(option, list(choices), key=f"pr_opt_{model}_{option}")
    if uploaded is None:
        return None, {}, None
    data = uploads.read_upload(uploaded, max_bytes=uploads.MAX_CHECKPOINT_BYTES, kinds=uploads.CHECKPOINT_TYPES,
                               what="checkpoint")
    path = uploads.store_upload(data, uploaded.name, "checkpoints")
    st.session_state.setdefault("pr_upload_names", {})[str(path)] = uploaded.name  # what the user calls it
    bare: dict[str, Any] = {}
    if model in specs:
        classes = [c.strip() for c in classes_text.replace(";", ",").split(",") if c.strip()]
        bare = {"model": model, "classes": classes or None, "options": options}
    return str(path), bare, None


source = st.segmented_control("Checkpoint from", ["a run", "an upload"], default="a run", key="pr_source",
                              persist_state="session") or "a run"
checkpoint, bare, run_id = (None, {}, None)
with fmt.user_errors():
    checkpoint, bare, run_id = from_run() if source == "a run" else from_upload()

predictor = None
if checkpoint:
    try:
        predictor = loading.cached_predictor(checkpoint, **bare)
    except ImoriError as err:
        message = str(err).replace(str(checkpoint), shown_name(checkpoint)).replace(Path(checkpoint).name, shown_name(checkpoint))
        st.error(f"Cannot use this checkpoint: {message}", icon=":material/warning:")
if predictor is not None:
    prep = predictor.preprocessing
    st.caption(
        f"**{predictor.checkpoint.model_name}** · {len(predictor.classes)} classes "
        f"({', '.join(map(str, predictor.classes[:12]))}{' …' if len(predictor.classes) > 12 else ''}) · "
        f"input {prep.channels}x{prep.height}x{prep.width} {prep.channel_order if prep.channels == 3 else 'grayscale'}"
    )
    show_checkpoint(predictor, checkpoint)


# -- images -----------------------------------------------------------------------------------


def describe(image: Any) -> str:
    bands = len(image.getbands())
    width, height = original_size(image)
    return f"{width}x{height}, {bands} channel{'s' if bands != 1 else ''} ({image.mode})"


def show(predictions: list[Any], entries: list[dict[str, Any] | None], top_k: int, not_sure: float = 0.0) -> None:
    """Each image: as uploaded, as the model receives it, its warnings, the invert option
    and its probabilities. ``entries``: one per prediction (None for an unreadable image)."""
    prep = predictor.preprocessing
    seen = f"{prep.width}x{prep.height}, {'grayscale' if prep.channels == 1 else prep.channel_order}"
    for prediction, entry in zip(predictions, entries):
        with st.container(border=True):
            if prediction.error or entry is None:
                message = (prediction.error or "unreadable").replace("uploaded image", prediction.source, 1)
                st.error(message if prediction.source in message else f"{prediction.source}: {message}",
                         icon=":material/warning:")
                continue
            original, model_view, chart = st.columns([1, 1, 3], vertical_alignment="center")
            original.image(loading.upscale(entry["original"], 140), width=140,
                           caption=f"{prediction.source}: {describe(entry['original'])}")
            model_view.image(loading.tensor_to_image(prediction.seen, prep.channel_order, 140), width=140,
                             caption=f"what the model sees: {seen}" + (", inverted" if entry["inverted"] else ""))
            label = prediction.label
            probability = prediction.probabilities[label]
            point = predictor.thresholds.get(label) if prediction.decision else None
            if point is not None and probability < point["threshold"]:
                point = None  # no class reached its threshold: the likeliest of the others answered
            how = (f" by the operating point: {label} when p({label}) ≥ {point['threshold']:.3f}" if point
                   else "" if prediction.decision in (None, prediction.top[0][0]) else
                   f" by the operating point: no class reached its threshold ({operating_point_rule(predictor.thresholds)})")
            if prediction.none_of_these:  # beyond the threshold fitted on the validation split
                ref = predictor.ood_reference or {}
                chart.markdown(f"Predicted class: **none of these** (it looks like none of the {len(predictor.classes)} "
                               f"classes: out-of-distribution score {prediction.ood_score:.3f} is above "
                               f"{ref.get('threshold', float('nan')):.3f}, which {fmt.pct(ref.get('keep', 0.95), 0)} of "
                               f"the validation images stay within; the likeliest, {label}, is {fmt.pct(probability)})")
            elif not prediction.sure:  # the predictor's rule: below min_confidence, "not sure"
                which = "the likeliest" if label == prediction.top[0][0] else "the operating point's answer"
                chart.markdown(f"Predicted class: **not sure** ({which}, {label}, is {fmt.pct(probability)}: "
                               f"below {fmt.pct(not_sure, 0)})")
            else:
                chart.markdown(f"Predicted class: **{label}** ({fmt.pct(probability)}){how}")
            shown = prediction.top[:top_k]
            if label not in dict(shown):  # the answer's bar is always shown
                shown = [*shown[:-1], (label, probability)]
            chart.altair_chart(charts.bars(shown, chosen=label, threshold=point["threshold"] if point else None),
                               width="stretch")
            with chart.expander("Every class's probability"):
                st.dataframe(
                    pd.DataFrame({"class": list(prediction.probabilities), "probability": list(prediction.probabilities.values())}),
                    hide_index=True,
                    column_config={"probability": st.column_config.NumberColumn(format="%.4f")},
                )
            for warning in sorted(prediction.warnings, key=lambda w: UNLIKE not in w):  # unlike: first
                st.warning(warning, icon=":material/warning:")
            why_key = entry["key"].replace("pr_invert_", "pr_why_")
            if st.toggle("Why? Show where the model looked (HiResCAM)", key=why_key):
                given = entry["given"]
                with st.spinner("Computing the map of where it looked…"), fmt.user_errors("No map: "):
                    saliency = explain(predictor, given, target=label)
                    st.image(loading.upscale(saliency.overlay, 280), width=280,
                             caption=f"HiResCAM for {saliency.target} ({fmt.pct(saliency.probability)}): red where "
                                     "the model looked hardest")
            if entry["inverted"] or any("looks inverted" in w for w in prediction.warnings):  # never for a natural photo
                st.checkbox("Invert this image's colours (dark on light ↔ light on dark) and predict again",
                            key=entry["key"], help="The negative of the image: for a model trained on light strokes on "
                                                   "a dark background (digits, MNIST), a photo of dark ink on light paper.")


if predictor is not None:
    st.subheader("Classify images")
    upload_tab, camera_tab = st.tabs(["Upload images", "Camera"])
    with upload_tab:
        files = uploads.image_uploader(
            f"Images: {uploads.IMAGE_KINDS} (up to {uploads.MAX_IMAGES})", accept_multiple_files=True,
            key="pr_images", max_upload_size=max(1, uploads.MAX_IMAGE_BYTES // uploads.MB),
        ) or []
    with camera_tab:
        shot = None
        if st.toggle("Use the camera", key="pr_camera_on"):
            shot = st.camera_input("Take a picture", key="pr_camera")
    k_col, sure_col, note_col = st.columns([1, 1, 2], vertical_alignment="center")
    top_k = k_col.slider("Top k", 1, max(2, min(10, len(predictor.classes))), min(5, len(predictor.classes)), key="pr_topk")
    not_sure = sure_col.slider("Answer \"not sure\" below", 0.0, 0.99, 0.0, 0.01, key="pr_not_sure", format="%.2f",
                               help="When the top probability is below this, the answer is \"not sure\" "
                                    "(0: always answer)")
    ood = predictor.ood_reference
    note_col.caption(f"Answers \"none of these\" beyond an out-of-distribution score of {ood['threshold']:.3f} "
                     f"({ood['method'].replace('_', ' ')} score; {fmt.pct(ood['keep'], 0)} of the {ood['images']} "
                     "validation images stay within)." if ood else
                     "No \"none of these\" threshold stored with this checkpoint (runs store one at their end; "
                     "calibrating fits one for an older checkpoint).")
    if predictor.temperature != 1.0:
        points = "; ".join(f"{c} when p({c}) ≥ {p['threshold']:.2f} (recall {fmt.pct(p['recall'], 0)}, precision "
                           f"{fmt.pct(p['precision'], 0)} on validation)" for c, p in predictor.thresholds.items())
        note_col.caption(f"Probabilities are calibrated: temperature {predictor.temperature:.2f}, fitted on the "
                         "validation split (`imori calibrate`)." + (f" Operating point: {points}." if points else ""))
    else:
        note_col.caption("Probabilities as trained (not calibrated: a temperature fitted on the validation split makes "
                         "them honest).")
        if predictor.checkpoint.config and Path(checkpoint).is_file():
            if note_col.button("Calibrate on a worker", key="pr_calibrate", icon=":material/balance:",
                               disabled=jobs.busy(CALIBRATE, str(checkpoint))):
                if jobs.submit(CALIBRATE, str(checkpoint)) is not None:
                    st.rerun()
            with note_col:
                jobs.job_view(CALIBRATE, str(checkpoint), "Calibrating")

    named: list[tuple[str, bytes]] = []
    if len(files) > uploads.MAX_IMAGES:
        st.warning(f"{len(files)} images given: only the first {uploads.MAX_IMAGES} are classified.", icon=":material/warning:")
    for file in files[: uploads.MAX_IMAGES]:
        try:
            named.append((file.name, uploads.read_image_upload(file)))  # judged by content, not by name
        except ImoriError as err:
            st.error(str(err), icon=":material/warning:")
    if shot is not None:
        try:
            named.append(("camera", uploads.read_image_upload(shot, what="picture")))
        except ImoriError as err:
            st.error(str(err), icon=":material/warning:")
    if named:
        entries: list[dict[str, Any] | None] = []
        inputs: list[Any] = []
        names: list[str] = []
        keys: set[str] = set()
        for name, data in named:
            names.append(name)
            try:
                # every decode failure is a DatasetError; a 108-megapixel photo is decoded smaller
                picture = open_image(data, name=name, fit=predictor.preprocessing.size)
            except ImoriError:
                inputs.append(data)  # the Predictor reports it as this image's error
                entries.append(None)
                continue
            key = f"pr_invert_{hashlib.sha256(data).hexdigest()[:16]}"
            while key in keys:  # the same file given twice
                key += "+"
            keys.add(key)
            inverted = bool(st.session_state.get(key, False))
            given = invert_image(picture) if inverted else picture
            inputs.append(given)
            entries.append({"original": picture, "key": key, "inverted": inverted, "given": given})
        started = time.perf_counter()
        predictions = loading.predict(predictor, inputs, names, min_confidence=not_sure)
        took = time.perf_counter() - started
        st.session_state.pr_results = [
            {**p.to_dict(), "inverted": bool(e and e["inverted"]),
             "input_brightness": float(p.seen.float().mean()) / 255.0 if p.seen is not None else None}
            for p, e in zip(predictions, entries)
        ]
        ok = sum(1 for p in predictions if not p.error)
        given = min(len(files), uploads.MAX_IMAGES) + (shot is not None)  # refused uploads count too
        st.caption(f"{ok} of {plural(given, 'image')} classified in {took * 1000:.0f} ms")
        if len(predictions) > 1:  # classify many: the table, and every probability as CSV

            st.dataframe(pd.DataFrame([{"file": p.source, "class": p.answer if not p.error else "",
                                        "confidence": p.top[0][1] if not p.error else None,
                                        "none of these": p.none_of_these, "error": p.error or ""}
                                       for p in predictions]),
                         hide_index=True, column_config={"confidence": st.column_config.ProgressColumn(
                             "confidence", min_value=0.0, max_value=1.0, format="percent")})
            st.download_button("All predictions (CSV)", predictions_csv(predictions, predictor.classes),
                               file_name="predictions.csv", mime="text/csv", key="pr_csv", on_click="ignore",
                               icon=":material/download:")
        show(predictions, entries, top_k, not_sure)


# -- evaluation on a worker -------------------------------------------------------------------


@st.cache_resource(max_entries=2, show_spinner="Loading the images…")
def split_images(dataset: str, prep_json: str, seed: int, split: str):
    """The uint8 images of a split, for the gallery (read from the decoded cache)."""
    prep = Preprocessing.from_dict(json.loads(prep_json))
    data = load_dataset(dataset, prep, seed=seed)
    return {"test": data.test, "train": data.train}[split].images


@st.cache_data(max_entries=4, show_spinner=False)
def split_names(dataset: str, prep_json: str, seed: int, split: str) -> list[str]:
    """The file names of a split's images, in the evaluation's order ([] for a built-in set)."""
    data = load_dataset(dataset, Preprocessing.from_dict(json.loads(prep_json)), seed=seed)
    return list({"test": data.test, "train": data.train}[split].names)


def image_name(row: Any, ev_predictor: Any, index: int) -> str:
    """What names image ``index`` of an evaluation's split: its file name, else '#index'."""
    names = split_names(row.dataset, json.dumps(ev_predictor.preprocessing.to_dict(), sort_keys=True),
                        int(ev_predictor.checkpoint.config.get("seed", 0)), row.split)
    return names[index] if 0 <= index < len(names) else f"#{index}"


def heat_map(result: dict[str, Any]):
    classes = [str(c) for c in result["classes"]]
    rows = [
        {"true": classes[i], "predicted": classes[j], "count": n, "share": n / max(1, sum(result["confusion"][i]))}
        for i, row in enumerate(result["confusion"])
        for j, n in enumerate(row)
    ]
    frame = pd.DataFrame(rows)
    side = max(260, min(720, 34 * len(classes)))
    base = alt.Chart(frame).encode(
        x=alt.X("predicted:N", sort=classes, title="predicted"),
        y=alt.Y("true:N", sort=classes, title="true"),
    )
    pick = alt.selection_point(name="cell", fields=["true", "predicted"], on="click", clear="dblclick")
    cells = base.mark_rect(cursor="pointer").encode(
        color=alt.condition(
            alt.datum.count == 0,
            alt.value("#ffffff"),  # an empty cell is blank, not the scale's palest blue
            alt.Color("share:Q", scale=alt.Scale(domain=[0, 1], range=["#dbe9f6", "#08519c"]), title="share of row"),
        ),
        tooltip=["true", "predicted", "count", alt.Tooltip("share:Q", format=".1%")],
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.6)),
    ).add_params(pick)
    chart = cells
    if len(classes) <= 20:
        chart = cells + base.mark_text(fontSize=11).encode(
            text=alt.condition(alt.datum.count > 0, "count:Q", alt.value("")),
            color=alt.condition(alt.datum.share > 0.5, alt.value("white"), alt.value("#333")),
        )
    return chart.properties(width=side, height=side)


def per_class_bars(result: dict[str, Any]):
    frame = pd.DataFrame({"class": [str(c) for c in result["per_class"]], "accuracy": list(result["per_class"].values())})
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        y=alt.Y("class:N", sort=[str(c) for c in result["classes"]], title=None),
        color=alt.condition(alt.datum.accuracy < result["accuracy"], alt.value("#e4572e"), alt.value("#4c78a8")),
        tooltip=["class", alt.Tooltip("accuracy:Q", format=".1%")],
    ).properties(height=alt.Step(20))


def result_class_metrics(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per-class precision, recall, F1, support (computed for evaluations recorded before
    they were stored)."""
    return result.get("class_metrics") or class_metrics(result["confusion"], [str(c) for c in result["classes"]])


def evaluation_images(row: Any) -> tuple[Any, Any]:
    """(the evaluation's predictor, its split's uint8 images as the model received them);
    ImoriError when they cannot be read."""
    ev_predictor = loading.cached_predictor(row.checkpoint, **(row.bare or {}))
    prep = ev_predictor.preprocessing
    seed = int(ev_predictor.checkpoint.config.get("seed", 0))  # a flat folder's split depends on it
    return ev_predictor, split_images(row.dataset, json.dumps(prep.to_dict(), sort_keys=True), seed, row.split)


def thumbnail(ev_predictor: Any, image: Any, target: str | None = None):
    """An image of a split at 96 px; with ``target``, with the class activation map of that class on it."""
    order = ev_predictor.preprocessing.channel_order
    if target is None:
        return loading.tensor_to_image(image, order, 96)

    with fmt.user_errors("No map: "):
        return loading.upscale(explain(ev_predictor, loading.tensor_to_image(image, order, None), target=target).overlay, 96)
    return loading.tensor_to_image(image, order, 96)


def gallery(row: Any, result: dict[str, Any]) -> None:
    mistakes = result.get("misclassified") or []
    if not mistakes:
        st.success("No mistakes on this split.", icon=":material/target:")
        return
    st.markdown(f"**Most confident mistakes** ({len(mistakes)} shown, most confident first)")
    try:
        ev_predictor, images = evaluation_images(row)
    except ImoriError as err:
        st.caption(f"The images cannot be shown: {err}")
        ev_predictor, images = None, None
    why = images is not None and st.toggle("With where the model looked (HiResCAM of the class it predicted)",
                                           key=f"pr_mistakes_cam_{row.id}")
    per_row = 8
    for start in range(0, min(len(mistakes), 48), per_row):
        cols = st.columns(per_row)
        for col, m in zip(cols, mistakes[start : start + per_row]):
            with col:
                if images is not None and 0 <= m["index"] < len(images):
                    st.image(thumbnail(ev_predictor, images[m["index"]], m["predicted"] if why else None), width=96)
                st.caption(f"true **{m['true']}** → **{m['predicted']}** ({fmt.pct(m['confidence'], 0)})",
                           help=image_name(row, ev_predictor, m["index"]) if images is not None else None)


def headline_metrics(figures: dict[str, Any]) -> None:
    """Accuracy, balanced accuracy, images and the weakest class of one way of scoring."""
    a, b, c, d = st.columns(4)
    a.metric("Accuracy", fmt.pct(figures["accuracy"], 2))
    balanced = figures.get("balanced_accuracy", balanced_accuracy(figures["confusion"]))
    b.metric("Balanced accuracy", fmt.pct(balanced, 2) if balanced is not None else "—",
             help="The mean of the per-class recalls: every class counts the same, however many images it has.")
    c.metric("Images", f"{figures['count']:,}")
    worst = min(figures["per_class"].items(), key=lambda kv: kv[1]) if figures["per_class"] else None
    d.metric("Weakest class", fmt.pct(worst[1]) if worst else "—", delta=worst[0] if worst else None,
             delta_color="off", delta_arrow="off")  # its name below: a long one no longer cuts the figure


def show_evaluation(eval_id: int) -> None:
    row = EvaluationJob.of(job_records.get_job(eval_id))
    st.caption(f"Evaluation {row.id}: {Path(row.checkpoint).name} on {row.dataset} ({row.split} split) · "
               f"{fmt.status_label(row.status)}")
    if row.status in live.ACTIVE:
        st.info("Waiting for a worker…" if row.status == QUEUED else "A worker is evaluating…", icon=":material/hourglass_top:")
        return
    if row.status != SUCCEEDED or row.result is None:
        st.error(f"The evaluation {row.status if row.status != FAILED else 'failed'}: {row.error or 'no result'}", icon=":material/error:")
        return
    result = row.result
    for warning in split_warnings(row.dataset, row.split):  # as imori evaluate says
        st.warning(f"**{row.dataset}**: {warning} (its Health tab on Datasets names them).", icon=":material/warning:")
    point = result.get("operating_point")
    if point:
        st.markdown("**By the top class** (each image's likeliest class)")
    headline_metrics(result)
    if point:
        st.markdown(f"**With the operating point: {point['rule']}** (set by calibration; what Predict answers)")
        headline_metrics({**point, "count": result["count"]})
        with st.expander("Precision, recall and F1 with the operating point"):
            charts.class_metrics_table(point["class_metrics"], key="pr_class_metrics_point")
    matrix, classes = st.columns([3, 2])
    with matrix:
        st.markdown("**Confusion matrix**" + (" by the top class" if point else "")
                    + " (rows: true class, columns: predicted; click a cell to see its images)")
        event = st.altair_chart(heat_map(result), on_select="rerun", key=f"pr_cm_{row.id}")
        clicked = ((event or {}).get("selection") or {}).get("cell") or []
    with classes:
        st.markdown("**Per-class accuracy** (red: below the overall accuracy)")
        st.altair_chart(per_class_bars(result), width="stretch")
    st.markdown("**Per-class precision, recall and F1** (a class never predicted has precision 0)")
    charts.class_metrics_table(result_class_metrics(result), key="pr_class_metrics")
    cell_view(row, result, clicked[0] if clicked else None)
    gallery(row, result)


def cell_view(row: Any, result: dict[str, Any], clicked: dict[str, Any] | None) -> None:
    """The most-confused pairs, and the images of one cell of the matrix (the one clicked,
    or picked here), the most confident first, with where the model looked on demand."""
    classes = [str(c) for c in result["classes"]]
    pairs = most_confused(result["confusion"], classes)
    if pairs:
        st.markdown("**Most confused** (true → predicted: images)  \n" + " · ".join(
            f"{t} → {p}: {n}" for t, p, n in pairs[:10]))
    counts = {(classes[i], classes[j]): n for i, r in enumerate(result["confusion"]) for j, n in enumerate(r) if n}
    options = [f"{t} → {p}" for t, p, _ in pairs] + [f"{c} → {c}" for c in classes if counts.get((c, c))]
    key = f"pr_cell_{row.id}"
    if clicked and clicked.get("true") is not None:
        wanted = f"{clicked['true']} → {clicked['predicted']}"
        if wanted in options and st.session_state.get(f"{key}_clicked") != wanted:
            st.session_state[key] = wanted  # a click on the matrix opens that cell
            st.session_state[f"{key}_clicked"] = wanted
    chosen = st.selectbox("Open a cell of the matrix", [None, *options], key=key,
                          format_func=lambda o: "—" if o is None else f"{o} ({plural(counts[tuple(o.split(' → '))], 'image')})")
    if chosen is None:
        return
    if not result.get("truth"):
        st.caption("This evaluation was recorded before cells could be opened: evaluate again to see its images.")
        return
    true, predicted = chosen.split(" → ")

    members = Evaluation(**{k: v for k, v in result.items() if k in Evaluation.__dataclass_fields__}).cell(true, predicted)
    try:
        ev_predictor, images = evaluation_images(row)
    except ImoriError as err:
        st.caption(f"The images cannot be shown: {err}")
        return
    shown = members[:24]
    st.markdown(f"**{true} → {predicted}**: {plural(len(members), 'image')}, the most confident first"
                + (f" ({len(shown)} shown)" if len(members) > len(shown) else ""))
    saliency = st.toggle("With where the model looked (HiResCAM)", key=f"{key}_cam")
    pictures = [thumbnail(ev_predictor, images[index], predicted if saliency else None) for index, _ in shown]
    st.image(pictures, caption=[f"{fmt.file_name(image_name(row, ev_predictor, index), 60, markdown=False)} · "
                                f"{fmt.pct(confidence, 0)}"
                                for index, confidence in shown], width=96)


if checkpoint and predictor is not None:  # a checkpoint that does not load cannot be evaluated either
    st.subheader("Evaluate on a dataset")
    st.caption("Runs as a job on a worker (the dashboard never does training-size work).")
    infos = [d for d in loading.all_datasets() if d.present]
    names = [d.name for d in infos]
    default = (predictor.checkpoint.config.get("dataset") if predictor is not None else None) or "digits"
    # The dataset follows the checkpoint: another run's (or upload's) starts at its own dataset.
    if st.session_state.get("pr_eval_for") != str(checkpoint) or st.session_state.get("pr_eval_dataset") not in names:
        st.session_state.pr_eval_dataset = default if default in names else names[0]
        st.session_state.pr_eval_for = str(checkpoint)
    a, b, c = st.columns([3, 2, 2], vertical_alignment="bottom")
    dataset = a.selectbox("Dataset", names, key="pr_eval_dataset",
                          format_func=lambda n: fmt.dataset_label(next(d for d in infos if d.name == n)))
    split = b.segmented_control("Split", ["test", "train"], default="test", key="pr_eval_split") or "test"
    if c.button("Evaluate on a worker", type="primary", key="pr_evaluate", icon=":material/fact_check:"):
        params = evaluation_params(dataset, split, model=bare.get("model"), classes=bare.get("classes"),
                                   options=bare.get("options"))
        job_id = jobs.submit(EVALUATE, str(checkpoint), params, run_id=run_id)
        if job_id is not None:
            st.session_state.pr_eval_pick = job_id

    recent = [EvaluationJob.of(j) for j in job_records.list_jobs(kind=EVALUATE, subject=str(checkpoint), limit=20)]
    if recent:
        ids = [e.id for e in recent]
        if st.session_state.get("pr_eval_pick") not in ids:
            st.session_state.pr_eval_pick = ids[0]
        by_eval = {e.id: e for e in recent}
        pick = st.selectbox("Evaluation", ids, key="pr_eval_pick",
                            format_func=lambda i: f"#{i}: {by_eval[i].dataset}, {by_eval[i].split} split")
        if by_eval[pick].status in live.ACTIVE:
            jobs.job_view(EVALUATE, str(checkpoint), f"Evaluating on {by_eval[pick].dataset}", job_id=pick)
        else:
            show_evaluation(pick)
