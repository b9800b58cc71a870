"""Prediction: probabilities that sum to 1, match eval mode, and agree with the tutorials."""

import io

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from core.config import RunConfig
from core.predict import Predictor, evaluate
from core.train import fit


class TutorialMynet(nn.Module):
    """Seed 000's Mynet, written the tutorial's way (functional ReLU, view, two classes)."""

    def __init__(self, classes=2, size=64):
        super().__init__()
        self.size = size
        chans = [(3, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
        names = ["1_1", "1_2", "2_1", "2_2", "3_1", "3_2", "4_1", "4_2"]
        for name, (cin, cout) in zip(names, chans):
            setattr(self, f"conv{name}", nn.Conv2d(cin, cout, kernel_size=3, padding=1))
            setattr(self, f"bn{name}", nn.BatchNorm2d(cout))
        self.fc1 = nn.Linear(size // 16 * size // 16 * 256, 512)
        self.fc2 = nn.Linear(512, 512)
        self.fc_out = nn.Linear(512, classes)

    def forward(self, x):
        for block in ("1", "2", "3", "4"):
            x = F.relu(getattr(self, f"bn{block}_1")(getattr(self, f"conv{block}_1")(x)))
            x = F.relu(getattr(self, f"bn{block}_2")(getattr(self, f"conv{block}_2")(x)))
            x = F.max_pool2d(x, 2)
        x = x.view(-1, self.size // 16 * self.size // 16 * 256)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc_out(x)


def photo(size=(64, 64), seed=0) -> bytes:
    """A colourful PNG whose red and blue channels differ a lot (so BGR vs RGB matters)."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    array = np.zeros((h, w, 3), dtype=np.uint8)
    array[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    array[..., 2] = 255 - array[..., 0]
    array[..., 1] = rng.integers(0, 255, (h, w))
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def seed000_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = TutorialMynet()
    # Give BatchNorm non-trivial running statistics, so eval mode matters.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(8, 3, 64, 64))
        model.fc_out.weight.mul_(50)  # confident outputs, like a trained net's, so inputs matter
    path = tmp_path_factory.mktemp("seed000") / "cnn.pt"
    torch.save(model.state_dict(), path)
    return model.eval(), path


def tutorial_probabilities(model, png: bytes) -> np.ndarray:
    """Seed 000's test mode: cv2.imread (BGR) -> /255 -> CHW -> softmax."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    bgr = rgb[..., ::-1].astype(np.float32) / 255.0  # what cv2.imread gives
    x = torch.tensor(np.expand_dims(bgr.transpose(2, 0, 1), 0), dtype=torch.float)
    with torch.no_grad():
        return F.softmax(model(x), dim=1).numpy()[0]


def test_a_tutorial_cnn_pt_and_imori_agree_on_one_photo(seed000_checkpoint):
    model, path = seed000_checkpoint
    png = photo()
    predictor = Predictor(path, model="mynet", classes=["akahara", "madara"])
    assert predictor.preprocessing.channel_order == "BGR"
    [prediction] = predictor.predict([png])
    ours = np.array([prediction.probabilities["akahara"], prediction.probabilities["madara"]])
    theirs = tutorial_probabilities(model, png)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # And the channel order is what makes them agree: read as RGB, the answer moves.
    rgb = Predictor(path, model="mynet", classes=["akahara", "madara"])
    rgb.preprocessing = type(rgb.preprocessing).from_dict({**rgb.preprocessing.to_dict(), "channel_order": "RGB"})
    [other] = rgb.predict([png])
    assert abs(other.probabilities["akahara"] - ours[0]) > 1e-4  # 10x the agreement tolerance


def test_probabilities_sum_to_one_and_match_eval_mode(seed000_checkpoint):
    model, path = seed000_checkpoint
    predictor = Predictor(path, model="mynet", classes=["akahara", "madara"])
    predictions = predictor.predict([photo(seed=s) for s in range(3)], top_k=5)
    for p in predictions:
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert len(p.top) == 2 and p.top[0][1] >= p.top[1][1]
    assert not predictor.model.training
    x = predictor.preprocessing(Image.open(io.BytesIO(photo(seed=1))))
    with torch.no_grad():
        expected = F.softmax(model(x), dim=1)[0].tolist()
    assert list(predictions[1].probabilities.values()) == pytest.approx(expected, abs=1e-6)


def test_unreadable_images_get_an_error_not_a_crash(seed000_checkpoint):
    _, path = seed000_checkpoint
    predictor = Predictor(path, model="mynet", classes=["a", "b"])
    good, bad = predictor.predict([photo(), b"this is text, not a png"], names=["good.png", "bad.png"])
    assert good.error is None and good.label in ("a", "b")
    assert bad.error and "bad" not in (bad.label or "") and not bad.probabilities


def test_log_softmax_models_give_probabilities_and_evaluation_builds_a_confusion_matrix(tmp_path):
    config = RunConfig(model="mnist_cnn", dataset="digits", batch_size=64, epochs=1)
    result = fit(config, tmp_path / "run")
    predictor = Predictor(result.best_checkpoint)
    report = evaluate(predictor, "digits")
    assert 350 <= report.count <= 370  # the fixed 20 % test split of 1,797 digits
    assert sum(map(sum, report.confusion)) == report.count
    assert report.accuracy == pytest.approx(sum(report.confusion[i][i] for i in range(10)) / report.count)
    # The evaluation repeats what training measured on the same split and checkpoint.
    from core.checkpoint import load_checkpoint

    assert report.accuracy == pytest.approx(load_checkpoint(result.best_checkpoint).metrics["test_accuracy"], abs=1e-9)
    assert set(report.per_class) == {str(i) for i in range(10)}
    # Per-class precision/recall/F1 and balanced accuracy come from the same matrix.
    from core.metrics import balanced_accuracy, class_metrics

    assert report.class_metrics == class_metrics(report.confusion, report.classes)
    assert sum(m["support"] for m in report.class_metrics.values()) == report.count
    assert all(m["recall"] == pytest.approx(report.per_class[c]) for c, m in report.class_metrics.items())
    assert report.balanced_accuracy == pytest.approx(balanced_accuracy(report.confusion))
    stored = report.to_dict()
    assert stored["class_metrics"]["3"].keys() == {"precision", "recall", "f1", "support"}
    assert stored["balanced_accuracy"] == report.balanced_accuracy
    confidences = [m["confidence"] for m in report.misclassified]
    assert confidences == sorted(confidences, reverse=True)
    assert all(m["true"] != m["predicted"] for m in report.misclassified)
    # Images from the test split, predicted one by one, give the same probabilities.
    from core.data.registry import load_dataset

    data = load_dataset("digits", predictor.preprocessing)
    probs = predictor.probabilities(predictor.preprocessing.normalize(data.test.images[:4]))
    assert torch.allclose(probs.sum(1), torch.ones(4), atol=1e-5)


# A confusion matrix worked by hand (rows: true class, columns: predicted):
#        a  b  c  d  e
#   a [  4, 1, 0, 1, 0 ]   support 6
#   b [  2, 3, 0, 0, 0 ]   support 5
#   c [  1, 1, 0, 0, 0 ]   support 2, never predicted
#   d [  0, 0, 0, 0, 0 ]   support 0, predicted once
#   e [  0, 0, 0, 0, 0 ]   neither true nor predicted: not listed
# column sums (predicted): a 7, b 5, c 0, d 1, e 0
HAND = [[4, 1, 0, 1, 0], [2, 3, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
CLASSES = ["a", "b", "c", "d", "e"]


def test_per_class_metrics_from_a_hand_computed_confusion_matrix():
    from core.metrics import class_metrics

    metrics = class_metrics(HAND, CLASSES)
    assert list(metrics) == ["a", "b", "c", "d"]
    a, b, c, d = (metrics[k] for k in "abcd")
    assert a["precision"] == pytest.approx(4 / 7) and a["recall"] == pytest.approx(4 / 6)
    assert a["f1"] == pytest.approx(8 / 13) and a["support"] == 6  # 2PR/(P+R) = 2*4/(6+7)
    assert b["precision"] == pytest.approx(3 / 5) and b["recall"] == pytest.approx(3 / 5)
    assert b["f1"] == pytest.approx(3 / 5) and b["support"] == 5
    assert c == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}  # never predicted: precision 0
    assert d == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}  # no true images: recall 0


def test_balanced_accuracy_is_the_mean_recall_of_the_classes_present():
    from core.metrics import balanced_accuracy

    assert balanced_accuracy(HAND) == pytest.approx((4 / 6 + 3 / 5 + 0 / 2) / 3)  # = 19/45; d and e left out
    assert balanced_accuracy([[0, 0], [0, 0]]) is None
    assert balanced_accuracy([[3, 0], [0, 1]]) == 1.0


def test_metrics_agree_with_scikit_learn():
    import warnings

    from sklearn.metrics import balanced_accuracy_score, precision_recall_fscore_support

    from core.metrics import balanced_accuracy, class_metrics

    y_true = [t for t, row in enumerate(HAND) for p, n in enumerate(row) for _ in range(n)]
    y_pred = [p for t, row in enumerate(HAND) for p, n in enumerate(row) for _ in range(n)]
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1, 2, 3], zero_division=0)
    ours = class_metrics(HAND, CLASSES)
    for i, name in enumerate("abcd"):
        assert ours[name]["precision"] == pytest.approx(precision[i])
        assert ours[name]["recall"] == pytest.approx(recall[i])
        assert ours[name]["f1"] == pytest.approx(f1[i])
        assert ours[name]["support"] == support[i]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true": class d
        assert balanced_accuracy(HAND) == pytest.approx(balanced_accuracy_score(y_true, y_pred))


def test_most_confused_lists_the_off_diagonal_cells_most_first():
    from core.metrics import most_confused

    confusion = [[5, 2, 0], [4, 6, 1], [0, 2, 9]]
    assert most_confused(confusion, ["a", "b", "c"]) == [("b", "a", 4), ("a", "b", 2), ("c", "b", 2), ("b", "c", 1)]
    assert most_confused(confusion, ["a", "b", "c"], min_count=3) == [("b", "a", 4)]


def test_the_answer_is_not_sure_below_the_predictors_min_confidence_and_each_image_is_prepared_once(seed000_checkpoint):
    """The "not sure" rule is the predictor's (Predict, imori predict and exports say the
    same); a prediction carries what the model saw, so a page draws it without preparing
    the image again."""
    from core.errors import ConfigError
    from core.predict import NOT_SURE

    _, path = seed000_checkpoint
    png = photo(seed=2)
    predictor = Predictor(path, model="mynet", classes=["akahara", "madara"])
    [sure] = predictor.predict([png])
    top = sure.top[0][1]
    assert sure.sure and sure.answer == sure.label and sure.to_dict()["answer"] == sure.label
    [unsure] = predictor.predict([png], min_confidence=min(0.999, top + 1e-3))
    assert not unsure.sure and unsure.answer == NOT_SURE and unsure.label == sure.label
    assert unsure.to_dict()["answer"] == NOT_SURE and unsure.to_dict()["sure"] is False
    strict = Predictor(path, model="mynet", classes=["akahara", "madara"], min_confidence=min(0.999, top + 1e-3))
    assert strict.predict([png])[0].answer == NOT_SURE
    expected = predictor.preprocessing.to_uint8(Image.open(io.BytesIO(png)))
    assert sure.seen.dtype == torch.uint8 and torch.equal(sure.seen, expected)
    for bad in (-0.1, 1.0, 90):
        with pytest.raises(ConfigError, match=r"min_confidence is a probability in \[0, 1\)"):
            predictor.predict([png], min_confidence=bad)


def test_evaluate_reports_by_the_top_class_and_with_the_operating_point(digits_checkpoint):
    """Issue 34.6: where the checkpoint has an operating point, evaluation scores both ways,
    labelled; the second counts each image as ``Predictor.decide`` answers it."""
    from core.data.registry import load_dataset

    predictor = Predictor(digits_checkpoint)
    plain = evaluate(predictor, "digits")
    assert plain.operating_point is None and plain.to_dict()["operating_point"] is None
    predictor.thresholds = {"3": {"threshold": 0.05}}  # as core.calibration stores one: "3" when p(3) >= 0.05
    both = evaluate(predictor, "digits")
    assert both.confusion == plain.confusion and both.accuracy == plain.accuracy  # by the top class: unchanged
    point = both.operating_point
    assert point["rule"] == "3 if p(3) ≥ 0.050" and point["thresholds"] == {"3": 0.05}
    data = load_dataset("digits", predictor.preprocessing, seed=0)
    test = data.test
    probs = predictor.probabilities(predictor.preprocessing.normalize(test.images))
    decided = [predictor.classes.index(predictor.decide(dict(zip(predictor.classes, row)))) for row in probs.tolist()]
    truth = [predictor.classes.index(data.classes[y]) for y in test.labels.tolist()]
    assert point["accuracy"] == pytest.approx(sum(d == t for d, t in zip(decided, truth)) / len(truth))
    three = predictor.classes.index("3")
    assert sum(r[three] for r in point["confusion"]) == decided.count(three) > sum(r[three] for r in plain.confusion)
    assert point["per_class"]["3"] >= plain.per_class["3"]  # a low threshold finds more of its images
    assert set(point["class_metrics"]) == set(plain.class_metrics)
