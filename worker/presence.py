"""Which workers are alive, on what device, training what: short-lived keys in Redis.

Each worker refreshes ``imori:worker:<name>`` every few seconds with a time-to-live of a
few beats, so a dead worker disappears by itself. Redis is the natural home for this
(the broker is there anyway); the run records stay in the database.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from worker.app import cpu_queue, gpu_jobs_queue, gpu_queue, jobs_queue, namespace
from worker.broker import client

BEAT_S = 3.0
TTL_S = 12  # four missed beats and the worker is gone


@dataclass
class WorkerInfo:
    name: str
    host: str
    pid: int
    device: str  # "cuda" or "cpu"
    device_name: str
    queues: list[str]
    threads: int
    started: float = field(default_factory=time.time)
    run_id: int | None = None  # what it trains now
    seen: float = field(default_factory=time.time)
    job_id: int | None = None  # the job (core.jobs) it does now

    @property
    def idle(self) -> bool:
        return self.run_id is None and self.job_id is None

    @property
    def lanes(self) -> str:
        """What it serves, in words: "training", "jobs" or "training and jobs" (``imori up``
        starts one of each on a machine: without this they read the same)."""
        served = [lane for lane, queues in (("training", (cpu_queue(), gpu_queue())),
                                            ("jobs", (jobs_queue(), gpu_jobs_queue())))
                  if any(q in queues for q in self.queues)]
        return " and ".join(served) or ", ".join(self.queues) or "no queue"

    @property
    def doing(self) -> str:
        """What it does now: "training run 7", "job 12" or "idle"."""
        return f"training run {self.run_id}" if self.run_id else f"job {self.job_id}" if self.job_id else "idle"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lanes": self.lanes}


def key_prefix() -> str:
    return f"imori:{namespace()}worker:"


def _client():
    return client(socket_timeout=5, socket_connect_timeout=5)


def live_workers(redis_client=None) -> list[WorkerInfo]:
    """Every worker whose key has not expired, GPU workers first."""
    r = redis_client or _client()
    workers = []
    for key in r.scan_iter(match=key_prefix() + "*", count=100):
        raw = r.get(key)
        if raw:
            try:
                values = json.loads(raw)
                known = {f.name for f in fields(WorkerInfo)}
                workers.append(WorkerInfo(**{k: v for k, v in values.items() if k in known}))
            except (TypeError, ValueError):
                continue
    return sorted(workers, key=lambda w: (w.device != "cuda", w.name))


def gpu_worker_alive(redis_client=None) -> bool:
    """Whether a live GPU worker takes trainings (a GPU worker of jobs only does not)."""
    return any(w.device == "cuda" and gpu_queue() in w.queues for w in live_workers(redis_client))


class Presence:
    """Announces one worker until ``stop()``; ``run_id`` is updated as it trains."""

    def __init__(self, info: WorkerInfo) -> None:
        self.info = info
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="imori-presence", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> "Presence":
        self.beat()
        self._thread.start()
        return self

    def set_run(self, run_id: int | None) -> None:
        with self._lock:
            self.info.run_id = run_id
        self.beat()

    def set_job(self, job_id: int | None) -> None:
        with self._lock:
            self.info.job_id = job_id
        self.beat()

    def beat(self) -> None:
        try:
            with self._lock:
                self.info.seen = time.time()
                payload = json.dumps(self.info.to_dict())
            _client().set(key_prefix() + self.info.name, payload, ex=TTL_S)
        except Exception:  # noqa: BLE001 - a restarting Redis must not kill the worker; next beat retries
            pass

    def _loop(self) -> None:
        while not self._stop.wait(BEAT_S):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        try:
            _client().delete(key_prefix() + self.info.name)
        except Exception:  # noqa: BLE001
            pass


def default_name(device: str) -> str:
    return f"{device}-{socket.gethostname()}-{os.getpid()}"
