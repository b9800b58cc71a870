"""``imori datasets import`` with a CSV's columns picked by flags; its report per class."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from cli.main import main


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("IMORI_HOME", str(tmp_path / "home"))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def csv_zip(path, text: str, names: list[str]):
    with zipfile.ZipFile(path, "w") as zf:
        for i, name in enumerate(names):
            zf.writestr(f"set/images/{name}", png(i))
        zf.writestr("set/meta.csv", text)
    return path


def test_import_with_file_and_label_columns_by_name(tmp_path, capsys):
    names = [f"im{i}.png" for i in range(6)]
    rows = "".join(f"{i},images/{n},{'cat' if i < 3 else 'dog'},{'in' if i % 2 else 'out'}\n" for i, n in enumerate(names))
    archive = csv_zip(tmp_path / "meta.zip", "id,path,animal,where\n" + rows, names)
    code, out, err = run(capsys, "datasets", "import", str(archive), "--name", "where",
                         "--file-column", "path", "--label-column", "where")
    assert code == 0, err
    assert "imported where (a CSV of images and labels from meta.zip)" in out and "files from 'path', labels from 'where'" in dataset_layout("where")
    table = [line.split() for line in out.splitlines() if line.strip().split()[:1] in (["in"], ["out"])]
    assert sorted(row[0] for row in table) == ["in", "out"]  # the per-class counts
    assert all(int(row[-1]) == 3 for row in table)  # 3 images each (train + test = total)


def test_import_with_columns_by_index_as_json(tmp_path, capsys):
    names = [f"im{i}.png" for i in range(6)]
    rows = "".join(f"x {i % 2} images/im{i}\n" for i in range(6))  # whitespace-separated, ids without extension
    archive = csv_zip(tmp_path / "idx.zip", rows, names)
    code, out, err = run(capsys, "datasets", "import", str(archive), "--name", "idx",
                         "--file-column", "2", "--label-column", "1", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["classes"] == ["0", "1"] and sum(info["counts"].values()) == 6


def test_a_missing_column_is_a_one_line_error(tmp_path, capsys):
    archive = csv_zip(tmp_path / "bad.zip", "file,label\nimages/a.png,x\nimages/b.png,y\n", ["a.png", "b.png"])
    code, out, err = run(capsys, "datasets", "import", str(archive), "--file-column", "picture")
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error:") and "no column named 'picture'" in err and "'file', 'label'" in err
    code, out, err = run(capsys, "datasets", "--label-column", "label")
    assert code == 2 and "goes with import" in err


def dataset_layout(name: str) -> str:
    from core.data.imported import read_manifest

    return read_manifest(name)["layout"]


@pytest.mark.parametrize(("argv", "expected"), [
    (["datasets"], {"action": "list", "json": False}),
    (["datasets", "--json"], {"action": "list", "json": True}),
    (["datasets", "list", "--json"], {"action": "list", "json": True}),
    (["datasets", "import", "a.zip", "--name", "n"], {"action": "import", "path": "a.zip", "name": "n"}),
    (["datasets", "--name", "n", "import", "a.zip"], {"action": "import", "path": "a.zip", "name": "n"}),
    (["datasets", "--file-column=f", "import", "a.zip"], {"action": "import", "path": "a.zip", "file_column": "f"}),
    (["datasets", "check", "leaves", "--no-features", "--json"],
     {"action": "check", "dataset": "leaves", "features": False, "json": True}),
    (["datasets", "--no-features", "check", "leaves"], {"action": "check", "dataset": "leaves", "features": False}),
    (["datasets", "--drop-kind", "dark", "fix", "leaves", "--drop-test-copies"],
     {"action": "fix", "dataset": "leaves", "drop_kind": ["dark"], "drop_test_copies": True}),
    (["datasets", "delete", "leaves"], {"action": "delete", "dataset": "leaves"}),
])
def test_the_old_spellings_and_the_subcommands_read_the_same(argv, expected):
    from cli.datasets import old_spelling
    from cli.main import make_parser

    args = vars(make_parser().parse_args(old_spelling(argv)))
    assert {key: args[key] for key in expected} == expected


@pytest.mark.parametrize(("action", "own", "others"), [
    ("list", "--json", "--name"),
    ("import", "--filename-encoding", "--drop-kind"),
    ("check", "--no-features", "--file-column"),
    ("fix", "--relabel-suggested", "--no-features"),
    ("delete", "NAME", "--drop"),
])
def test_each_action_has_its_own_help(capsys, action, own, others):
    with pytest.raises(SystemExit) as exit:
        main(["datasets", action, "--help"])
    out = capsys.readouterr().out
    assert exit.value.code == 0 and out.startswith(f"usage: imori datasets {action}")
    assert own in out and others not in out


def test_an_action_is_one_function_and_one_registration(monkeypatch, capsys):
    """What the actions of later issues (label, suggest, map) will do."""
    from cli import datasets

    def label_options(p):
        p.add_argument("dataset")

    def cmd_label(args):
        print(f"labelling {args.dataset}")
        return 0

    label = datasets.Action("label", "label the images of a dataset", cmd_label, label_options)
    monkeypatch.setattr(datasets, "ACTIONS", (*datasets.ACTIONS, label))
    assert main(["datasets", "label", "leaves"]) == 0
    assert capsys.readouterr().out == "labelling leaves\n"
