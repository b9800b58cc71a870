"""How the stack's processes end together: every child of `imori up` or `imori worker`
ends when its supervisor ends, however it ends (Ctrl-C, SIGTERM, SIGKILL, the OOM killer).

``die_with_parent`` lives in ``core.processes``: a run's torchrun child uses it too."""

from __future__ import annotations

from core.processes import die_with_parent

__all__ = ["die_with_parent"]
