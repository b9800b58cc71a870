"""What the model sees (issue 12.7): an upload compared with the checkpoint's training
images (brightness, polarity, size), the inverted image, the model input turned back into
a picture, and the Predictor attaching the warnings to each prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.checkpoint import Checkpoint
from core.data.preprocess import Preprocessing
from core.predict import Predictor, brightness, input_warnings, invert_image, median_size, to_picture

# The built-in digits at 28x28: light strokes on a dark background.
DIGITS = {"brightness_mean": 0.156, "brightness_std": 0.017, "train_images": 1368,
          "val_per_class": {str(i): 14 for i in range(10)}, "sizes": {"28x28": 1797}}
GRAY28 = Preprocessing(28, 28, channels=1)


def digit(size: int = 28, *, light_background: bool = False) -> Image.Image:
    """A stroke of a "1" covering about 15 % of the image."""
    array = np.zeros((28, 28), dtype=np.uint8)
    array[4:24, 12:17] = 255
    image = Image.fromarray(255 - array if light_background else array, mode="L")
    return image.resize((size, size), Image.Resampling.BILINEAR) if size != 28 else image


def test_an_image_like_the_training_images_gets_no_warning():
    assert brightness(digit(), GRAY28) == pytest.approx(100 * 255 / (28 * 28 * 255), abs=1e-6)
    assert input_warnings(DIGITS, digit(), GRAY28) == []
    assert input_warnings(DIGITS, digit()) == []  # without the preprocessing: grayscale at its own size
    assert input_warnings({}, digit(300, light_background=True), GRAY28) == []  # a bare state_dict knows nothing


def test_dark_ink_on_light_paper_gets_the_polarity_warning_once():
    photo = digit(300, light_background=True)  # the photographed digit, 300x300
    warnings = input_warnings(DIGITS, photo, GRAY28, name="paper.png")
    polarity = [w for w in warnings if "looks inverted" in w]
    assert len(polarity) == 1 and polarity[0].startswith("paper.png looks inverted: it is mostly light")
    assert "Try inverting it" in polarity[0]
    assert not any("much brighter" in w for w in warnings)  # not said twice
    [size] = [w for w in warnings if "usual size" in w]
    assert "300x300" in size and "28x28" in size and "11 times" in size
    # Inverted, it is what the model was trained on.
    assert input_warnings(DIGITS, invert_image(photo), GRAY28, name="paper.png") == [
        w for w in warnings if "usual size" in w
    ]


def test_the_reverse_polarity_and_plain_brightness():
    light_set = {"brightness_mean": 0.85, "brightness_std": 0.03}
    [w] = input_warnings(light_set, digit(), GRAY28)
    assert "looks inverted: it is mostly dark" in w
    # Far in brightness but on the same side of 0.5: the brightness warning, not polarity.
    grey = Image.new("L", (28, 28), 110)  # 0.43 against 0.156 +- 0.017
    [w] = input_warnings(DIGITS, grey, GRAY28)
    assert "much brighter than the training images" in w and "0.43" in w
    # Within 2 standard deviations: nothing.
    near = Image.new("L", (28, 28), round(255 * (0.156 + 1.9 * 0.017)))
    assert input_warnings(DIGITS, near, GRAY28) == []
    # A set without spread (one image) does not make every upload "far".
    flat = {"brightness_mean": 0.156, "brightness_std": 0.0}
    assert input_warnings(flat, Image.new("L", (28, 28), round(255 * 0.17)), GRAY28) == []


def test_sizes_under_a_quarter_or_over_four_times_the_median():
    sizes = {"brightness_mean": 0.5, "brightness_std": 0.5, "sizes": {"640x480": 50, "64x64": 10, "other": 3}}
    assert median_size(sizes["sizes"]) == (640, 480)
    assert median_size({}) is None and median_size({"other": 4}) is None
    assert input_warnings(sizes, Image.new("RGB", (1200, 900))) == []  # under four times
    [big] = input_warnings(sizes, Image.new("RGB", (3000, 2000)))
    assert "3000x2000" in big and "640x480" in big
    [small] = input_warnings(sizes, Image.new("RGB", (100, 100)))
    assert "far smaller" in small and "blurred" in small
    assert input_warnings(sizes, Image.new("RGB", (200, 150))) == []  # not under a quarter


def test_inversion_and_the_model_input_turned_back_into_a_picture():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    assert invert_image(rgba).mode == "RGB" and invert_image(rgba).getpixel((0, 0)) == (245, 235, 225)
    assert invert_image(digit()).mode == "L" and invert_image(digit()).getpixel((0, 0)) == 255
    prep = Preprocessing(8, 8, channels=3, channel_order="BGR", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8), mode="RGB")
    x = prep(image)
    assert x.dtype == torch.float32 and x.abs().max() > 1.5  # normalised
    picture = to_picture(prep, x)
    assert picture.dtype == torch.uint8 and torch.equal(picture, prep.to_uint8(image))


def test_the_predictor_attaches_the_warnings_to_each_prediction():
    from core.models.registry import build_model

    torch.manual_seed(0)
    ckpt = Checkpoint(kind="imori", model_name="mnist_cnn", model_options={}, classes=[str(i) for i in range(10)],
                      preprocessing=GRAY28.to_dict(), state_dict=build_model("mnist_cnn", 10).state_dict(), data=DIGITS)
    predictor = Predictor(ckpt)
    fine, paper = predictor.predict([digit(), digit(300, light_background=True)], names=["fine.png", "paper.png"])
    assert fine.warnings == []
    assert any("paper.png looks inverted" in w for w in paper.warnings)
    assert paper.to_dict()["warnings"] == paper.warnings
    assert torch.equal(to_picture(predictor.preprocessing, predictor.model_input(digit())), GRAY28.to_uint8(digit()))


# -- issue 34.5: unlike the training images; invert only where the negative looks like them ----


def digits_data(digits_checkpoint) -> dict:
    """What a digits run's checkpoint records of its training images (grayscale, histogram)."""
    from core.checkpoint import load_checkpoint

    data = load_checkpoint(digits_checkpoint).data
    assert data["grayscale"] is True and len(data["histogram"]) == 16 and data["histogram_distance"] > 0
    return data


