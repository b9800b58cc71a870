"""Fuzzing the importer and the image preprocessing with Hypothesis: whatever bytes,
names and images arrive, the answer is a dataset or a DatasetError, never a crash and
never a file written outside the dataset's folder."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.data.images import open_image
from core.data.preprocess import Preprocessing
from core.data.registry import import_dataset
from core.errors import DatasetError

import warnings

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Member names: mostly sane class folders, sometimes hostile (.., absolute, odd bytes).
segment = st.sampled_from(["cat", "dog", "..", "", ".", "a b", "ü", "x" * 40, "__MACOSX", ".hidden", "/", "C:"])
names = st.lists(segment, min_size=1, max_size=4).map(lambda parts: "/".join(parts) + ".png")


def png(seed: int, size=(6, 5)) -> bytes:
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


payload = st.one_of(
    st.integers(0, 10_000).map(png),  # a real image
    st.binary(max_size=200),  # garbage
    st.integers(0, 10_000).map(lambda s: png(s)[: 20 + s % 40]),  # a truncated image
)


@FUZZ
@given(members=st.lists(st.tuples(names, payload), min_size=0, max_size=12))
def test_any_zip_imports_or_fails_cleanly(tmp_path_factory, members):
    work = tmp_path_factory.mktemp("fuzz")
    archive = work / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are part of the fuzz
        for name, data in members:
            zf.writestr(name, data)
    outside_before = set(os.listdir(work))
    try:
        info = import_dataset(archive, name=f"fuzz{abs(hash(archive)) % 10**8}")
    except DatasetError as err:
        assert str(err)  # a message for the user
    else:
        location = Path(info.location).resolve()
        for file in location.rglob("*"):
            assert file.resolve().is_relative_to(location)
        assert len(info.classes) >= 2
    assert set(os.listdir(work)) == outside_before  # nothing written beside the upload


modes = st.sampled_from(["1", "L", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "LA", "YCbCr"])


@FUZZ
@given(
    mode=modes,
    width=st.integers(1, 70),
    height=st.integers(1, 70),
    channels=st.sampled_from([1, 3]),
    order=st.sampled_from(["RGB", "BGR"]),
    out=st.integers(1, 40),
    fmt=st.sampled_from(["PNG", "TIFF", "BMP", "GIF", "JPEG", "WEBP"]),
    seed=st.integers(0, 1000),
)
def test_any_image_becomes_the_models_input(mode, width, height, channels, order, out, fmt, seed):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt)
    except (OSError, ValueError, KeyError):
        assume(False)  # this format cannot hold this mode: hypothesis draws another example
    prep = Preprocessing(height=out, width=out, channels=channels, channel_order=order, mean=(0.5,), std=(0.25,))
    decoded = open_image(buffer.getvalue())
    cached = prep.to_uint8(decoded)
    assert str(cached.dtype) == "torch.uint8" and tuple(cached.shape) == (channels, out, out)
    x = prep(decoded)
    assert tuple(x.shape) == (1, channels, out, out) and bool(x.isfinite().all())


@FUZZ
@given(data=st.binary(max_size=300))
def test_any_bytes_decode_or_raise_a_dataset_error(data):
    try:
        open_image(data)
    except DatasetError:
        pass
