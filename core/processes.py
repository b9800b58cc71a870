"""Facts about other processes on this machine, from ``/proc`` where there is one."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path


def die_with_parent() -> None:
    """In a child, before exec (``subprocess.Popen(preexec_fn=die_with_parent)``): a
    session of its own (a Ctrl-C in the terminal reaches only the supervisor, which stops
    everything in order), and SIGTERM when the supervisor dies, however it dies: Linux's
    ``prctl(PR_SET_PDEATHSIG)``. A worker that gets it gives its run back to the queue;
    Redis saves and exits; the dashboard exits; a run's torchrun ends its ranks."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, T, Z, ...) from ``/proc/<pid>/stat``; None
    without ``/proc`` or once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[0] if fields else None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not; one that is our own child is
    reaped on the way)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's, but alive
    except OSError:
        return False
    if _state(pid) == "Z":
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def process_stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped (SIGSTOP, Ctrl-Z, a debugger): it uses no CPU."""
    return _state(pid) in ("T", "t")
