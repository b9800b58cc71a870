"""New run: recipe cards that fill the form, every RunConfig setting, a sweep, and Queue.

The plain settings' widgets are generated from their descriptions in ``core.config``
(``dashboard/settings_form.py``); this page draws only the ones whose choices come from
the registries and the records (dataset, model and its options, input size, length,
warm start).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st
import torch

from core.records import checkpoints as checkpoint_records
from core import config as run_config
from core.config import SECTIONS, expand_sweep
from core.errors import ImoriError
import core.jobs.lr_find as lr_find_job
from core.data.manifests import is_imported
from core.health.fix import fix_dataset
from core.jobs.kinds import LR_FIND
from core.models import sources
from core.models.registry import build_model
from core.models.specs import get_spec, list_models, pretrained_available
from core.models.cost import cpu_ms_per_image, training_seconds
from core.models.summary import summarize
from core.precision import cpu_supports_bf16, resolve_precision
from core.recipes import DEFAULT_AUTO_MINUTES, RECIPES, is_small_grayscale, recipe_config, recipe_results
from core.records import queries
from core.status import CANCELLED, SUCCEEDED
from core.text import plural
from dashboard import fmt, jobs, live, loading, nav, settings_form as form, uploads
from worker import client

OTHER_DATASET = "__path__"
FRESH = "__fresh__"
INIT_PATH = "__init_path__"
RECIPE_ORDER = ("finetune", "seed003", "seed004", "seed000", "seed002")  # for photos
GRAYSCALE_ORDER = ("seed003", "seed004", "seed000", "seed002", "finetune")  # for digit-sized images
CARDS_PER_ROW = 3
KEEP = form.KEEP


# -- the form's state -------------------------------------------------------------------------


def fill(config: Any, recipe: str | None = None) -> None:
    """Put ``config`` into the form's widgets (a recipe card's button, first visit)."""
    s = st.session_state
    form.fill(config)
    known = {d.name for d in loading.all_datasets()}
    if config.dataset in known:
        s.nr_dataset, s.nr_dataset_path = config.dataset, ""
    else:
        s.nr_dataset, s.nr_dataset_path = OTHER_DATASET, config.dataset
    s.nr_model = config.model
    for option, value in config.model_options.items():
        s[f"nr_opt_{config.model}_{option}"] = value
    s.nr_size_default = config.image_size is None
    height, width = config.image_size or config.spec.size_for(config.model_options)
    s.nr_height, s.nr_width = int(height), int(width)
    s.nr_channel_order = config.channel_order or "recipe"
    s.nr_mean = ", ".join(f"{v:g}" for v in config.mean) if config.mean else ""
    s.nr_std = ", ".join(f"{v:g}" for v in config.std) if config.std else ""
    s.nr_length = "iterations" if config.iterations is not None else "epochs"
    s.nr_epochs = int(config.epochs or 1)
    s.nr_iterations = int(config.iterations or 100)
    s.nr_init = INIT_PATH if config.init_from else FRESH
    s.nr_init_path = config.init_from or ""
    s.nr_sweep_lr = ""
    s.nr_sweep_bs = ""
    s.nr_recipe = recipe


def use_recipe(name: str, overrides: dict[str, Any] | None = None) -> None:
    """Fill the form from a recipe card. The tutorials' recipes bring their own dataset;
    finetune is made for the user's photos, so it keeps a photo dataset already chosen."""
    overrides = dict(overrides or {})
    chosen = st.session_state.get("nr_dataset")
    if name == "finetune" and "dataset" not in overrides and chosen and chosen != OTHER_DATASET:
        info = {d.name: d for d in loading.all_datasets()}.get(chosen)
        if looks_like_photos(info):
            overrides["dataset"] = chosen
    fill(recipe_config(name, **overrides), recipe=name)
    st.session_state.nr_submitted = None


def model_changed() -> None:
    """A recipe's NLL loss cannot train a model that outputs logits: back to auto."""
    s = st.session_state
    if s.get("nr_loss") == "nll" and widgets_spec(s.nr_model).output == "logits":
        s.nr_loss = "auto"


def numbers(text: str, kind: type, what: str) -> tuple[list[Any], str | None]:
    """'0.1, 0.01 0.001' -> [0.1, 0.01, 0.001]; a word that is no number -> a reason."""
    values: list[Any] = []
    for part in text.replace(";", ",").replace(",", " ").split():
        try:
            value = kind(part) if kind is float else int(part)
        except ValueError:
            return [], f"sweep: {part!r} is not a {what}"
        if value not in values:
            values.append(value)
    return values, None


