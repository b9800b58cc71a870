"""No text cut off (the new user's trial): the New run button's label, the Datasets list's
"about", the Runs list's columns past "duration". Each is sized for the wide layout beside
the sidebar on a 1280-pixel screen; a row taller than 4rem lets a cell's text wrap."""

from __future__ import annotations

import ast
import json

from dashkit import ROOT, app, ok, train

MAIN_WIDTH = 980  # 1280 pixels less the sidebar and the page's margins
CHAR_PX = 8  # a generous average width of a character of the dashboard's font at 14 px
LINE_PX = 20
WRAPS_ABOVE = 64  # Streamlit wraps a cell's text in rows taller than 4rem


def widths(frame) -> dict[str, int]:
    config = json.loads(frame.proto.columns)
    return {name: c.get("width") for name, c in config.items()}


def page_constant(page: str, name: str):
    """A page's module-level constant, read from its source (importing a page runs it)."""
    tree = ast.parse((ROOT / "dashboard" / page).read_text())
    [value] = [node.value for node in tree.body if isinstance(node, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)]
    return ast.literal_eval(value)


def test_the_new_run_button_label_fits_its_column(home):
    at = app("app_pages/new_run.py")
    ok(at)
    button = at.button(key="nr_auto_queue")
    columns = page_constant("app_pages/new_run.py", "AUTO_COLUMNS")
    share = columns[2] / sum(columns) * MAIN_WIDTH
    assert len(button.label) * CHAR_PX + 60 <= share, (button.label, share)  # the icon and padding: 60 px


def test_the_datasets_list_fits_and_wraps_what_is_long(home):
    at = app("app_pages/datasets.py")
    ok(at)
    [listed] = [d for d in at.dataframe if "about" in d.value.columns]
    sized = widths(listed)
    columns = list(listed.value.columns)
    assert all(isinstance(sized.get(c), int) for c in columns), sized  # none left to its content's width
    assert sum(sized[c] for c in columns) <= MAIN_WIDTH
    assert listed.proto.row_height > WRAPS_ABOVE
    lines = (listed.proto.row_height - 6) // LINE_PX
    longest = max(listed.value["about"], key=len)
    assert len(longest) * CHAR_PX <= sized["about"] * lines, longest


def test_the_runs_list_shows_every_column_to_the_last(home):
    train()
    at = app("app_pages/runs.py")
    ok(at)
    table = at.dataframe[0]
    sized = widths(table)
    columns = list(table.value.columns)
    assert columns[-1] == "note" and all(isinstance(sized.get(c), int) for c in columns), sized
    assert sum(sized[c] for c in columns) <= MAIN_WIDTH
