"""The terminal's progress: a long stage outside the iterations gets its own bar."""

from __future__ import annotations

from cli.progress import CliRecorder, search_text
from core.recorder import Stage


def test_a_long_stage_shows_its_name_counts_and_log_lines(capsys):
    recorder = CliRecorder()
    with Stage(recorder, "computing the frozen backbone's features", 2100, every=0.0) as stage:
        stage(1200)
        err = capsys.readouterr().err
        assert "computing the frozen backbone's features: 2,100 images" in err  # the start's log line
        assert "computing the frozen backbone's features:" in err and "1200/2100" in err, err  # the bar
    err = capsys.readouterr().err
    assert "computing the frozen backbone's features: done in " in err
    assert recorder.stage_bar is None


def test_quiet_draws_no_stage_and_two_stages_in_a_row_do_not_fail(capsys):
    """--quiet (the benches' and scripts' way): a stage is silent, and the next stage's
    events are no error (a disabled tqdm bar keeps no description)."""
    quiet = CliRecorder(quiet=True)
    for name in ("decoding digits", "computing the frozen backbone's features"):
        with Stage(quiet, name, 10, every=0.0) as stage:
            stage(5)
    assert "computing" not in capsys.readouterr().err and quiet.stage_bar is None
    loud = CliRecorder()
    for name in ("decoding digits", "computing the frozen backbone's features"):
        with Stage(loud, name, 10, every=0.0) as stage:
            stage(5)
    assert "decoding digits: done in " in capsys.readouterr().err and loud.stage_bar is None


def test_the_search_leaderboard_keeps_its_columns_for_long_names():
    """`imori show`'s leaderboard: a name longer than the usual column ("..., with turned
    copies") widens the column for every line, so the figures stay one under another."""
    search = {"winner": "linear probe: efficientnet_lite0, with turned copies", "candidates": [
        {"name": "linear probe: efficientnet_lite0", "val_accuracy": 0.85, "seconds": 40.0, "status": "done"},
        {"name": "linear probe: efficientnet_lite0, with turned copies", "val_accuracy": 0.88, "seconds": 90.0,
         "status": "done"},
        {"name": "linear probe: efficientnet_lite2", "seconds": 0.0, "status": "skipped: too long"}]}
    rows = search_text(search).splitlines()[1:4]
    assert len({row.index(" val ") for row in rows}) == 1, rows
    assert rows[1].startswith(" * linear probe: efficientnet_lite0, with turned copies")
