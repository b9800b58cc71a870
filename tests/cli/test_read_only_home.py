"""A read-only IMORI_HOME (a shared results folder, a mounted backup): the reading
commands work, the writing ones exit non-zero with one line saying the folder is not
writable, and records that would need an upgrade say so.

The commands run in a child process that truly cannot write there: the folder is
chmod'ed read-only, and a test run as root (which ignores permissions) runs the child
without the capabilities that let root write anyway (``setpriv --bounding-set``)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from core.records.engine import dispose_engines, downgrade, get_engine

ROOT = Path(__file__).resolve().parents[2]
# Run each command in the child; print {argv: [exit code, stdout, stderr]} as JSON.
CHILD = """
import contextlib, io, json, sys
from cli.main import main
out = {}
for argv in json.loads(sys.argv[1]):
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
        except BaseException as err:  # a traceback: the test shows it
            import traceback
            code, e = 99, io.StringIO(traceback.format_exc())
    out[" ".join(argv)] = [code, o.getvalue(), e.getvalue()]
print(json.dumps(out))
"""


def _without_write_rights() -> list[str]:
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: root would write the read-only folder anyway")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def _read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _run(home: Path, commands: list[list[str]]) -> dict[str, list]:
    env = {**os.environ, "IMORI_HOME": str(home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*_without_write_rights(), sys.executable, "-c", CHILD, json.dumps(commands)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def home(tmp_path, monkeypatch, capsys):
    """A home with one trained run and one imported dataset, then made read-only."""
    home = tmp_path / "home"
    monkeypatch.setenv("IMORI_HOME", str(home))
    photos = tmp_path / "photos"
    for c in "ab":
        (photos / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)).save(photos / c / f"{i}.png")
    assert main(["train", "--model", "tiny_net", "--dataset", "digits", "--iterations", "2", "--quiet", "--json"]) == 0
    assert main(["datasets", "import", str(photos), "--name", "pets"]) == 0
    capsys.readouterr()
    dispose_engines()  # closed: the WAL is folded into the file, as in a copied backup
    yield home
    dispose_engines()


def test_reading_works_and_writing_says_the_folder_is_not_writable(home, tmp_path):
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    _read_only(home)
    reading = [["runs"], ["show", "1"], ["datasets", "list"], ["jobs"], ["models"],
               ["predict", str(image), "--run", "1"],
               ["evaluate", "--checkpoint", str(home / "runs" / "1" / "checkpoints" / "best.pt"), "--dataset", "digits"]]
    writing = [["tag", "1", "--add", "x"], ["note", "1", "hello"], ["delete", "1"],
               ["datasets", "import", str(tmp_path / "photos"), "--name", "more"], ["datasets", "delete", "pets"],
               ["train", "--model", "tiny_net", "--dataset", "digits", "--iterations", "1", "--quiet"]]
    answers = _run(home, reading + writing)
    for argv in reading:
        code, out, err = answers[" ".join(argv)]
        assert code == 0 and out, (argv, err)
    assert "tiny_net" in answers["runs"][1] and "pets" in answers["datasets list"][1]
    for argv in writing:
        code, out, err = answers[" ".join(argv)]
        assert code not in (0, 99), (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and f"{home} is not writable" in lines[0], (argv, err)


def test_records_that_need_an_upgrade_say_the_folder_is_not_writable(home):
    get_engine()
    downgrade(get_engine(migrate=False), "0009")  # as an older imori left them
    dispose_engines()
    _read_only(home)
    code, out, err = _run(home, [["runs"]])["runs"]
    assert code == 2 and "is not writable" in err and "upgrade its run records (schema revision 0009)" in err, err
