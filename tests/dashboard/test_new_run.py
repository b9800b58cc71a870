"""New run: recipe cards with measured figures, every option into the RunConfig, invalid
combinations refused in the form, a sweep making several runs."""

from __future__ import annotations

import re

from dashkit import app, ok, texts

from core.recipes import RECIPES, recipe_results


def queued(run_id: int):
    from core.records import queries

    return queries.get_run(run_id)


def submitted(at) -> list[int]:
    ids = at.session_state["nr_submitted"]
    assert ids, texts(at.error)
    return ids


def test_recipe_cards_show_what_was_measured_with_its_date(home):
    at = app()
    ok(at)
    measured = recipe_results()["seed003"]
    first = measured["results"][0]
    expected = (f"measured {measured['date']} on {measured['machine']}: "
                f"**{100 * first['test_accuracy']:.1f} % test accuracy**")
    assert any(expected in text for text in texts(at.markdown)), texts(at.markdown)
    # A recipe that could not be measured says why, with no figure.
    assert any("Not measured" in text and "resnet18" in text for text in texts(at.caption))


def test_with_no_queue_running_the_run_is_not_queued_and_the_page_says_what_to_start(home):
    """The dashboard only connects: it starts no Redis, and says so (before the module's
    `broker` fixture serves one: keep this test above the first that uses it)."""
    from core.records import queries
    from worker import broker

    assert not broker.is_running(), "a test above this one served the queue"
    at = app()
    at.button(key="nr_queue_top").click().run()
    ok(at)
    assert any("Not queued: no imori queue is running" in text and "imori up" in text for text in texts(at.error)), \
        texts(at.error)
    assert queries.count_runs() == 0 and not broker.is_running()


def test_a_recipe_fills_the_form_and_queues_a_run(broker):
    at = app()
    at.button(key="recipe_seed004_1").click().run()  # "lr 0.01, momentum 0.9", as measured
    ok(at)
    assert at.session_state["nr_model"] == "lenet5" and at.session_state["nr_lr"] == 0.01
    assert at.session_state["nr_momentum"] == 0.9 and at.session_state["nr_optimizer"] == "sgd"
    at.button(key="nr_queue_top").click().run()
    ok(at)
    [run_id] = submitted(at)
    run = queued(run_id)
    assert run.status == "queued"  # no worker in this test: it waits in Redis
    assert run.config["recipe"] == "seed004" and run.config["model"] == "lenet5"
    assert run.config["lr"] == 0.01 and run.config["momentum"] == 0.9 and run.config["epochs"] == 10
    assert f"Queued run #{run_id}." in texts(at.success)


def test_every_option_reaches_the_run_config(broker):
    at = app()
    s = at.session_state
    at.button(key="recipe_seed003").click().run()
    at.selectbox(key="nr_model").set_value("lenet5").run()
    at.selectbox(key="nr_opt_lenet5_kernel").set_value(3).run()
    at.checkbox(key="nr_size_default").uncheck().run()
    at.number_input(key="nr_height").set_value(28)
    at.number_input(key="nr_width").set_value(28)
    at.selectbox(key="nr_optimizer").set_value("sgd")
    at.number_input(key="nr_lr").set_value(0.05)
    at.number_input(key="nr_momentum").set_value(0.8)
    at.number_input(key="nr_weight_decay").set_value(0.0005)
    at.selectbox(key="nr_loss").set_value("cross_entropy")
    at.selectbox(key="nr_schedule").set_value("step").run()
    at.number_input(key="nr_step_epochs").set_value(2)
    at.number_input(key="nr_gamma").set_value(0.5)
    at.number_input(key="nr_batch_size").set_value(32)
    at.radio(key="nr_length").set_value("iterations").run()
    at.number_input(key="nr_iterations").set_value(40)
    at.number_input(key="nr_seed").set_value(7)
    at.slider(key="nr_val_fraction").set_value(0.2)
    at.multiselect(key="nr_augment").set_value(["flip", "rotate"])
    at.text_input(key="nr_mean").set_value("0.5")
    at.text_input(key="nr_std").set_value("0.25")
    at.selectbox(key="nr_device").set_value("cpu")
    at.number_input(key="nr_threads").set_value(1)
    at.selectbox(key="nr_precision").set_value("fp32")
    at.checkbox(key="nr_channels_last").uncheck()
    at.checkbox(key="nr_compile").check()
    at.number_input(key="nr_eval_batch_size").set_value(128)
    at.number_input(key="nr_checkpoint_every_epochs").set_value(2)
    at.number_input(key="nr_checkpoint_every_minutes").set_value(5.0)
    at.number_input(key="nr_keep_checkpoints").set_value(4)
    at.text_input(key="nr_name").set_value("everything")
    at.run()
    ok(at)
    assert not at.error, texts(at.error)
    at.button(key="nr_queue_bottom").click().run()
    [run_id] = submitted(at)
    config = queued(run_id).config
    expected = dict(
        model="lenet5", model_options={"kernel": 3}, image_size=[28, 28], optimizer="sgd", lr=0.05, momentum=0.8,
        weight_decay=0.0005, loss="cross_entropy", schedule="step", step_epochs=2, gamma=0.5, batch_size=32,
        epochs=None, iterations=40, seed=7, val_fraction=0.2, augment=["flip", "rotate"], mean=[0.5], std=[0.25],
        device="cpu", threads=1, precision="fp32", channels_last=False, compile=True, eval_batch_size=128,
        checkpoint_every_epochs=2, checkpoint_every_minutes=5.0, keep_checkpoints=4, name="everything",
        dataset="digits", init_from=None, pretrained=False, freeze_backbone=False,
    )
    assert {k: config[k] for k in expected} == expected
    assert s["nr_submitted"] == [run_id]


