"""docker-compose.yml is valid and its services run the same `imori` commands the tests run."""

import shlex
import shutil
import subprocess
from pathlib import Path

import yaml

from cli.main import make_parser

ROOT = Path(__file__).resolve().parent.parent


def compose(*args: str) -> str:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: `make test` installs Debian's docker-compose package"
    result = subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_compose_file_passes_config_check():
    compose("config", "-q")
    compose("--profile", "gpu", "config", "-q")


def test_services_run_imori_commands_that_parse():
    config = yaml.safe_load(compose("--profile", "gpu", "config"))
    services = config["services"]
    assert {"redis", "postgres", "worker", "worker-gpu", "dashboard"} <= set(services)
    parser = make_parser()
    for name in ("worker", "worker-gpu", "dashboard"):
        command = services[name]["command"]
        command = shlex.split(command) if isinstance(command, str) else command
        assert command[0] == "imori", name
        args = parser.parse_args(command[1:])  # exits (fails the test) on an unknown flag
        assert args.command == {"worker": "worker", "worker-gpu": "worker", "dashboard": "dashboard"}[name]
        env = services[name]["environment"]
        assert env["REDIS_URL"].startswith("redis://redis") and env["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert any("/data" in str(v) for v in services[name]["volumes"])  # one shared IMORI_HOME
    assert services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "gpu" in services["worker-gpu"].get("profiles", [])