def test_a_colour_photo_to_a_grayscale_checkpoint_is_unlike_its_training_images_and_not_inverted(digits_checkpoint):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from photos import scene

    predictor = Predictor(digits_checkpoint)
    portrait = scene(np.random.default_rng(3), "discs", size=28)  # a colour scene at the digits' own size
    light = Image.fromarray(np.clip(np.array(portrait, dtype=np.int16) + 90, 0, 255).astype(np.uint8))  # mostly light
    [colour, bright] = predictor.predict([portrait, light], names=["portrait.jpg", "bright.jpg"])
    for p in (colour, bright):
        # The colour first; the model may also find it like none of its classes (core.ood).
        unlike, *rest = [w for w in p.warnings if "unlike the training images" in w]
        assert all("looks like none of the classes" in w for w in rest), rest
        assert unlike.startswith(f"{p.source} is a colour image") and "all grayscale" in unlike
        assert not any("inverted" in w for w in p.warnings), p.warnings  # never the advice to invert a photo
    assert bright.warnings and any("much brighter than the training images" in w for w in bright.warnings)
    # The same photo in gray: no colour warning, and its negative is no digit either.
    gray = light.convert("L")
    warnings = input_warnings(predictor.checkpoint.data, gray, predictor.preprocessing)
    assert not any("colour image" in w or "inverted" in w for w in warnings), warnings


def test_an_inverted_digit_gets_the_invert_advice_and_a_normal_one_nothing(digits_checkpoint):
    from core.data.registry import load_dataset

    data = digits_data(digits_checkpoint)
    prep = Preprocessing.from_dict(Predictor(digits_checkpoint).checkpoint.preprocessing)
    images = load_dataset("digits", prep, seed=0).test.images[:20]
    for array in images:
        normal = Image.fromarray(array[0].numpy(), mode="L")
        assert input_warnings(data, normal, prep) == []
        [advice] = input_warnings(data, invert_image(normal), prep, name="paper.png")
        assert advice.startswith("paper.png looks inverted") and "Try inverting it" in advice
    # A shape far from the training images' (28x28) says so.
    [shape] = input_warnings(data, normal.resize((84, 28)), prep)
    assert "a shape unlike the training images (28x28)" in shape and "wider by 3.0 times" in shape