def test_an_invalid_combination_is_refused_with_its_reason(home):
    at = app()
    at.button(key="recipe_seed003").click().run()
    at.number_input(key="nr_momentum").set_value(0.9).run()  # Adam has no momentum
    ok(at)
    assert any("momentum applies to SGD only" in text for text in texts(at.error))
    assert at.button(key="nr_queue_top").disabled and at.button(key="nr_queue_bottom").disabled
    # Fine-tuning options on a seed net are refused too, with the reason.
    at.number_input(key="nr_momentum").set_value(0.0)
    at.checkbox(key="nr_freeze_backbone").check().run()
    assert any("freeze_backbone apply to models with pretrained weights" in text for text in texts(at.error))
    at.checkbox(key="nr_freeze_backbone").uncheck().run()
    assert not at.error and not at.button(key="nr_queue_top").disabled


def test_a_sweep_makes_one_run_per_combination(broker):
    from core.records import queries

    at = app()
    at.button(key="recipe_seed003").click().run()
    at.radio(key="nr_length").set_value("iterations").run()
    at.text_input(key="nr_sweep_lr").set_value("0.01, 0.001")
    at.text_input(key="nr_sweep_bs").set_value("32 64").run()
    ok(at)
    assert at.button(key="nr_queue_top").label == "Queue 4 runs"
    at.button(key="nr_queue_top").click().run()
    ids = submitted(at)
    assert len(ids) == 4
    runs = [queries.get_run(i) for i in ids]
    assert all(r.status == "queued" for r in runs)
    assert sorted((r.config["lr"], r.config["batch_size"]) for r in runs) == [(0.001, 32), (0.001, 64), (0.01, 32), (0.01, 64)]


def test_a_sweep_value_that_is_no_number_is_refused(home):
    at = app()
    at.text_input(key="nr_sweep_lr").set_value("0.1, fast").run()
    ok(at)
    assert any("'fast' is not a learning rate" in text for text in texts(at.error))
    at.text_input(key="nr_sweep_lr").set_value("0.1, 20").run()  # each run of the sweep is checked
    assert any("lr 20" in text and "far too large" in text for text in texts(at.error))
    assert at.button(key="nr_queue_top").disabled


def test_a_new_setting_appears_in_the_form_without_other_edits(broker, monkeypatch):
    import dataclasses

    from core import config as run_config
    from core.config import RunConfig, setting

    @dataclasses.dataclass
    class WithSettle(RunConfig):  # a made-up setting (warmup_epochs is a real one now)
        settle_epochs: int = setting(0, section="optimisation", label="Settle epochs", minimum=0, step=1,
                                     help="an example setting that exists only in this test")

    monkeypatch.setattr(run_config, "RunConfig", WithSettle)
    at = app()
    ok(at)
    field = at.number_input(key="nr_settle_epochs")
    assert field.label == "Settle epochs" and field.value == 0
    field.set_value(3).run()
    at.button(key="nr_queue_top").click().run()
    [run_id] = submitted(at)
    assert queued(run_id).config["settle_epochs"] == 3


