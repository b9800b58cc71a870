"""New run: recipe cards that fill the form, every RunConfig option, a sweep, and Queue."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.config import AUGMENTATIONS, DEVICES, LOSSES, OPTIMIZERS, RECIPES, SCHEDULES, RunConfig, recipe_config, recipe_results
from core.errors import ImoriError
from dashboard import widgets

OTHER_DATASET = "__path__"
FRESH = "__fresh__"
INIT_PATH = "__init_path__"
RECIPE_ORDER = ("seed003", "seed004", "seed000", "seed002")
KEEP = "session"  # form values survive visits to other pages


# -- the form's state -------------------------------------------------------------------------


def fill(config: RunConfig, recipe: str | None = None) -> None:
    """Put ``config`` into the form's widgets (a recipe card's button, first visit)."""
    s = st.session_state
    known = {d.name for d in widgets.all_datasets()}
    if config.dataset in known:
        s.nr_dataset, s.nr_dataset_path = config.dataset, ""
    else:
        s.nr_dataset, s.nr_dataset_path = OTHER_DATASET, config.dataset
    s.nr_model = config.model
    for option, value in config.model_options.items():
        s[f"nr_opt_{config.model}_{option}"] = value
    s.nr_optimizer = config.optimizer
    s.nr_lr = float(config.lr)
    s.nr_momentum = float(config.momentum)
    s.nr_weight_decay = float(config.weight_decay)
    s.nr_loss = config.loss
    s.nr_schedule = config.schedule
    s.nr_step_epochs = int(config.step_epochs)
    s.nr_gamma = float(config.gamma)
    s.nr_batch_size = int(config.batch_size)
    s.nr_length = "iterations" if config.iterations is not None else "epochs"
    s.nr_epochs = int(config.epochs or 1)
    s.nr_iterations = int(config.iterations or 100)
    s.nr_seed = int(config.seed)
    s.nr_val_fraction = float(config.val_fraction)
    s.nr_device = config.device
    s.nr_threads = int(config.threads or 0)
    s.nr_amp = bool(config.amp)
    s.nr_channels_last = bool(config.channels_last)
    s.nr_compile = bool(config.compile)
    s.nr_eval_batch_size = int(config.eval_batch_size)
    s.nr_size_default = config.image_size is None
    height, width = config.image_size or config.spec.size_for(config.model_options)
    s.nr_height, s.nr_width = int(height), int(width)
    s.nr_channel_order = config.channel_order or "recipe"
    s.nr_mean = ", ".join(f"{v:g}" for v in config.mean) if config.mean else ""
    s.nr_std = ", ".join(f"{v:g}" for v in config.std) if config.std else ""
    s.nr_augment = list(config.augment)
    s.nr_ckpt_epochs = int(config.checkpoint_every_epochs)
    s.nr_ckpt_minutes = float(config.checkpoint_every_minutes)
    s.nr_keep = int(config.keep_checkpoints)
    s.nr_pretrained = bool(config.pretrained)
    s.nr_pretrained_path = config.pretrained_path or ""
    s.nr_freeze = bool(config.freeze_backbone)
    s.nr_backbone_mult = config.backbone_lr_mult
    s.nr_init = INIT_PATH if config.init_from else FRESH
    s.nr_init_path = config.init_from or ""
    s.nr_data_root = config.data_root or ""
    s.nr_download = bool(config.download)
    s.nr_name = config.name or ""
    s.nr_sweep_lr = ""
    s.nr_sweep_bs = ""
    s.nr_recipe = recipe


def use_recipe(name: str, overrides: dict[str, Any] | None = None) -> None:
    fill(recipe_config(name, **(overrides or {})), recipe=name)
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


def floats(text: str) -> tuple[float, ...] | None:
    parts = [p for p in text.replace(",", " ").split() if p]
    return tuple(float(p) for p in parts) if parts else None


def read_form() -> tuple[RunConfig | None, list[str], dict[str, list[Any]]]:
    """The form as a RunConfig, every reason it cannot run, and the sweep's values."""
    s = st.session_state
    problems: list[str] = []
    dataset = s.nr_dataset_path.strip() if s.nr_dataset == OTHER_DATASET else s.nr_dataset
    if not dataset:
        problems.append("choose a dataset (or give the path of a folder or ZIP on the server)")
    try:
        spec = widgets_spec(s.nr_model)
        options = {o: s.get(f"nr_opt_{s.nr_model}_{o}", choices[0]) for o, choices in spec.option_choices.items()}
    except ImoriError as err:
        return None, [str(err)], {}
    init = None
    if s.nr_init == INIT_PATH:
        init = s.nr_init_path.strip() or None
        if init is None:
            problems.append("give the path of the checkpoint to start from, or start from fresh weights")
    elif s.nr_init != FRESH:
        init = s.nr_init
    try:
        mean, std = floats(s.nr_mean), floats(s.nr_std)
    except ValueError:
        mean = std = None
        problems.append("mean and std are numbers: one, or one per channel (e.g. 0.485, 0.456, 0.406)")
    values = dict(
        model=s.nr_model,
        dataset=dataset or "digits",
        model_options=options,
        image_size=None if s.nr_size_default else (int(s.nr_height), int(s.nr_width)),
        channel_order=None if s.nr_channel_order == "recipe" else s.nr_channel_order,
        mean=mean,
        std=std,
        augment=tuple(s.nr_augment),
        optimizer=s.nr_optimizer,
        lr=float(s.nr_lr),
        momentum=float(s.nr_momentum),
        weight_decay=float(s.nr_weight_decay),
        loss=s.nr_loss,
        schedule=s.nr_schedule,
        step_epochs=int(s.nr_step_epochs),
        gamma=float(s.nr_gamma),
        batch_size=int(s.nr_batch_size),
        epochs=int(s.nr_epochs) if s.nr_length == "epochs" else None,
        iterations=int(s.nr_iterations) if s.nr_length == "iterations" else None,
        seed=int(s.nr_seed),
        val_fraction=float(s.nr_val_fraction),
        device=s.nr_device,
        threads=int(s.nr_threads) or None,
        amp=bool(s.nr_amp),
        channels_last=bool(s.nr_channels_last),
        compile=bool(s.nr_compile),
        eval_batch_size=int(s.nr_eval_batch_size),
        checkpoint_every_epochs=int(s.nr_ckpt_epochs),
        checkpoint_every_minutes=float(s.nr_ckpt_minutes),
        keep_checkpoints=int(s.nr_keep),
        pretrained=bool(s.nr_pretrained),
        pretrained_path=s.nr_pretrained_path.strip() or None,
        freeze_backbone=bool(s.nr_freeze),
        backbone_lr_mult=None if s.nr_backbone_mult is None else float(s.nr_backbone_mult),
        init_from=init,
        data_root=s.nr_data_root.strip() or None,
        download=bool(s.nr_download),
        recipe=s.get("nr_recipe"),
        name=s.nr_name.strip() or None,
    )
    try:
        config = RunConfig.from_dict(values)
    except (ImoriError, TypeError, ValueError) as err:
        return None, problems + [str(err)], {}
    problems += config.problems()
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
        # Every run of the sweep must be valid, not only the form's own values.
        import itertools

        for combo in itertools.product(*sweep.values()):
            changes = dict(zip(sweep, combo))
            for reason in config.replace(**changes).problems():
                label = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in changes.items())
                problems.append(f"{label}: {reason}")
    return config, problems, sweep


