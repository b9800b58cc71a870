"""Helpers of the dashboard tests: AppTest on the real app, runs trained in-process,
test images and ZIPs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"
TINY = dict(model="mnist_cnn", dataset="digits", batch_size=64, epochs=None, iterations=10, device="cpu")


def reset_clients() -> None:
    """Forget what points at the previous IMORI_HOME: engines, the Celery app, caches."""
    import streamlit as st

    import worker.app
    from core.records.engine import dispose_engines

    dispose_engines()
    worker.app._app = None
    st.cache_data.clear()
    st.cache_resource.clear()


def app(page: str | None = None, **params: Any):
    """An AppTest of the dashboard, run once, then switched to ``page`` (e.g.
    "app_pages/runs.py") with ``params`` as query parameters, and run again."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    if page is not None:
        at.switch_page(page)
        at.query_params.update({k: str(v) for k, v in params.items()})
        at.run()
    return at


def ok(at) -> None:
    """No exception reached the page."""
    assert not at.exception, [e.value for e in at.exception]


def train(**overrides: Any) -> int:
    """A finished run trained here, without a worker (about a second on digits)."""
    from core.config import RunConfig
    from core.records import DbRecorder, queries, store
    from core.train import fit

    config = RunConfig.from_dict({**TINY, **overrides})
    run_id = store.create_run(config)
    attempt = store.claim_run(run_id, "test-process")
    fit(config, queries.get_run(run_id).run_dir, DbRecorder(run_id, attempt))
    return run_id


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def digit_png(index: int = 0) -> tuple[bytes, str]:
    """A digit of the built-in test split as PNG bytes, and its class."""
    from PIL import Image

    from core.data.preprocess import Preprocessing
    from core.data.registry import load_dataset

    data = load_dataset("digits", Preprocessing(28, 28, channels=1))
    buffer = io.BytesIO()
    Image.fromarray(data.test.images[index][0].numpy(), mode="L").save(buffer, format="PNG")
    return buffer.getvalue(), data.classes[int(data.test.labels[index])]


def class_zip(per_class: int = 12, bad: int = 0) -> bytes:
    """A ZIP of class folders: dark and light squares (and ``bad`` corrupt files)."""
    from PIL import Image, ImageDraw

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for label, (fill, box) in {"circle": (255, "ellipse"), "square": (255, "rectangle")}.items():
            for i in range(per_class):
                image = Image.new("L", (28, 28), 0)
                draw = ImageDraw.Draw(image)
                offset = i % 5
                getattr(draw, box)((4 + offset, 4 + offset, 20 + offset, 20 + offset), fill=fill)
                out = io.BytesIO()
                image.save(out, format="PNG")
                zf.writestr(f"shapes/{label}/{i:03d}.png", out.getvalue())
        for i in range(bad):
            zf.writestr(f"shapes/circle/broken-{i}.png", b"\x89PNG\r\n\x1a\nnot really")
    return buffer.getvalue()


def run_queued_jobs() -> list[str]:
    """Do every queued job (core.jobs) here, as a worker's task does; their final statuses."""
    from core.records import jobs
    from worker.tasks import execute_job

    return [execute_job(job.id, "test-process") for job in reversed(jobs.list_jobs(status="queued"))]
