"""`imori serve` as a real process: PNG and JPEG posted get the answers of `imori predict
--json`; a text file posted as an image gets a 4xx with the reason and the server keeps
serving; a token is enforced; a request over the limit is refused; the API describes itself."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from cli.main import main

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-for-the-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint(digits_checkpoint):
    """``imori serve`` on a free port, with a token and a 50 kB request limit; its URL."""
    port = free_port()
    env = {**os.environ, "IMORI_SERVE_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", str(digits_checkpoint), "--port", str(port),
                             "--max-mb", "0.05"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "imori serve did not answer /health in 60 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("posted")
    rng = np.random.default_rng(7)
    png, jpeg = folder / "seven.png", folder / "colour.jpg"
    Image.fromarray(rng.integers(0, 255, (30, 40), dtype=np.uint8)).save(png)  # another size
    Image.fromarray(rng.integers(0, 255, (36, 24, 3), dtype=np.uint8)).save(jpeg, quality=90)  # in colour
    return png, jpeg


def test_posted_png_and_jpeg_get_the_answers_of_imori_predict(endpoint, photos, digits_checkpoint, capsys,
                                                             monkeypatch):
    png, jpeg = photos
    answer = requests.post(f"{endpoint}/predict", headers=auth(), timeout=30,
                           files=[("file", (png.name, png.read_bytes(), "image/png")),
                                  ("file", (jpeg.name, jpeg.read_bytes(), "image/jpeg"))])
    assert answer.status_code == 200, answer.text
    served = answer.json()
    monkeypatch.chdir(png.parent)  # the same names in both: warnings name the image
    assert main(["predict", png.name, jpeg.name, "--checkpoint", str(digits_checkpoint), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert served["predictions"] == printed  # probabilities, answers, warnings: the same figures
    assert served["checkpoint"]["model"] == "mnist_cnn" and len(served["checkpoint"]["classes"]) == 10


def test_a_text_file_gets_a_4xx_with_the_reason_and_the_server_keeps_serving(endpoint, photos):
    png, _ = photos
    answer = requests.post(f"{endpoint}/predict", headers=auth(), timeout=30,
                           files=[("file", ("notes.txt", b"not an image at all\n", "text/plain")),
                                  ("file", (png.name, png.read_bytes(), "image/png"))])
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"].startswith("1 of 2 images could not be read: notes.txt: not an image")
    assert body["predictions"][0]["error"] and body["predictions"][1]["label"] in body["checkpoint"]["classes"]
    # The unreadable image's answer claims nothing: no label, no confidence, no "sure".
    unread = body["predictions"][0]
    assert unread["sure"] is None and unread["answer"] is None and unread["label"] is None
    assert unread["top"] == [] and unread["probabilities"] == {} and unread["warnings"] == []
    alone = requests.post(f"{endpoint}/predict", headers=auth(), timeout=30,
                          files=[("file", ("broken.jpg", b"\xff\xd8\xff not really a jpeg", "image/jpeg"))])
    assert alone.status_code == 422 and alone.json()["error"].startswith("1 of 1 image could not be read: broken.jpg")
    assert alone.json()["predictions"][0]["sure"] is None
    assert requests.get(f"{endpoint}/health", timeout=5).json()["status"] == "ok"
    nothing = requests.post(f"{endpoint}/predict", headers=auth(), data={"image": "x"}, timeout=5)
    assert nothing.status_code == 400 and "field named 'file'" in nothing.json()["error"]


def test_the_token_is_enforced(endpoint, photos):
    png, _ = photos
    files = [("file", (png.name, png.read_bytes(), "image/png"))]
    for headers in ({}, auth("wrong"), {"Authorization": TOKEN}):
        refused = requests.post(f"{endpoint}/predict", headers=headers, files=files, timeout=5)
        assert refused.status_code == 401 and "IMORI_SERVE_TOKEN" in refused.json()["error"]


def test_a_request_over_the_limit_is_refused_with_413(endpoint):
    big = np.random.default_rng(0).integers(0, 255, 80_000, dtype=np.uint8).tobytes()
    refused = requests.post(f"{endpoint}/predict", headers=auth(), files=[("file", ("big.png", big, "image/png"))],
                            timeout=5)
    assert refused.status_code == 413 and "0.05 MB" in refused.json()["error"]


def test_the_api_describes_itself_without_the_network(endpoint):
    schema = requests.get(f"{endpoint}/openapi.json", timeout=5).json()
    assert schema["openapi"].startswith("3.") and "/predict" in schema["paths"]
    assert schema["paths"]["/predict"]["post"]["security"] == [{"bearer": []}]
    page = requests.get(f"{endpoint}/", timeout=5).text
    assert "POST /predict" in page and "mnist_cnn" in page
    assert "http://" not in page.replace("http://HOST:PORT", "") and "https://" not in page  # nothing fetched


def test_serve_needs_one_checkpoint(capsys):
    assert main(["serve"]) == 2
    assert "give a checkpoint file or --run RUN" in capsys.readouterr().err
