"""Jobs' long stages (``JobContext.stage``): the progress line names the stage with its
counts and time left, and the bar moves with them (the Health tab's sat at 0 %)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/photos.py (importlib mode)

from photos import photo_like_folder  # noqa: E402

from core.jobs import evaluate, health  # noqa: E402
from core.jobs.kinds import JobContext  # noqa: E402
from core.recorder import Stage  # noqa: E402


@pytest.fixture
def reports(monkeypatch):
    monkeypatch.setattr(Stage, "EVERY", 0.0)  # every batch reported, so the test sees them move
    return []


def shares_of(reports, prefix: str) -> list[float]:
    return [share for text, share in reports if text.startswith(prefix)]


def test_an_evaluation_job_reports_its_predictions_with_counts(digits_checkpoint, reports):
    job = JobContext(1, str(digits_checkpoint), evaluate.params("digits"), progress=lambda t, s: reports.append((t, s)))
    result = evaluate.run(job)
    shares = shares_of(reports, "Predicting the test split of digits:")
    assert shares[0] == 0.0 and shares[-1] == 1.0 and shares == sorted(shares), reports
    total = result["count"]
    assert reports[-1][0] == f"Predicting the test split of digits: {total:,} / {total:,} images", reports


def test_a_health_job_moves_its_bar_through_the_image_checks(imori_home, tmp_path, reports):
    folder = photo_like_folder(tmp_path / "photos", per_class=12, size=48)
    job = JobContext(2, str(folder), {"features": False}, progress=lambda t, s: reports.append((t, s)))
    health.run(job)
    shares = shares_of(reports, "Checking every image:")
    assert shares[0] == 0.0 and shares[-1] == 1.0 and shares == sorted(shares), reports
    assert reports[0][0] == "Checking every image: 0 / 24 images, measuring the speed", reports
    assert reports[-1][0] == "Checking every image: 24 / 24 images", reports