def dataset_choice() -> str:
    s = st.session_state
    return s.nr_dataset_path.strip() if s.nr_dataset == OTHER_DATASET else s.nr_dataset


def custom_values() -> tuple[dict[str, Any], list[str]]:
    """The settings this page draws itself, as plain values, and what is wrong with them."""
    s = st.session_state
    problems: list[str] = []
    dataset = dataset_choice()
    if not dataset:
        problems.append("choose a dataset (or give the path of a folder or ZIP on the server)")
    spec = widgets_spec(s.nr_model)
    options = {o: s.get(f"nr_opt_{s.nr_model}_{o}", choices[0]) for o, choices in spec.option_choices.items()}
    init = None
    if s.nr_init == INIT_PATH:
        init = s.nr_init_path.strip() or None
        if init is None:
            problems.append("give the path of the checkpoint to start from, or start from fresh weights")
    elif s.nr_init != FRESH:
        init = s.nr_init
    try:
        mean, std = run_config.parse_floats(s.nr_mean), run_config.parse_floats(s.nr_std)
    except ImoriError:
        mean = std = None
        problems.append("mean and std are numbers: one, or one per channel (e.g. 0.485, 0.456, 0.406)")
    values = dict(
        dataset=dataset or "digits",
        model=s.nr_model,
        model_options=options,
        image_size=None if s.nr_size_default else (int(s.nr_height), int(s.nr_width)),
        channel_order=None if s.nr_channel_order == "recipe" else s.nr_channel_order,
        mean=mean,
        std=std,
        epochs=int(s.nr_epochs) if s.nr_length == "epochs" else None,
        iterations=int(s.nr_iterations) if s.nr_length == "iterations" else None,
        init_from=init,
        recipe=s.get("nr_recipe"),
    )
    return values, problems


def read_form() -> tuple[Any, list[str], dict[str, list[Any]]]:
    """The form as a RunConfig, every reason it cannot run, and the sweep's values."""
    s = st.session_state
    try:
        custom, problems = custom_values()
    except ImoriError as err:
        return None, [str(err)], {}
    config, reasons = form.problems_of({**form.read(), **custom})
    problems += reasons
    if config is None:
        return None, problems, {}
    problems += config.machine_problems()
    sweep: dict[str, list[Any]] = {}
    lrs, why = numbers(s.nr_sweep_lr, float, "learning rate")
    if why:
        problems.append(why)
    sizes, why = numbers(s.nr_sweep_bs, int, "whole number")
    if why:
        problems.append(why)
    if lrs:
        sweep["lr"] = lrs
    if sizes:
        sweep["batch_size"] = sizes
    if sweep and not problems:
        problems += expand_sweep(config, sweep)[1]  # every run of the sweep must be valid
    return config, problems, sweep



def looks_like_photos(info: Any) -> bool:
    """An imported or folder dataset of photos, colour or grayscale (X-rays, solar cells,
    microscopy): what a pretrained backbone suits, not small grayscale drawings such as
    digits (``core.recipes.is_small_grayscale``, the automatic search's rule too)."""
    if info is None or info.kind not in ("folder", "csv"):
        return False
    return not small_grayscale(info)


def finetune_minutes(info: Any) -> int | None:
    """The finetune recipe's minutes on dataset ``info`` here: this machine's measured
    forward pass (``backbone_ms``) in the precision it trains in (``core.models.cost``);
    None where it cannot be estimated."""
    config = recipe_config("finetune", dataset=info.name)
    train = info.counts.get("train", info.total)
    seconds = training_seconds(config, train, max(0, info.total - train), ms_per_image=backbone_ms(config.model))
    return None if seconds is None else max(1, round(seconds / 60))


def first_recipe(datasets: list[Any]) -> tuple[str, dict[str, Any]]:
    """What a first visit preselects, the recipe of the first card it shows: finetune on
    the newest imported photo dataset when there is one (the user's own photos), else
    seed 003 on digits."""
    photos = [d for d in datasets if looks_like_photos(d)]
    return ("finetune", {"dataset": photos[-1].name}) if photos else ("seed003", {})


def recipe_order(photos: bool) -> tuple[str, ...]:
    """The recipe cards in the order shown: finetune first for photos, the tutorials'
    nets from scratch first for digit-sized images (what a first visit preselects first)."""
    return RECIPE_ORDER if photos else GRAYSCALE_ORDER


def small_grayscale(info: Any) -> bool:
    """Digit-sized one-channel images (core.auto's rule: the seed nets from scratch suit
    them); every other dataset is photos, for which the automatic search comes first."""
    side = max(info.native_size) if info is not None and info.native_size else None
    return info is not None and is_small_grayscale(info.channels, side)


