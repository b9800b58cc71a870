"""Compare: two runs' curves overlaid; their settings side by side, differences highlighted."""

from __future__ import annotations

from dashkit import app, ok, texts, train

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