def widgets_spec(name: str):
    from core.models import get_spec

    return get_spec(name)


@st.cache_data(max_entries=32, show_spinner="Summarising the model…")
def model_summary(name: str, classes: int, size: tuple[int, int] | None, options: tuple) -> str:
    """The model's parameter table, built on the meta device (shapes only, no memory)."""
    import torch

    from core.models import build_model, summarize

    with torch.device("meta"):
        model = build_model(name, max(2, classes), image_size=size, options=dict(options))
    return summarize(model).as_text()


def previous_checkpoints(model: str) -> dict[str, str]:
    """Best checkpoints of earlier runs of ``model``: path -> label."""
    from core.records import queries

    out: dict[str, str] = {}
    for run in queries.list_runs(status=("succeeded", "cancelled"), limit=200):
        if run.model != model:
            continue
        if len(out) >= 20:
            break
        best = queries.best_checkpoint(run.id) or queries.latest_checkpoint(run.id)
        if best is not None:
            out[best.path] = f"run #{run.id} {run.name}: {widgets.checkpoint_label(best)}"
    return out


# -- the page ---------------------------------------------------------------------------------

st.title("New run")
if "nr_model" not in st.session_state:
    with st.spinner("Loading PyTorch, the models and the datasets (first visit only)…"):
        fill(recipe_config("seed003"), recipe="seed003")