def follow_dataset() -> None:
    """The form's dataset, chosen by hand, becomes the automatic card's too."""
    s = st.session_state
    if s.nr_dataset in {d.name for d in loading.all_datasets()}:
        s.nr_auto_dataset = s.nr_dataset


def queue_auto() -> None:
    """Queue the automatic search (recipe auto) on the card's dataset for its minutes,
    through the same submit as every run."""
    s = st.session_state
    s.nr_auto_problem = None
    try:
        run_id = client.submit(recipe_config("auto", dataset=s.nr_auto_dataset, max_minutes=float(s.nr_auto_minutes)))
    except ImoriError as err:
        s.nr_auto_problem = str(err)
        return
    s.nr_submitted = s.nr_auto_submitted = [run_id]


# The dataset, the minutes and the button: the button's share fits its label at the wide
# layout's width beside the sidebar (a 1280-pixel screen), about 8 pixels a character.
AUTO_COLUMNS = [2, 1, 2]
AUTO_LABEL = "Find the best model"


def auto_card(by_name: dict[str, Any]) -> None:
    """"Best model in N minutes": the dataset, the minutes, one button; core.auto chooses
    the rest on the validation split."""
    s = st.session_state
    st.subheader("Best model in N minutes")
    with st.container(border=True):
        info = by_name.get(s.nr_auto_dataset)
        tries = ("the tutorials' nets from scratch" if small_grayscale(info)
                 else "a linear head on each pretrained EfficientNet-Lite backbone")
        st.markdown(f"imori tries {tries}, trains the most promising with the time left and keeps what scores best "
                    "on the validation split: one run, ended within the minutes you give it.")
        # The button's column is wide enough for its label whole (the trial saw "Find the best mod…").
        data, minutes, go = st.columns(AUTO_COLUMNS, vertical_alignment="bottom")
        data.selectbox("Dataset", list(by_name), key="nr_auto_dataset", persist_state=KEEP,
                       format_func=lambda n: fmt.dataset_label(by_name[n]))
        minutes.number_input("Minutes", min_value=1, max_value=24 * 60, step=1, key="nr_auto_minutes",
                             persist_state=KEEP, help="The whole run's wall time: decoding, features, the search, the test")
        go.button(AUTO_LABEL, key="nr_auto_queue", type="primary", icon=":material/auto_awesome:",
                  on_click=queue_auto, width="stretch", help=f"Queue one run of recipe auto, ended within "
                                                          f"{plural(int(s.nr_auto_minutes), 'minute')}")
        if s.get("nr_auto_problem"):
            st.error(f"Not queued: {s.nr_auto_problem}", icon=":material/warning:")
        elif s.get("nr_auto_submitted") and s.get("nr_auto_submitted") == s.get("nr_submitted"):
            [run_id] = s.nr_auto_submitted
            st.page_link(nav.RUN_DETAIL, label=f"Queued run {run_id}: open it to watch its leaderboard fill in",
                         icon=":material/leaderboard:", query_params={"run": run_id})
            working, offline = live.workers()
            if offline or not working:
                st.warning("No worker is running, so the run waits: start one with `imori worker` "
                           "(or everything with `imori up`).", icon=":material/warning:")


@st.cache_data(ttl=30, show_spinner=False)
def weights_here(name: str) -> tuple[bool, str]:
    return pretrained_available(name)


def weights_note(name: str) -> str:
    spec = widgets_spec(name)
    if not spec.pretrainable:
        return ""
    return " (ImageNet weights here)" if weights_here(name)[0] else " (no ImageNet weights here)"


def weights_upload(model: str) -> None:
    """Upload a pretrained weights file for ``model``: kept under IMORI_HOME (where workers
    read it), loaded with weights_only, its keys checked against the model."""
    uploaded = uploads.safe_uploader(f"Upload ImageNet weights for {model} (.pth / .pt)", ["pth", "pt"],
                                     "application/octet-stream", key=f"nr_weights_upload_{model}")
    if uploaded is None:
        return
    marker = f"nr_weights_done_{model}"
    if st.session_state.get(marker) == (uploaded.name, uploaded.size):
        return
    with fmt.user_errors("Weights refused: "):
        data = uploads.read_upload(uploaded, max_bytes=uploads.MAX_CHECKPOINT_BYTES, kinds=("pth", "pt"), what="weights file")
        path = uploads.store_upload(data, uploaded.name, "weights")
        check_weights(model, str(path))
        st.session_state.nr_pretrained_path = str(path)
        st.session_state.nr_pretrained = True
        st.session_state[marker] = (uploaded.name, uploaded.size)
        st.success(f"{uploaded.name} fits {model}: the run will start from it.", icon=":material/check_circle:")