def test_missing_pretrained_weights_refuse_the_run_until_a_file_is_uploaded(home, tmp_path):
    import io

    import torch
    import torchvision

    at = app()
    at.button(key="recipe_seed002").click().run()
    ok(at)
    assert any("Its pretrained weights are not on this machine (torchvision's file `resnet18-f37072fd.pth`" in t
               for t in texts(at.warning)), texts(at.warning)
    assert any("ImageNet weights for resnet18 are not on this machine" in t for t in texts(at.error))
    assert at.button(key="nr_queue_top").disabled
    at.button(key="recipe_seed002_finetune").click().run()  # the card offers finetune instead
    assert at.session_state["nr_recipe"] == "finetune" and not at.button(key="nr_queue_top").disabled
    at.button(key="recipe_seed002").click().run()
    # A weights file of another architecture is refused with the reason; the right one is taken.
    at.selectbox(key="nr_model").set_value("mobilenet_v3_small").run()
    wrong = io.BytesIO()
    torch.save(torchvision.models.resnet18().state_dict(), wrong)
    at.file_uploader(key="nr_weights_upload_mobilenet_v3_small").upload("resnet.pth", wrong.getvalue(), "application/octet-stream").run()
    ok(at)
    assert any(t.startswith("Weights refused:") for t in texts(at.error)), texts(at.error)
    right = io.BytesIO()
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), right)
    at.file_uploader(key="nr_weights_upload_mobilenet_v3_small").upload("mnv3.pth", right.getvalue(), "application/octet-stream").run()
    ok(at)
    assert any("fits mobilenet_v3_small" in t for t in texts(at.success)), texts(at.error)
    assert at.session_state["nr_pretrained_path"].startswith(str(home))
    at.run()
    assert not any("not on this machine" in t for t in texts(at.error)), texts(at.error)


def test_the_learning_rate_finder_runs_on_a_worker_and_its_suggestion_fills_the_form(broker):
    """seed 004 as written (lenet5, SGD at 1e-3 without momentum: it does not learn): the
    button queues fastai's range test for these settings; what the worker's task does
    draws the curve; the suggestion goes into the form's learning rate."""
    from core.jobs.kinds import LR_FIND
    from core.records import jobs
    from worker.tasks import execute_job

    at = app()
    at.button(key="recipe_seed004").click().run()
    ok(at)
    assert at.session_state["nr_lr"] == 0.001
    at.button(key="nr_lr_find").click().run()
    ok(at)
    job = jobs.list_jobs(kind=LR_FIND, limit=1)[0]
    assert job.status == "queued" and job.params["config"]["model"] == "lenet5"
    assert at.button(key="nr_lr_find").disabled  # one at a time for these settings
    # No worker serves jobs in this test: the job's line says so, and what to start.
    assert any("none serves jobs: start one with `imori worker --jobs`" in p.proto.text for p in at.get("progress"))
    assert execute_job(job.id, "test-process") == "succeeded", jobs.get_job(job.id).error
    at.run()
    ok(at)
    suggestion = jobs.get_job(job.id).result["suggestion"]
    assert at.button(key="nr_use_lr").label == f"Use the suggestion: lr {suggestion:.3g}"
    at.button(key="nr_use_lr").click().run()
    ok(at)
    assert at.session_state["nr_lr"] == float(f"{suggestion:.3g}") != 0.001
    # The form's learning rate changed, the job's settings did not: its result stays shown.
    assert at.button(key="nr_use_lr").label == f"Use the suggestion: lr {suggestion:.3g}"



def test_the_automatic_search_is_proposed_first_for_photos_and_after_the_recipes_for_digits(home):
    at = app()  # the first visit fills the form from seed 003: digits
    ok(at)
    headers = texts(at.subheader)
    assert headers.index("Start from a tutorial's recipe") < headers.index("Best model in N minutes"), headers
    assert at.selectbox(key="nr_auto_dataset").value == "digits"
    assert any("the tutorials' nets from scratch" in t for t in texts(at.markdown))
    # Choosing photos in the form's own dataset moves the card up, with that dataset in it.
    at.selectbox(key="nr_dataset").set_value("shapes2").run()
    ok(at)
    headers = texts(at.subheader)
    assert headers[0] == "Best model in N minutes", headers
    assert at.selectbox(key="nr_auto_dataset").value == "shapes2"
    assert any("pretrained EfficientNet-Lite backbone" in t for t in texts(at.markdown))
    at.selectbox(key="nr_auto_dataset").set_value("digits").run()
    assert texts(at.subheader)[0] == "Start from a tutorial's recipe"


