"""Exports: every registered model to ONNX, checked by ONNX Runtime against PyTorch; the
sidecar alone reproduces imori's probabilities; a failing export is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import RunConfig
from core.errors import ImoriError
from core.export import ExportError, compare, export
from core.models.specs import get_spec, list_models
from core.train import fit

# Each model at its smallest input (vgg16's is left to bench/: its 138 M parameters make
# a slow test), trained one step so that its BatchNorm statistics are real.
SMALLEST = {"mynet": (16, 16), "mnist_cnn": (28, 28), "lenet5": (32, 32), "tiny_net": (32, 32), "resnet18": (16, 16),
            "mobilenet_v3_small": (16, 16), "efficientnet_lite0": (32, 32)}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    made = {}

    def make(name: str):
        if name not in made:
            spec = get_spec(name)
            config = RunConfig(model=name, dataset="digits" if spec.in_channels == 1 else "shapes", iterations=1,
                               epochs=None, batch_size=8, image_size=SMALLEST[name], pretrained=False)
            made[name] = fit(config, tmp_path_factory.mktemp(name)).last_checkpoint
        return made[name]

    return make


# vgg16 is slow to export; EfficientNet-Lite1 and Lite2 are Lite0's blocks, deeper and wider.
NOT_EXPORTED_HERE = {"vgg16", "efficientnet_lite1", "efficientnet_lite2"}


def test_the_smallest_inputs_cover_every_registered_model_but_vgg16_and_the_larger_lites():
    assert set(SMALLEST) | NOT_EXPORTED_HERE == {s.name for s in list_models()}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALLEST))
def test_every_model_exports_to_onnx_that_onnx_runtime_runs_as_pytorch_does(name, checkpoints, tmp_path):
    result = export(checkpoints(name), tmp_path / f"{name}.onnx", "onnx")
    assert result.parity.passed and result.parity.images > 50, result.parity.describe()
    assert result.parity.source.startswith("the test split of")
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["format"] == "onnx" and sidecar["parity"]["passed"] and sidecar["input_name"] == "image"


def test_the_sidecar_alone_reproduces_imori_predicts_probabilities(checkpoints, tmp_path):
    """An application with only the .onnx file and its .preprocess.json (PIL, numpy and
    ONNX Runtime; no imori, no torch) gets imori predict's probabilities."""
    import onnxruntime

    from core.predict import Predictor

    path = checkpoints("mnist_cnn")
    result = export(path, tmp_path / "digits.onnx", "onnx")
    contract = json.loads(result.sidecar.read_text())
    photo = tmp_path / "seven.png"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(photo)  # another size, in colour

    image = Image.open(photo).convert("L" if contract["channels"] == 1 else "RGB")
    size = contract["input_size"]
    image = image.resize((size["width"], size["height"]), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32) * contract["scale"]
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    array = (array - np.array(contract["mean"], np.float32)[:, None, None]) / np.array(contract["std"], np.float32)[:, None, None]
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    scores = session.run(None, {contract["input_name"]: array[None].astype(np.float32)})[0][0]
    probs = np.exp(scores) if contract["output"] == "log_probs" else np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    [expected] = Predictor(path).predict([photo.read_bytes()])
    ours = [expected.probabilities[c] for c in contract["classes"]]
    assert np.abs(probs - np.array(ours)).max() < 1e-4, (probs, ours)


def test_the_default_onnx_export_loads_in_onnx_runtime_1_16(checkpoints, tmp_path):
    """ONNX Runtime 1.16 loads IR <= 9 and opset <= 19; the exporter alone writes IR 10.
    The file written (not the exporter's) is what the parity check ran."""
    import onnx

    result = export(checkpoints("tiny_net"), tmp_path / "m.onnx", "onnx")
    written = onnx.load(str(result.path))
    opset = next(o.version for o in written.opset_import if o.domain in ("", "ai.onnx"))
    assert written.ir_version <= 9 and opset <= 19
    assert (result.opset, result.ir_version) == (opset, written.ir_version)
    sidecar = json.loads(result.sidecar.read_text())
    assert (sidecar["opset"], sidecar["ir_version"]) == (opset, written.ir_version)
    assert sidecar["exports"]["onnx"]["opset"] == opset and sidecar["parity"]["passed"]
    with pytest.raises(ExportError, match="opset 7 cannot be written"):
        export(checkpoints("tiny_net"), tmp_path / "old.onnx", "onnx", opset=7)
    with pytest.raises(ExportError, match="ONNX exports only"):
        export(checkpoints("tiny_net"), tmp_path / "m.pt2", "pt2", opset=18)