# Recipe cards: the four tutorials, each with what it measurably reaches here.
st.subheader("Start from a tutorial's recipe")
results = recipe_results()
cards = st.columns(len(RECIPE_ORDER))
for column, name in zip(cards, RECIPE_ORDER):
    recipe = RECIPES[name]
    with column.container(border=True, height="stretch"):
        st.markdown(f"**{recipe['title']}**")
        st.caption(recipe["about"])
        measured = results.get(name) or {}
        variants = measured.get("results") or []
        where = f"measured {measured.get('date', '?')} on {measured.get('machine', '?')}"
        if not variants:
            st.caption("not measured yet (bench/recipes.py)")
        for i, variant in enumerate(variants):
            if variant.get("error"):
                st.caption(f"Not measured on {measured.get('machine', '?')} ({measured.get('date', '?')}): "
                           f"{variant['error']}.")
                continue
            figure = f"**{widgets.pct(variant.get('test_accuracy'))} test accuracy**"
            how = f"{variant.get('iterations', '?')} iterations, {widgets.duration(variant.get('seconds'))}"
            if i == 0:
                st.markdown(f"{where}: {figure} on {variant.get('dataset', '?')} ({how})")
            else:
                st.markdown(f"with {variant.get('variant')}: {figure} ({how})")
        current = st.session_state.get("nr_recipe") == name
        st.button("Using this recipe" if current else "Use this recipe", key=f"recipe_{name}", on_click=use_recipe,
                  args=(name,), type="primary" if current else "secondary", width="stretch",
                  icon=":material/check:" if current else None)
        for i, variant in enumerate(variants):
            if variant.get("overrides") and not variant.get("error"):
                st.button(f"Use it with {variant.get('variant')}", key=f"recipe_{name}_{i}", on_click=use_recipe,
                          args=(name, variant["overrides"]), width="stretch")

queue_bar = st.container()
submitted = st.session_state.get("nr_submitted")
if submitted:
    runs_text = ", ".join(f"#{i}" for i in submitted)
    st.success(f"Queued {'run' if len(submitted) == 1 else 'runs'} {runs_text}.", icon=":material/check_circle:")
    links = st.columns(min(len(submitted), 6) + 1)
    for column, run_id in zip(links, submitted[:6]):
        column.page_link(widgets.RUN_DETAIL, label=f"Open run {run_id}", icon=":material/monitoring:",
                         query_params={"run": run_id})
    links[-1].page_link(widgets.RUNS, label="All runs", icon=":material/format_list_bulleted:")
    live, offline = widgets.workers()
    if offline or not live:
        st.warning("No worker is running, so queued runs wait: start one with `imori worker` "
                   "(or everything with `imori up`).", icon=":material/warning:")

recipe_name = st.session_state.get("nr_recipe")
st.subheader("Settings" + (f" (from {recipe_name})" if recipe_name else ""))