def check_weights(model: str, path: str) -> None:
    """Build the model from the file (on the meta device: shapes only) so that a file of
    another architecture is refused here, with the keys that do not fit."""
    try:
        build_model(model, 2, pretrained_path=path)
    except Exception as err:
        Path(path).unlink(missing_ok=True)
        raise err


@st.cache_data(show_spinner="Measuring the backbone on this CPU (once)…")
def backbone_ms(name: str) -> float:
    """Milliseconds per image of ``name`` on this CPU (core.models.cost: measured once, cached)."""
    return cpu_ms_per_image(name)


def machine_precision(model: str) -> str:
    """What a CPU run of ``model`` trains in here under ``auto``: ``"bf16"`` or ``"fp32"``."""
    return resolve_precision("auto", "cpu", model)


def widgets_spec(name: str):
    return get_spec(name)


@st.cache_data(max_entries=32, show_spinner="Summarising the model…")
def model_summary(name: str, classes: int, size: tuple[int, int] | None, options: tuple) -> str:
    """The model's parameter table, built on the meta device (shapes only, no memory)."""
    with torch.device("meta"):
        model = build_model(name, max(2, classes), image_size=size, options=dict(options))
    return summarize(model).as_text()


def previous_checkpoints(model: str) -> dict[str, str]:
    """Best checkpoints of earlier runs of ``model``: path -> label."""
    out: dict[str, str] = {}
    finished = queries.RunFilter(status=(SUCCEEDED, CANCELLED), model=model)
    for run in queries.list_runs(where=finished, limit=20):
        best = checkpoint_records.best_checkpoint(run.id) or checkpoint_records.latest_checkpoint(run.id)
        if best is not None:
            out[best.path] = f"run #{run.id} {run.name}: {fmt.checkpoint_label(best)}"
    return out


# -- the page ---------------------------------------------------------------------------------

st.title("New run")
if "nr_model" not in st.session_state:
    with st.spinner("Loading PyTorch, the models and the datasets (first visit only)…"):
        first, first_overrides = first_recipe(loading.all_datasets())
        fill(recipe_config(first, **first_overrides), recipe=first)
        if first_overrides:  # the user's own photos: the page says why it starts from finetune
            st.session_state.nr_photo_note = first_overrides["dataset"]
if st.session_state.get("nr_use_dataset"):  # a fixed version just made: the same settings on it
    st.session_state.nr_dataset, st.session_state.nr_dataset_path = st.session_state.pop("nr_use_dataset"), ""
if st.session_state.get("nr_request_dataset"):  # "Train a model on it" on the Datasets page
    requested = st.session_state.pop("nr_request_dataset")
    info = {d.name: d for d in loading.all_datasets()}.get(requested)
    if info is not None:
        st.session_state.nr_auto_dataset = requested
    if info is not None and looks_like_photos(info):
        use_recipe("finetune", {"dataset": requested})  # photos: what learns from a few hundred of them
        st.session_state.nr_photo_note = requested
    elif info is not None:
        st.session_state.nr_dataset, st.session_state.nr_dataset_path = requested, ""
        st.session_state.nr_submitted = None

# The automatic search first for photos; after the tutorials' recipes for digit-sized images.
all_datasets = loading.all_datasets()
by_name = {d.name: d for d in all_datasets}
if st.session_state.get("nr_auto_dataset") not in by_name:
    form_dataset = st.session_state.get("nr_dataset")
    st.session_state.nr_auto_dataset = form_dataset if form_dataset in by_name else all_datasets[0].name
if "nr_auto_minutes" not in st.session_state:
    st.session_state.nr_auto_minutes = int(DEFAULT_AUTO_MINUTES)
auto_first = not small_grayscale(by_name[st.session_state.nr_auto_dataset])
if auto_first:
    auto_card(by_name)

# Recipe cards: the four tutorials and finetune, each with what it measurably reaches here,
# in rows of three (five narrow columns stretched to the tallest card left most of them empty).
st.subheader("Start from a tutorial's recipe")
results = recipe_results()
if not cpu_supports_bf16():
    st.caption("This machine's CPU has no native bf16, so runs here train in fp32: the cards' fp32 figures are the "
               "ones to compare, and their times were measured on another machine.")