def test_pt2_export_runs_without_the_model_class(checkpoints, tmp_path):
    result = export(checkpoints("tiny_net"), tmp_path / "tiny.pt2", "pt2")
    assert result.parity.passed and result.path.is_file()
    loaded = torch.export.load(str(result.path)).module()
    assert loaded(torch.zeros(3, 1, 32, 32)).shape == (3, 10)  # any batch size


def test_an_export_that_disagrees_is_refused_with_the_figures_and_leaves_nothing(checkpoints, tmp_path, monkeypatch):
    import core.export as exporting

    real = exporting._run_onnx
    monkeypatch.setattr(exporting, "_run_onnx", lambda *a: real(*a).roll(1, dims=1))  # a wrong class order
    out = tmp_path / "wrong.onnx"
    with pytest.raises(ExportError, match=r"does not answer as PyTorch does.*top-1 agreement"):
        export(checkpoints("tiny_net"), out, "onnx")
    assert list(tmp_path.iterdir()) == []


def test_parity_ignores_near_ties_and_counts_differences():
    reference = torch.tensor([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05]])
    swapped = torch.tensor([[0.49999, 0.50001, 0.0], [0.9, 0.05, 0.05]])
    parity = compare(reference, swapped, "two images")
    assert parity.ignored == 1 and parity.agreement == 1.0 and parity.max_difference == pytest.approx(1e-5, abs=1e-6)
    assert parity.passed
    assert not compare(reference, torch.tensor([[0.5, 0.5, 0.0], [0.05, 0.9, 0.05]]), "x").passed


def test_an_unknown_format_is_a_clear_error(checkpoints, tmp_path):
    with pytest.raises(ExportError, match="export format is one of state_dict, onnx, pt2"):
        export(checkpoints("tiny_net"), tmp_path / "x", "tflite")


def test_the_onnx_and_pt2_exports_of_one_name_share_one_sidecar(checkpoints, tmp_path):
    """model.onnx then model.pt2 (then model.pt): one model.preprocess.json lists each
    file with its own parity figures; another model's export to that name is refused
    while those files are there, and loses nothing."""
    export(checkpoints("mnist_cnn"), tmp_path / "model.onnx", "onnx")
    # As a calibrated checkpoint's sidecar reads (core.export._add_temperature): still the same model.
    first = json.loads((tmp_path / "model.preprocess.json").read_text())
    (tmp_path / "model.preprocess.json").write_text(json.dumps({**first, "temperature": 0.5}))
    export(checkpoints("mnist_cnn"), tmp_path / "model.pt2", "pt2")
    export(checkpoints("mnist_cnn"), tmp_path / "model.pt", "state_dict")
    sidecar = json.loads((tmp_path / "model.preprocess.json").read_text())
    assert sorted(sidecar["exports"]) == ["onnx", "pt2", "state_dict"]
    assert sidecar["exports"]["onnx"]["file"] == "model.onnx" and sidecar["exports"]["onnx"]["parity"]["passed"]
    assert sidecar["exports"]["onnx"]["input_name"] == "image"
    assert sidecar["exports"]["pt2"]["file"] == "model.pt2" and sidecar["exports"]["pt2"]["parity"]["passed"]
    before = (tmp_path / "model.preprocess.json").read_bytes()
    with pytest.raises(ExportError, match="exported from another model"):
        export(checkpoints("lenet5"), tmp_path / "model.onnx", "onnx")
    assert (tmp_path / "model.preprocess.json").read_bytes() == before


def test_every_export_states_the_answer_rule_and_a_nonsense_floor_is_refused(checkpoints, tmp_path):
    """The "not sure" rule travels with the model: the same words and floor as Predict."""
    from core.predict import NOT_SURE

    result = export(checkpoints("tiny_net"), tmp_path / "sure.pt", "state_dict", min_confidence=0.8)
    answer = json.loads(result.sidecar.read_text())["answer"]
    assert answer["min_confidence"] == 0.8 and answer["not_sure"] == NOT_SURE and "min_confidence" in answer["rule"]
    onnx = export(checkpoints("tiny_net"), tmp_path / "always.onnx", "onnx")
    assert json.loads(onnx.sidecar.read_text())["answer"]["min_confidence"] == 0.0
    with pytest.raises(ImoriError, match=r"min_confidence is a probability in \[0, 1\) \(0.8 for 80 %\), not 80"):
        export(checkpoints("tiny_net"), tmp_path / "bad.pt", "state_dict", min_confidence=80)
    assert not (tmp_path / "bad.pt").exists()


