"""A 60-image, two-class set of photo-like images, as a new user brings one (issue 12.6).

Validation holds 2 images of each class, far too few to choose a best checkpoint: the
default that Predict uses must not be an untrained one, and finetune must get at least
10 of the 12 test images right.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.predict import Predictor, evaluate
from core.records import DbRecorder, queries, store
from core.recipes import recipe_config
from core.selection import LAST, choose_checkpoint
from core.train import fit


def photo_like_zip_folder(folder, per_class=30, size=96):
    """Two kinds of leaf-ish blobs on cluttered backgrounds: round ones and long ones,
    random colours, positions and rotations, so colour gives nothing away."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:size, 0:size]
    for name in ("round", "long"):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(40, 120, (size, size, 3)).astype(np.float32)
            image += rng.normal(0, 12, (size, size, 3))
            cx, cy = rng.uniform(0.35, 0.65, 2) * size
            angle = rng.uniform(0, np.pi)
            a = rng.uniform(0.22, 0.3) * size
            b = a if name == "round" else a * 0.35
            u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
            v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
            inside = (u / a) ** 2 + (v / b) ** 2 <= 1
            image[inside] = rng.integers(120, 256, 3)
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / name / f"{i:02d}.jpg", quality=90)
    return folder


def trained(config, name):
    run_id = store.create_run(config, name=name)
    attempt = store.claim_run(run_id, "test-process")
    fit(config.validate(), queries.get_run(run_id).run_dir, DbRecorder(run_id, attempt))
    return run_id


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from core.data import import_dataset

    folder = photo_like_zip_folder(tmp_path_factory.mktemp("photos") / "leaves")
    info = import_dataset(folder, name="leaves60")
    assert info.total == 60
    return info.name


def default_accuracy(run_id, dataset):
    choice = choose_checkpoint(run_id)
    predictor = Predictor(choice.path)
    return choice, evaluate(predictor, dataset).accuracy


@pytest.mark.slow
def test_seed000_on_sixty_photos_predicts_with_a_trained_checkpoint(photos):
    run_id = trained(recipe_config("seed000", dataset=photos, threads=2), "seed000 on 60 photos")
    choice, accuracy = default_accuracy(run_id, photos)
    assert choice.rule == LAST and "too few" in choice.reason  # validation cannot choose here
    assert choice.row.step == 100  # the last checkpoint, not an early "best"
    assert accuracy > 0.5, accuracy  # beats chance on the 12 test images


@pytest.mark.slow
def test_finetune_on_sixty_photos_gets_ten_of_twelve(photos):
    run_id = trained(recipe_config("finetune", dataset=photos, threads=2, image_size=(128, 128)), "finetune on 60 photos")
    choice, accuracy = default_accuracy(run_id, photos)
    assert choice.rule == LAST
    assert accuracy * 12 >= 10, accuracy
