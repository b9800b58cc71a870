"""Compare: two runs' curves overlaid; their settings side by side, differences highlighted."""

from __future__ import annotations

from dashkit import app, ok, run_queued_jobs, texts, train

COMPARE = "app_pages/compare.py"


def test_two_runs_overlay_and_their_differences_stand_out(home):
    a = train(lr=1e-3)
    b = train(lr=5e-3, batch_size=32)
    at = app(COMPARE, runs=f"{a},{b}")
    ok(at)
    assert at.multiselect(key="compare_runs").value == [a, b]
    [chart] = at.get("vega_lite_chart")
    # Each run in its own hue: Tableau's categorical palette, not Streamlit's two blues.
    assert '"scheme": "tableau10"' in chart.proto.spec.replace('":"', '": "'), chart.proto.spec[:400]
    table = at.dataframe[0].value
    assert list(table.columns) == [f"#{a} mnist_cnn on digits", f"#{b} mnist_cnn on digits"]
    # Only what differs (and the results) by default: lr and batch size, not the model.
    assert {"lr", "batch_size", "best val accuracy", "test accuracy"} <= set(table.index)
    assert "model" not in table.index
    assert table.loc["lr"].tolist() == ["0.001", "0.005"]
    assert any("2 settings differ" in t for t in texts(at.caption))
    at.toggle(key="compare_only_diff").set_value(False).run()
    assert "model" in at.dataframe[0].value.index


def test_every_metric_can_be_overlaid(home):
    a, b = train(), train(seed=1)
    at = app(COMPARE, runs=f"{a},{b}")
    for metric in ("train accuracy", "val accuracy", "val loss", "test accuracy", "test loss", "learning rate"):
        at.button_group(key="compare_metric").set_value(metric).run()
        ok(at)
        assert len(at.get("vega_lite_chart")) == 1, metric


def test_a_link_from_a_run_adds_it_to_the_comparison(home):
    a, b, c = train(), train(), train()
    at = app(COMPARE, runs=f"{a},{b}")
    assert at.multiselect(key="compare_runs").value == [a, b]
    at.query_params["runs"] = str(c)  # "Compare" on run c's detail page
    at.run()
    ok(at)
    assert at.multiselect(key="compare_runs").value == [c, a, b]


def test_two_runs_image_by_image_on_a_worker(broker):
    from scipy.stats import binomtest

    from core.jobs.kinds import DIFF
    from core.records import jobs

    a, b = train(), train(seed=1)
    at = app(COMPARE, runs=f"{a},{b}")
    ok(at)
    assert at.selectbox(key="compare_diff_a").value == a and at.selectbox(key="compare_diff_b").value == b
    assert at.selectbox(key="compare_diff_dataset").value == "digits"  # what A was trained on
    at.button(key="compare_diff_go").click().run()
    ok(at)
    job = jobs.list_jobs(kind=DIFF, limit=1)[0]
    assert job.status == "queued" and job.params == {"a": str(a), "b": str(b), "split": "test", "dataset": "digits"}
    assert at.button(key="compare_diff_go").disabled  # one at a time
    assert run_queued_jobs() == ["succeeded"], jobs.get_job(job.id).error
    at.run()
    ok(at)
    result = jobs.get_job(job.id).result
    fixed, broken, both = (len(result[k]) for k in ("fixed", "broken", "both_wrong"))
    assert fixed - broken == result["b_correct"] - result["a_correct"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["McNemar's exact p"] == f"{binomtest(min(fixed, broken), fixed + broken, 0.5).pvalue:.3g}"
    assert metrics["A right"] == f"{result['a_correct']} / {result['matched']}"
    # A is the reference: no change shown on it (the trial saw a green arrow); B's is against A.
    deltas = {m.label: m.delta for m in at.metric}
    assert not deltas["A right"] and deltas["B right"].endswith("points vs A"), deltas
    assert [t.label for t in at.tabs] == [f"Fixed ({fixed})", f"Broken ({broken})", f"Both wrong ({both})"]
    # A thumbnail for each image shown (at most DIFF_SHOWN a group), each captioned with both answers.
    shown = min(fixed, 24) + min(broken, 24) + min(both, 24)
    assert len(at.image) == shown
    captions = [t for t in texts(at.caption) if "· truth" in t]
    assert len(captions) == shown and all("A: " in t and "B: " in t for t in captions)
    # The settings that differ, beside the figures.
    table = at.dataframe[-1].value
    assert table.loc["seed"].tolist() == ["0", "1"]


def test_an_automatic_run_is_compared_by_the_settings_it_trained_with(home):
    """Recipe auto's nominal settings are where its search started; Compare shows what its
    winner trained with (its Config tab and `imori show --config` do too)."""
    from test_run_detail import auto_run, auto_search

    plain = train(lr=1e-3)
    auto = auto_run(auto_search())
    at = app(COMPARE, runs=f"{plain},{auto}")
    ok(at)
    at.toggle(key="compare_only_diff").set_value(False).run()
    table = at.dataframe[0].value
    assert table.loc["model"].tolist() == ["mnist_cnn", "efficientnet_lite0"]
    assert table.loc["lr"].tolist() == ["0.001", "0.0001"] and table.loc["label_smoothing"].tolist()[1] == "0.1"
