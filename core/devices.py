"""The machine a run trains on: its cores, torch's threads, the device, the versions.

Light at import (torch is imported by the two functions that need it): the worker's
launcher reads the cores and threads before anything trains.
"""

from __future__ import annotations

import os
import platform
import socket
from typing import TYPE_CHECKING

import core
from core.errors import ConfigError

if TYPE_CHECKING:
    import torch


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Torch threads for a run that does not say: ``IMORI_TORCH_THREADS`` (a worker sets it
    from ``--threads``), else every core this process may use. Two trainings with all the
    cores each on one machine run at a tenth of their speed, hence one per machine."""
    value = os.environ.get("IMORI_TORCH_THREADS")
    return max(1, int(value)) if value else usable_cores()


def resolve_device(name: str) -> "torch.device":
    """``auto`` -> CUDA where present, else the CPU; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for, but this machine has no usable CUDA GPU")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def environment(device: "torch.device") -> dict[str, str]:
    """The versions and the machine a run trained with, for its record."""
    import torch

    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or platform.machine()
    return {
        "imori": core.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "device": device.type,
        "device_name": device_name,
        "threads": str(torch.get_num_threads()),
    }