all_datasets = widgets.all_datasets()
by_name = {d.name: d for d in all_datasets}
data_col, model_col = st.columns(2)
with data_col.container(border=True):
    st.markdown("**Data**")
    st.selectbox(
        "Dataset",
        [d.name for d in all_datasets] + [OTHER_DATASET],
        key="nr_dataset",
        persist_state=KEEP,
        format_func=lambda n: "a folder or ZIP on the server…" if n == OTHER_DATASET else widgets.dataset_label(by_name[n]),
        help="Built-in datasets work offline; torchvision ones need to be under the data root (or tick download); "
             "imported ones come from the Datasets page.",
    )
    if st.session_state.nr_dataset == OTHER_DATASET:
        st.text_input("Path of a folder or ZIP of class folders (or a CSV of file,label rows)", key="nr_dataset_path",
                      persist_state=KEEP)
    else:
        st.session_state.nr_dataset_path = st.session_state.get("nr_dataset_path", "")
    chosen = by_name.get(st.session_state.nr_dataset)
    if chosen is not None and chosen.kind == "torchvision":
        st.text_input("Data root", key="nr_data_root", persist_state=KEEP, placeholder="default: IMORI_HOME/torchvision")
        st.checkbox("Download it if missing", key="nr_download", persist_state=KEEP,
                    help="The worker fetches it into the data root (needs the network).")
    st.slider("Validation fraction", 0.05, 0.5, key="nr_val_fraction", step=0.05, persist_state=KEEP,
              help="Held out of the training split (seeded) to pick best.pt; the test split is only reported.")
    st.multiselect("Augmentation", list(AUGMENTATIONS), key="nr_augment", persist_state=KEEP,
                   help="Applied per batch on the training device.")

with model_col.container(border=True):
    st.markdown("**Model**")
    from core.models import list_models

    specs = {s.name: s for s in list_models()}
    st.selectbox("Model", list(specs), key="nr_model", persist_state=KEEP, on_change=model_changed,
                 format_func=lambda n: f"{n} — {specs[n].title}")
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
    with st.expander("Model summary"):
        classes = len(chosen.classes) if chosen is not None and chosen.classes else 10
        size = None if st.session_state.nr_size_default else (int(st.session_state.nr_height), int(st.session_state.nr_width))
        try:
            st.code(model_summary(spec.name, classes, size, tuple(sorted(options.items()))), language=None)
        except ImoriError as err:
            st.caption(f"No summary: {err}")

opt_col, length_col = st.columns(2)
with opt_col.container(border=True):
    st.markdown("**Optimisation**")
    a, b = st.columns(2)
    a.selectbox("Optimizer", list(OPTIMIZERS), key="nr_optimizer", persist_state=KEEP)
    b.number_input("Learning rate", min_value=0.0, max_value=10.0, step=1e-4, format="%.6g", key="nr_lr",
                   persist_state=KEEP)
    a, b = st.columns(2)
    a.number_input("Momentum (SGD)", min_value=0.0, max_value=0.999, step=0.05, format="%.3g", key="nr_momentum",
                   persist_state=KEEP)
    b.number_input("Weight decay", min_value=0.0, step=1e-4, format="%.6g", key="nr_weight_decay", persist_state=KEEP)
    a, b = st.columns(2)
    a.selectbox("Loss", list(LOSSES), key="nr_loss", persist_state=KEEP,
                help="auto: NLL for a log-softmax model (mnist_cnn), cross-entropy otherwise")
    b.number_input("Batch size", min_value=1, max_value=65536, step=1, key="nr_batch_size", persist_state=KEEP)
    a, b, c = st.columns(3)
    a.selectbox("Schedule", list(SCHEDULES), key="nr_schedule", persist_state=KEEP)
    if st.session_state.nr_schedule == "step":
        b.number_input("Every (epochs)", min_value=1, step=1, key="nr_step_epochs", persist_state=KEEP)
        c.number_input("Multiply by", min_value=0.0, max_value=1.0, step=0.05, format="%.3g", key="nr_gamma",
                       persist_state=KEEP)