def test_the_dashboards_export_job_checks_as_many_images_as_imori_export(checkpoints, tmp_path, monkeypatch, capsys):
    """The Export button (the ``export`` job, without ``max_images``) and ``imori export``
    ask the parity check for the same images (once 512 against the CLI's 525 on ELPV)."""
    import core.export
    from cli.main import main
    from core.jobs import export as export_job
    from core.jobs.kinds import JobContext

    asked: list[int] = []
    check = core.export.parity_inputs
    monkeypatch.setattr(core.export, "parity_inputs", lambda ckpt, max_images: asked.append(max_images) or
                        check(ckpt, max_images))
    path = checkpoints("tiny_net")
    job = export_job.run(JobContext(id=1, subject=str(path), params={"format": "onnx"}))
    assert main(["export", str(path), str(tmp_path / "cli.onnx"), "--format", "onnx", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert asked == [core.export.MAX_IMAGES, core.export.MAX_IMAGES]
    assert job["figures"]["images"] == cli["parity"]["images"] > 0
    assert job["figures"]["source"] == cli["parity"]["source"]


def test_an_int8_export_passes_its_guard_is_smaller_and_says_its_figures(digits_checkpoint, tmp_path, capsys):
    import onnx
    import onnxruntime

    from cli.main import main

    out = tmp_path / "digits.int8.onnx"
    assert main(["export", str(digits_checkpoint), str(out), "--json"]) == 0  # the format from the name
    said = json.loads(capsys.readouterr().out)
    assert said["format"] == "onnx-int8" and said["int8"]["passed"], said["int8"]
    sidecar = json.loads((tmp_path / "digits.int8.preprocess.json").read_text())
    assert sidecar["format"] == "onnx-int8" and sidecar["int8_passed"]
    assert sidecar["agreement"] >= 0.99 and sidecar["int8_accuracy"] >= sidecar["float_accuracy"] - 0.01
    assert sidecar["bytes"] == out.stat().st_size and sidecar["bytes"] * 2 <= sidecar["float_bytes"]
    assert sidecar["ms_per_image"] > 0 and sidecar["parity"]["passed"]  # the float model beside PyTorch first
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(None, {"image": np.zeros((3, 1, 28, 28), np.float32)})[0].shape == (3, 10)


def test_an_int8_export_that_loses_too_much_is_refused_with_the_figures(digits_checkpoint, tmp_path, monkeypatch):
    import core.export as exporting

    monkeypatch.setattr(exporting, "INT8_MIN_AGREEMENT", 1.01)  # no INT8 copy can agree that well
    with pytest.raises(ExportError, match=r"INT8 export loses too much.*agreement .* \(at least 101 % needed\).*"
                                          r"accuracy \d+\.\d\d % float, \d+\.\d\d % INT8"):
        export(digits_checkpoint, tmp_path / "digits.int8.onnx", "onnx-int8")
    assert list(tmp_path.iterdir()) == []


def test_an_int8_export_without_the_dataset_is_refused_before_any_work(digits_checkpoint, tmp_path):
    """A bare state_dict names no dataset: no training images to calibrate on, no test split."""
    from core.checkpoint import load_checkpoint

    bare = export(digits_checkpoint, tmp_path / "bare.pt", "state_dict").path
    ckpt = load_checkpoint(bare, model="mnist_cnn")
    with pytest.raises(ImoriError, match="an INT8 export needs the checkpoint's dataset"):
        export(ckpt, tmp_path / "bare.int8.onnx", "onnx-int8")
    assert not (tmp_path / "bare.int8.onnx").exists()


def test_the_export_job_makes_an_int8_zip_with_its_guards_figures(digits_checkpoint):
    """The run page's INT8 offer is an ``export`` job with ``format: onnx-int8``."""
    import zipfile

    from core.jobs import export as export_job
    from core.jobs.kinds import JobContext

    done = export_job.run(JobContext(id=31, subject=str(digits_checkpoint), params={"format": "onnx-int8"}))
    assert sorted(zipfile.ZipFile(done["zip"]).namelist()) == ["model.int8.onnx", "model.int8.preprocess.json"]
    assert done["int8_figures"]["passed"] and done["int8"].startswith("INT8 top-1 agreement with the float model")
