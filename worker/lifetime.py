"""How the stack's processes end together: every child of `imori up` or `imori worker`
ends when its supervisor ends, however it ends (Ctrl-C, SIGTERM, SIGKILL, the OOM killer)."""

from __future__ import annotations

import os
import signal
import sys


def die_with_parent() -> None:
    """In a child, before exec (``subprocess.Popen(preexec_fn=die_with_parent)``): a
    session of its own (a Ctrl-C in the terminal reaches only the supervisor, which stops
    everything in order), and SIGTERM when the supervisor dies, however it dies: Linux's
    ``prctl(PR_SET_PDEATHSIG)``. A worker that gets it gives its run back to the queue;
    Redis saves and exits; the dashboard exits."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