with length_col.container(border=True):
    st.markdown("**Length and where**")
    a, b = st.columns(2)
    a.radio("Train for", ["epochs", "iterations"], key="nr_length", horizontal=True, persist_state=KEEP)
    if st.session_state.nr_length == "epochs":
        b.number_input("Epochs", min_value=1, step=1, key="nr_epochs", persist_state=KEEP)
    else:
        b.number_input("Iterations", min_value=1, step=10, key="nr_iterations", persist_state=KEEP)
    a, b = st.columns(2)
    a.number_input("Seed", min_value=0, step=1, key="nr_seed", persist_state=KEEP)
    b.selectbox("Device", list(DEVICES), key="nr_device", persist_state=KEEP,
                help="auto: a GPU worker if one is alive, else a CPU worker; cuda waits for a GPU worker")
    st.text_input("Run name", key="nr_name", persist_state=KEEP, placeholder="default: <model> on <dataset>")

with st.expander("Fine-tuning and warm start"):
    a, b = st.columns(2)
    a.checkbox("Pretrained ImageNet weights (torchvision models)", key="nr_pretrained", persist_state=KEEP)
    a.text_input("Pretrained weights file", key="nr_pretrained_path", persist_state=KEEP,
                 placeholder="default: the torch hub cache")
    a.checkbox("Freeze the backbone (train the head only)", key="nr_freeze", persist_state=KEEP)
    a.number_input("Backbone learning-rate multiplier", min_value=0.0, max_value=1.0, step=0.05, format="%.3g",
                   key="nr_backbone_mult", persist_state=KEEP, placeholder="auto: 0.1 when pretrained, else 1")
    earlier = previous_checkpoints(st.session_state.nr_model)
    init_options = [FRESH, *earlier, INIT_PATH]
    if st.session_state.get("nr_init") not in init_options:
        st.session_state.nr_init = FRESH
    b.selectbox("Start from", init_options, key="nr_init", persist_state=KEEP,
                format_func=lambda o: {FRESH: "fresh weights", INIT_PATH: "a checkpoint file on the server…"}.get(o, earlier.get(o, o)),
                help="An earlier checkpoint of the same model; a head of another class count is replaced.")
    if st.session_state.nr_init == INIT_PATH:
        b.text_input("Checkpoint path", key="nr_init_path", persist_state=KEEP)

with st.expander("Hardware and checkpoints"):
    a, b, c = st.columns(3)
    a.number_input("Torch threads (0: from the worker's cores)", min_value=0, step=1, key="nr_threads", persist_state=KEEP)
    a.number_input("Evaluation batch size", min_value=1, step=64, key="nr_eval_batch_size", persist_state=KEEP)
    b.checkbox("Mixed precision on CUDA (bf16)", key="nr_amp", persist_state=KEEP)
    b.checkbox("channels_last on CUDA", key="nr_channels_last", persist_state=KEEP)
    b.checkbox("torch.compile", key="nr_compile", persist_state=KEEP)
    c.number_input("Checkpoint every (epochs, 0: best and last only)", min_value=0, step=1, key="nr_ckpt_epochs",
                   persist_state=KEEP)
    c.number_input("…and every (minutes, 0: never by time)", min_value=0.0, step=1.0, key="nr_ckpt_minutes",
                   persist_state=KEEP)
    c.number_input("Keep the last (periodic checkpoints)", min_value=1, step=1, key="nr_keep", persist_state=KEEP)

with st.container(border=True):
    st.markdown("**Sweep** — several values make several runs in one submit (every combination)")
    a, b = st.columns(2)
    a.text_input("Learning rates", key="nr_sweep_lr", persist_state=KEEP, placeholder="e.g. 0.1, 0.01, 0.001")
    b.text_input("Batch sizes", key="nr_sweep_bs", persist_state=KEEP, placeholder="e.g. 32, 64, 128")

config, problems, sweep = read_form()
count = 1
for values in sweep.values():
    count *= len(values)


def summary(config: RunConfig | None) -> str:
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
            from worker import client

            with widgets.user_errors("Not queued: "):
                ids = client.submit_sweep(config, **sweep) if sweep else [client.submit(config)]
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