order = recipe_order(auto_first)
cards = [column for start in range(0, len(order), CARDS_PER_ROW) for column in st.columns(CARDS_PER_ROW)]
for column, name in zip(cards, order):
    recipe = RECIPES[name]
    with column.container(border=True):
        st.markdown(f"**{recipe['title']}**")
        st.caption(recipe["about"])
        measured = results.get(name) or {}
        variants = measured.get("results") or []
        where = f"measured {measured.get('date', '?')} on {measured.get('machine', '?')}"
        if not variants:
            st.caption("not measured yet (bench/recipes.py)")
        # fp32 rows only show that the CPU fast path keeps accuracy: beside their variant.
        fp32_of = {v["variant"].removesuffix(" (fp32)"): v for v in variants if v.get("compare_only")}
        variants = [v for v in variants if not v.get("compare_only")]
        for i, variant in enumerate(variants):
            if variant.get("error"):
                st.caption(f"Not measured on {measured.get('machine', '?')} ({measured.get('date', '?')}): "
                           f"{variant['error']}.")
                continue
            figure = f"**{fmt.pct(variant.get('test_accuracy'))} test accuracy**"
            how = f"{variant.get('iterations', '?')} iterations, {fmt.duration(variant.get('seconds'))}"
            if variant.get("precision"):
                how += f", {variant['precision']}"
            fp32 = fp32_of.get(variant.get("variant"))
            if fp32 and fp32.get("test_accuracy") is not None:
                how += f"; in fp32 {fmt.pct(fp32['test_accuracy'])}, {fmt.duration(fp32.get('seconds'))}"
                if fp32.get("machine") and (fp32["machine"], fp32.get("date")) != (measured.get("machine"), measured.get("date")):
                    how += f" (measured {fp32.get('date', '?')} on another {fp32['machine']} machine)"
            if i == 0:
                st.markdown(f"{where}: {figure} on {variant.get('dataset', '?')} ({how})")
            else:
                st.markdown(f"with {variant.get('variant')}: {figure} ({how})")
        missing = recipe_config(name).machine_problems()
        if missing:
            spec = widgets_spec(RECIPES[name]["config"]["model"])
            where = (f" (torchvision's file `{sources.weights_url(spec.name).rsplit('/', 1)[-1]}`, kept in "
                     f"`{sources.expected_cache_path(spec.name).rsplit('/', 1)[0]}`)") if spec.torchvision else ""
            st.warning(f"Its pretrained weights are not on this machine{where}: copy the file there or upload it "
                       f"under {SECTIONS['fine_tune']} below, or use the finetune recipe, whose weights come with imori.",
                       icon=":material/download:")
            st.button("Use finetune instead", key=f"recipe_{name}_finetune", on_click=use_recipe,
                      args=("finetune", {"dataset": RECIPES[name]["config"]["dataset"]}), width="stretch")
        current = st.session_state.get("nr_recipe") == name
        st.button("Using this recipe" if current else "Use this recipe", key=f"recipe_{name}", on_click=use_recipe,
                  args=(name,), type="primary" if current else "secondary", width="stretch",
                  icon=":material/check:" if current else None)
        for i, variant in enumerate(variants):
            if variant.get("overrides") and not variant.get("error"):
                st.button(f"Use it with {variant.get('variant')}", key=f"recipe_{name}_{i}", on_click=use_recipe,
                          args=(name, variant["overrides"]), width="stretch")

if not auto_first:
    auto_card(by_name)

queue_bar = st.container()
submitted = st.session_state.get("nr_submitted")
# The automatic search's card says its own "queued" beside its button: not the form's.
if submitted and submitted != st.session_state.get("nr_auto_submitted"):
    runs_text = ", ".join(f"#{i}" for i in submitted)
    st.success(f"Queued {'run' if len(submitted) == 1 else 'runs'} {runs_text}.", icon=":material/check_circle:")
    links = st.columns(min(len(submitted), 6) + 1)
    for column, run_id in zip(links, submitted[:6]):
        column.page_link(nav.RUN_DETAIL, label=f"Open run {run_id}", icon=":material/monitoring:",
                         query_params={"run": run_id})
    links[-1].page_link(nav.RUNS, label="All runs", icon=":material/format_list_bulleted:")
    working, offline = live.workers()
    if offline or not working:
        st.warning("No worker is running, so queued runs wait: start one with `imori worker` "
                   "(or everything with `imori up`).", icon=":material/warning:")

recipe_name = st.session_state.get("nr_recipe")
st.subheader("Settings" + (f" (from {recipe_name})" if recipe_name else ""))

