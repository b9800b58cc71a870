"""The suite never touches a user's own data folder or caches, even when they are exported."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("suite_conftest", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps({k: os.environ[k] for k in ("IMORI_HOME", "TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME", "IMORI_LOCK_DIR")}))
"""


def test_an_exported_imori_home_is_never_the_suites(tmp_path):
    import json

    users = tmp_path / "users-real-home"
    users.mkdir()
    env = {**os.environ, "IMORI_HOME": str(users), "TORCH_HOME": str(users / "torch"),
           "HF_HOME": str(users / "hf"), "XDG_CACHE_HOME": str(users / "cache"), "IMORI_LOCK_DIR": str(users / "lock")}
    result = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / "tests" / "conftest.py")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert not seen["IMORI_HOME"].startswith(str(users))
    assert all(not value.startswith(str(users)) and value.startswith(seen["IMORI_HOME"]) for value in seen.values())
    assert list(users.iterdir()) == []