def test_the_automatic_card_queues_one_auto_run_for_its_minutes(broker):
    at = app()
    at.selectbox(key="nr_auto_dataset").set_value("shapes2")
    assert at.number_input(key="nr_auto_minutes").value == 10
    at.number_input(key="nr_auto_minutes").set_value(3).run()
    ok(at)
    button = at.button(key="nr_auto_queue")  # the minutes are beside it; its help repeats them
    assert button.label == "Find the best model" and "within 3 minutes" in button.help
    at.button(key="nr_auto_queue").click().run()
    ok(at)
    [run_id] = submitted(at)
    run = queued(run_id)
    assert run.status == "queued"  # no worker in this test: it waits in Redis
    assert run.config["recipe"] == "auto" and run.config["max_minutes"] == 3 and run.config["dataset"] == "shapes2"
    # The card says it queued the run, beside its button; the form's own bar stays quiet.
    assert f"Queued run #{run_id}." not in texts(at.success)
    assert any(link.label.startswith(f"Queued run {run_id}: open it") for link in at.get("page_link"))
    assert any(t.startswith("No worker is running, so the run waits") for t in texts(at.warning))
    # The tutorial cards still fill the form as before.
    at.button(key="recipe_seed003").click().run()
    ok(at)
    assert at.session_state["nr_recipe"] == "seed003" and at.session_state["nr_model"] == "mnist_cnn"


def recipe_buttons(at) -> list:
    """The recipe cards' own buttons, in the order the page shows the cards."""
    return [b for b in at.button if b.key in {f"recipe_{name}" for name in RECIPES}]


def finetune_minutes_shown(at) -> tuple[int, str]:
    """The minutes and the precision of the "about N min on this machine, in P" note."""
    [note] = [t for t in texts(at.info) if "looks like photos" in t]
    found = re.search(r"about (\d+) min on this machine, in (fp32|bf16)", note)
    assert found, note
    return int(found.group(1)), found.group(2)


def test_a_first_visit_preselects_the_first_card_and_estimates_in_this_machines_precision(home, tmp_path, monkeypatch):
    """Issue 34, points 7 and 2: with digits only, seed 003 is preselected and its card
    comes first; with the user's photos imported, finetune on them is preselected and its
    card comes first. The finetune estimate uses this machine's measured forward pass in
    the precision it trains in: fp32 on a CPU without native bf16 (the probe patched)."""
    import streamlit as st

    import core.models.cost
    import core.precision
    from core.data.registry import delete_dataset, dataset_info, import_dataset
    from dashboard import loading
    from tests.photos import photo_like_folder

    at = app()
    ok(at)
    assert at.session_state["nr_recipe"] == "seed003" and at.session_state["nr_dataset"] == "digits"
    first = recipe_buttons(at)[0]
    assert first.key == "recipe_seed003" and first.label == "Using this recipe"

    import_dataset(photo_like_folder(tmp_path / "leaves", per_class=12, size=64), "leaves")
    try:
        loading.all_datasets.clear()
        st.cache_data.clear()  # the page's cached backbone figure too
        monkeypatch.setattr(core.models.cost, "cpu_ms_per_image", lambda name: 4000.0)  # a slow CPU, measured
        monkeypatch.setattr(core.precision, "cpu_supports_bf16", lambda: False)
        at = app()
        ok(at)
        s = at.session_state
        assert s["nr_recipe"] == "finetune" and s["nr_dataset"] == "leaves" and s["nr_model"] == "efficientnet_lite0"
        first = recipe_buttons(at)[0]
        assert first.key == "recipe_finetune" and first.label == "Using this recipe"
        assert any("no native bf16" in t for t in texts(at.caption))
        # 1 frozen epoch (one forward pass of every image), 4 of every layer (3 passes a
        # training image, 1 an evaluated one), at 4 s an image, in fp32.
        counts = dataset_info("leaves").counts
        train = counts.get("train", sum(counts.values()))
        evaluated = sum(counts.values()) - train
        passes = (train + evaluated) + 4 * (3 * train + evaluated)
        assert finetune_minutes_shown(at) == (max(1, round(passes * 4.0 / 60)), "fp32")
        # The same CPU with native bf16 trains finetune's backbone 2.28x faster.
        monkeypatch.setattr(core.precision, "cpu_supports_bf16", lambda: True)
        at = app()
        ok(at)
        assert finetune_minutes_shown(at) == (max(1, round(passes * 4.0 / 2.28 / 60)), "bf16")
        assert not any("no native bf16" in t for t in texts(at.caption))
    finally:
        delete_dataset("leaves")
        loading.all_datasets.clear()
        st.cache_data.clear()