# What the generated widgets' "applies when" rules look at: the values as they stand.
context = {**form.read(), "dataset": dataset_choice() if "nr_dataset" in st.session_state else "",
           "model": st.session_state.nr_model}

data_col, model_col = st.columns(2)
with data_col.container(border=True):
    st.markdown(f"**{SECTIONS['data']}**")
    st.selectbox(
        "Dataset",
        [d.name for d in all_datasets] + [OTHER_DATASET],
        key="nr_dataset",
        persist_state=KEEP,
        on_change=follow_dataset,
        format_func=lambda n: "a folder or ZIP on the server…" if n == OTHER_DATASET else fmt.dataset_label(by_name[n]),
        help="Built-in datasets work offline; torchvision ones need to be under the data root (or tick download); "
             "imported ones come from the Datasets page.",
    )
    if st.session_state.nr_dataset == OTHER_DATASET:
        st.text_input("Path of a folder or ZIP of class folders (or a CSV of file,label rows)", key="nr_dataset_path",
                      persist_state=KEEP)
    else:
        st.session_state.nr_dataset_path = st.session_state.get("nr_dataset_path", "")
    chosen = by_name.get(st.session_state.nr_dataset)
    context["dataset"] = dataset_choice()
    form.render("data", context)
    if st.session_state.get("nr_fix_note") and chosen is not None and chosen.name in st.session_state.nr_fix_note:
        st.success(st.session_state.nr_fix_note, icon=":material/difference:")
    problems_found = loading.health_warnings(loading.dataset_health(chosen.name)) if chosen is not None else []
    if problems_found:
        st.warning(f"The health check of **{chosen.name}**: " + "; ".join(problems_found) + ".", icon=":material/warning:")
        fix_col, report_col = st.columns(2)

        health = loading.dataset_health(chosen.name)
        if health.inflated_test_images and is_imported(chosen.name) and fix_col.button(
                "Drop the test copy" if health.inflated_test_images == 1 else
                f"Drop the {health.inflated_test_images} test copies", key="nr_health_fix",
                icon=":material/difference:", type="primary",
                help="A new version of the dataset without them, chosen here; the dataset stays as it is."):
            with fmt.user_errors("Not made: "):
                made = fix_dataset(chosen.name, drop_test_copies=True)
                loading.all_datasets.clear()
                loading.dataset_health.clear()
                st.session_state.nr_use_dataset = made.name  # set before the widgets, on the rerun
                st.session_state.nr_fix_note = (f"{made.name} already held these fixes: chosen" if made.reused else
                                                f"Made {made.name} ({made.description}): chosen")
                st.rerun()
        if report_col.button("See its health report", key="nr_health_report", icon=":material/health_and_safety:"):
            st.session_state.ds_preview = chosen.name
            st.switch_page(nav.DATASETS)
    minutes = finetune_minutes(chosen) if looks_like_photos(chosen) else None
    when = (f" (about {minutes} min on this machine, in {machine_precision('efficientnet_lite0')})" if minutes
            else " (no estimate of its time here yet: runs here will measure it)")
    if (looks_like_photos(chosen) and st.session_state.get("nr_recipe") == "finetune"
            and st.session_state.get("nr_photo_note") == chosen.name):
        st.info(f"**{chosen.name}** looks like photos, so this starts from the finetune recipe: a pretrained "
                f"backbone learns far more from a few hundred photos per class than training from scratch{when}. "
                "Pick another recipe above if you prefer.", icon=":material/photo_library:")
    elif looks_like_photos(chosen) and st.session_state.get("nr_recipe") != "finetune":
        st.info(f"**{chosen.name}** looks like photos: fine-tuning a pretrained backbone learns far more from "
                f"a few hundred photos per class than training from scratch{when}.", icon=":material/photo_library:")
        st.button("Use the finetune recipe on it", key="nr_propose_finetune", on_click=use_recipe,
                  args=("finetune", {"dataset": chosen.name}), type="primary")

with model_col.container(border=True):
    st.markdown(f"**{SECTIONS['model']}**")

    specs = {s.name: s for s in list_models()}
    st.selectbox("Model", list(specs), key="nr_model", persist_state=KEEP, on_change=model_changed,
                 format_func=lambda n: f"{n} — {specs[n].title}{weights_note(n)}")
    spec = specs[st.session_state.nr_model]
    for option, choices in spec.option_choices.items():
        key = f"nr_opt_{spec.name}_{option}"
        if st.session_state.get(key) not in choices:
            st.session_state[key] = choices[0]
        st.selectbox(f"{option}", list(choices), key=key, persist_state=KEEP)
    options = {o: st.session_state[f"nr_opt_{spec.name}_{o}"] for o in spec.option_choices}
    default_size = spec.size_for(options)
    st.checkbox(f"Model's input size ({default_size[0]}x{default_size[1]}, {spec.in_channels} channel"
                f"{'s' if spec.in_channels > 1 else ''})", key="nr_size_default", persist_state=KEEP,
                help=f"Allowed sizes: {spec.allowed_sizes}. Any dataset is resized and converted to fit.")
    if not st.session_state.nr_size_default:
        h, w = st.columns(2)
        h.number_input("Height", 1, 4096, key="nr_height", step=1, persist_state=KEEP)
        w.number_input("Width", 1, 4096, key="nr_width", step=1, persist_state=KEEP)
    order_col, mean_col, std_col = st.columns(3)
    if spec.in_channels == 3:
        order_col.selectbox("Channel order", ["recipe", "RGB", "BGR"], key="nr_channel_order", persist_state=KEEP,
                            format_func=lambda o: f"model's ({spec.channel_order})" if o == "recipe" else o,
                            help="BGR reads images as cv2 does (seed 000)")
    else:
        order_col.text_input("Channels", "grayscale", disabled=True, key="nr_gray_note")
    mean_col.text_input("Mean", key="nr_mean", persist_state=KEEP, placeholder=", ".join(f"{v:g}" for v in spec.mean))
    std_col.text_input("Std", key="nr_std", persist_state=KEEP, placeholder=", ".join(f"{v:g}" for v in spec.std))
    form.render("model", context)
    with st.expander("Model summary"):
        classes = len(chosen.classes) if chosen is not None and chosen.classes else 10
        size = None if st.session_state.nr_size_default else (int(st.session_state.nr_height), int(st.session_state.nr_width))
        try:
            st.code(model_summary(spec.name, classes, size, tuple(sorted(options.items()))), language=None)
        except ImoriError as err:
            st.caption(f"No summary: {err}")

opt_col, length_col = st.columns(2)
with opt_col.container(border=True):
    st.markdown(f"**{SECTIONS['optimisation']}**")
    form.render("optimisation", context)
    lr_panel = st.container()  # the learning-rate finder: drawn once the form is read

with length_col.container(border=True):
    st.markdown(f"**{SECTIONS['length']}**")
    a, b = st.columns(2)
    a.radio("Train for", ["epochs", "iterations"], key="nr_length", horizontal=True, persist_state=KEEP)
    if st.session_state.nr_length == "epochs":
        b.number_input("Epochs", min_value=1, step=1, key="nr_epochs", persist_state=KEEP)
    else:
        b.number_input("Iterations", min_value=1, step=10, key="nr_iterations", persist_state=KEEP)
    form.render("length", context)

with st.expander(SECTIONS["fine_tune"], expanded=bool(spec.pretrainable and st.session_state.get("nr_pretrained"))):
    if spec.pretrainable:
        present, where = weights_here(spec.name)
        st.caption(f"**{spec.name}'s ImageNet weights**: {spec.weights_source}. Licence: {spec.weights_licence}. "
                   + (f"On this machine: `{where}`." if present else f"Not on this machine ({where}).")
                   + f" ImageNet top-1 {spec.imagenet_top1:.1f} %; about {backbone_ms(spec.name):.0f} ms per image "
                     "on this machine's CPU.")
        weights_upload(spec.name)
    form.render("fine_tune", context)
    earlier = previous_checkpoints(st.session_state.nr_model)
    init_options = [FRESH, *earlier, INIT_PATH]
    if st.session_state.get("nr_init") not in init_options:
        st.session_state.nr_init = FRESH
    a, b = st.columns(2)
    a.selectbox("Start from", init_options, key="nr_init", persist_state=KEEP,
                format_func=lambda o: {FRESH: "fresh weights", INIT_PATH: "a checkpoint file on the server…"}.get(o, earlier.get(o, o)),
                help="An earlier checkpoint of the same model; a head of another class count is replaced.")
    if st.session_state.nr_init == INIT_PATH:
        b.text_input("Checkpoint path", key="nr_init_path", persist_state=KEEP)

with st.expander(SECTIONS["hardware"]):
    form.render("hardware", context, columns=3)

with st.container(border=True):
    st.markdown("**Sweep** — several values make several runs in one submit (every combination)")
    a, b = st.columns(2)
    a.text_input("Learning rates", key="nr_sweep_lr", persist_state=KEEP, placeholder="e.g. 0.1, 0.01, 0.001")
    b.text_input("Batch sizes", key="nr_sweep_bs", persist_state=KEEP, placeholder="e.g. 32, 64, 128")

config, problems, sweep = read_form()
count = 1
for values in sweep.values():
    count *= len(values)


def find_lr() -> None:
    """Queue fastai's learning-rate range test (core.lr_find) on a worker for the
    settings as they stand (their learning rate aside)."""
    found, reasons, _ = read_form()
    if found is None or reasons:
        st.session_state.nr_lr_find_problem = reasons[0] if reasons else "the settings cannot train"
        return
    st.session_state.nr_lr_find_problem = None
    settings = found.to_dict()
    jobs.submit(LR_FIND, lr_find_job.subject(settings), {"config": settings})


def use_lr(lr: float) -> None:
    st.session_state.nr_lr = float(f"{lr:.3g}")


def lr_find_view(config: Any) -> None:
    """The button, the job's progress and the curve it found, with its suggestion (fastai's
    valley) to take into the form."""
    subject = lr_find_job.subject(config.to_dict()) if config is not None else None
    st.button("Find a learning rate", key="nr_lr_find", icon=":material/query_stats:", on_click=find_lr,
              disabled=subject is None or jobs.busy(LR_FIND, subject),
              help="fastai's lr_find on a worker: 100 steps with the learning rate rising from 1e-7 to 10, these "
                   "settings otherwise; the weights are thrown away")
    if st.session_state.get("nr_lr_find_problem"):
        st.caption(f"Not queued: {st.session_state.nr_lr_find_problem}")
    if subject is None:
        return
    jobs.job_view(LR_FIND, subject, "Learning-rate finder")
    job = jobs.latest(LR_FIND, subject)
    if job is None or job.status != SUCCEEDED or not job.result:
        return

    found = job.result
    curve = pd.DataFrame({"learning rate": found["lrs"], "loss": found["losses"]})
    mark = pd.DataFrame({"learning rate": [found["suggestion"]], "loss": [found["suggestion_loss"]]})
    top = 1.5 * found["losses"][0]  # core.lr_find.plot_limit: the explosion would flatten the rest
    line = alt.Chart(curve).mark_line(clip=True).encode(
        x=alt.X("learning rate:Q", scale=alt.Scale(type="log")),
        y=alt.Y("loss:Q", title="loss (smoothed)", scale=alt.Scale(domain=[min(found["losses"]) * 0.95, top])))
    dot = alt.Chart(mark).mark_point(color="red", size=90, filled=True, clip=True).encode(x="learning rate:Q", y="loss:Q")
    st.altair_chart((line + dot).properties(height=180), width="stretch")
    for note in found.get("notes") or []:
        st.caption(note)
    st.button(f"Use the suggestion: lr {found['suggestion']:.3g}", key="nr_use_lr", on_click=use_lr,
              args=(found["suggestion"],), icon=":material/check:",
              help="fastai's valley: two thirds of the way down the longest descent of the loss")


with lr_panel:
    lr_find_view(config)


def summary(config: Any) -> str:
    if config is None:
        return ""
    length = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}" if config.epochs else f"{config.iterations} iterations"
    extra = f", momentum {config.momentum:g}" if config.momentum else ""
    sweep_text = "".join(f" · sweep {k.replace('_', ' ')}: {', '.join(f'{v:g}' for v in vals)}" for k, vals in sweep.items())
    return (f"**{config.model}** on **{config.dataset}** · {config.optimizer} lr {config.lr:g}{extra} · "
            f"batch {config.batch_size} · {length} · seed {config.seed} · device {config.device}{sweep_text}")


def queue(where: str) -> None:
    """The summary, the reasons it cannot run (if any), and the button that queues it."""
    with st.container(border=True):
        text, button = st.columns([5, 1], vertical_alignment="center")
        text.markdown(summary(config) or "—")
        label = "Queue run" if count == 1 else f"Queue {count} runs"
        if button.button(label, type="primary", disabled=bool(problems), key=f"nr_queue_{where}",
                         icon=":material/play_arrow:", width="stretch"):
            with fmt.user_errors("Not queued: "):
                ids = client.submit_sweep(config, sweep) if sweep else [client.submit(config)]
                st.session_state.nr_submitted = ids
                st.rerun()
        if problems and where == "top":
            more = f" (and {len(problems) - 1} more, listed at the bottom)" if len(problems) > 1 else ""
            st.error(f"Cannot start: {problems[0]}{more}", icon=":material/block:")
        elif problems:
            st.error("This run cannot start:\n" + "\n".join(f"- {p}" for p in problems), icon=":material/block:")


with queue_bar:
    queue("top")
queue("bottom")
