"""One CPU training at a time per machine: a lock that trainings on the CPU take.

A CPU training uses every core by default (``core.train.default_threads``); two of them
on one machine, a worker's and a foreground ``imori train`` say, each fall to about a
tenth of their speed. So a run that trains on the CPU with the default threads holds this
machine's *CPU training slot* while it trains, and one that finds it taken waits (or is
told so, or runs beside it when it was given ``threads``)::

    with cpu_training_slot("imori train (pid 4242)", wait=True, on_wait=print) as slot:
        fit(...)

The slot is an ``flock`` on one file, ``cpu-training.lock``, in a folder of this machine
(never under ``IMORI_HOME``, which several machines may share): ``$IMORI_LOCK_DIR`` when
set, else ``$XDG_RUNTIME_DIR/imori``, else ``/tmp/imori-<uid>``. The operating system
releases an ``flock`` when its process dies, however it dies, so a killed training never
leaves the slot taken. Beside the lock, ``cpu-training.holder.json`` says who holds it
(for messages only: it is never what decides).

Only trainings take the slot: a short job (``core.jobs``: evaluate, health, export, ...)
never does, so it neither waits for a training nor blocks one; the worker that serves
jobs beside a training keeps to a few threads instead (``imori worker --jobs``).

A holder whose process is stopped (SIGSTOP, Ctrl-Z, a frozen worker) uses no core: a
waiter does not wait for it but runs beside it, without the slot.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from core.files import atomic_write
from core.errors import ImoriError
from core.processes import pid_alive, process_stopped

LOCK_NAME = "cpu-training.lock"
HOLDER_NAME = "cpu-training.holder.json"
POLL_S = 0.25  # how often a waiter tries the lock again (seconds)
STILL_WANTED_EVERY_S = 5.0  # how often a waiter asks ``still_wanted`` (seconds)


def lock_dir() -> Path:
    """The folder of this machine's lock: ``$IMORI_LOCK_DIR``, else ``$XDG_RUNTIME_DIR/imori``,
    else ``/tmp/imori-<uid>``. Not created here."""
    if os.environ.get("IMORI_LOCK_DIR"):
        return Path(os.environ["IMORI_LOCK_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "imori"
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path("/tmp") / f"imori-{uid}"


def lock_path() -> Path:
    """The lock file itself (``lock_dir() / "cpu-training.lock"``)."""
    return lock_dir() / LOCK_NAME


def holder_path() -> Path:
    """The JSON file that names the holder (``lock_dir() / "cpu-training.holder.json"``)."""
    return lock_dir() / HOLDER_NAME


class CpuSlotBusy(ImoriError):
    """The slot is held by another training and the caller did not wait (``wait=False``),
    waited past its ``timeout_s``, or stopped waiting (``still_wanted``). ``holder`` says
    who holds it, when known; ``str(err)`` is a one-line message."""

    def __init__(self, message: str, holder: HolderInfo | None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class HolderInfo:
    """Who holds the slot, as its holder wrote it: ``what`` (``"imori train (pid 4242)"``,
    ``"run 12 on worker w1@host"``), its process id and host, and ``started_at`` (seconds
    since the epoch, ``time.time()``)."""

    what: str
    pid: int
    hostname: str
    started_at: float

    def age_s(self, now: float | None = None) -> float:
        """Seconds since the holder took the slot (0 for a clock that went back)."""
        return max(0.0, (time.time() if now is None else now) - self.started_at)

    def describe(self, now: float | None = None) -> str:
        """``"run 12 on worker w1@host (started 3 min ago)"``."""
        return f"{self.what} (started {ago(self.age_s(now))})"

    def is_local(self) -> bool:
        return self.hostname == socket.gethostname()

    def alive(self) -> bool:
        """False when the holder's process is known to be gone (on this host); True otherwise."""
        return not self.is_local() or pid_alive(self.pid)

    def stopped(self) -> bool:
        """True when the holder's process is stopped (SIGSTOP, Ctrl-Z) and so uses no core.
        Known on Linux only (``/proc``); False elsewhere and for another host's process."""
        return self.is_local() and process_stopped(self.pid)


def ago(seconds: float) -> str:
    """``"12 s ago"``, ``"3 min ago"``, ``"2 h 5 min ago"``."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"


def read_holder() -> HolderInfo | None:
    """Who the holder file names, or None: no file, a file that does not read, or a holder
    whose process is gone (a training killed before it could remove the file). Says
    nothing about whether the slot is held: see ``slot_busy``."""
    try:
        data = json.loads(holder_path().read_text())
        info = HolderInfo(what=str(data["what"]), pid=int(data["pid"]), hostname=str(data["hostname"]),
                          started_at=float(data["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if info.alive() else None


def _ensure_dir() -> Path:
    """Create the lock folder (mode 0700); refuse one that another user owns."""
    folder = lock_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        owner = folder.stat().st_uid
    except OSError as err:
        raise ImoriError(f"cannot create the CPU training lock folder {folder}: {err}; set IMORI_LOCK_DIR to a "
                         "folder of this machine that you may write") from None
    if hasattr(os, "getuid") and owner != os.getuid() and "IMORI_LOCK_DIR" not in os.environ:
        raise ImoriError(f"the CPU training lock folder {folder} belongs to another user; set IMORI_LOCK_DIR to a "
                         "folder of your own on this machine")
    return folder


def _new_lock() -> FileLock:
    # A real flock or nothing: a soft lock (a file that exists) would outlive a killed holder.
    # The lock file stays in place on release, so that every process locks the same inode.
    return FileLock(str(_ensure_dir() / LOCK_NAME), thread_local=False, fallback_to_soft=False, preserve_lock_file=True)


def _write_holder(what: str) -> None:
    info = HolderInfo(what=what, pid=os.getpid(), hostname=socket.gethostname(), started_at=time.time())
    try:
        with atomic_write(holder_path(), "w") as handle:
            handle.write(json.dumps(asdict(info)))
    except OSError:
        pass  # the file is only for messages


def _remove_holder() -> None:
    try:
        path = holder_path()
        data = json.loads(path.read_text())
        if int(data.get("pid", -1)) == os.getpid():
            path.unlink()
    except (OSError, ValueError, TypeError, AttributeError):
        pass


def slot_busy() -> bool:
    """True when another process holds this machine's slot right now (one quick try of the
    lock, released at once). Raises ``ImoriError`` when the lock folder cannot be made."""
    lock = _new_lock()
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return True
    lock.release()
    return False


@dataclass
class CpuSlot:
    """What ``cpu_training_slot`` gave: ``held`` is True when this process holds the slot;
    False when it runs beside a ``holder`` that is stopped."""

    held: bool
    holder: HolderInfo | None = None

    def describe(self, what: str) -> None:
        """Say anew who holds the slot (a run id became known); no-op when not ``held``."""
        if self.held:
            _write_holder(what)


def busy_message(holder: HolderInfo | None) -> str:
    """``"run 12 on worker w1@host (started 3 min ago)"``, or what is known of an unnamed holder."""
    if holder is not None:
        return holder.describe()
    return f"a process that did not say who it is holds {lock_path()}"


@contextmanager
def cpu_training_slot(
    what: str,
    *,
    wait: bool = True,
    on_wait: Callable[[HolderInfo | None], None] | None = None,
    timeout_s: float | None = None,
    still_wanted: Callable[[], bool] | None = None,
) -> Iterator[CpuSlot]:
    """Hold this machine's CPU training slot for the ``with`` block.

    ``what`` names the holder for others' messages (``"imori train (pid 4242)"``). When the
    slot is free it is taken at once. When another process holds it: with ``wait`` False,
    ``CpuSlotBusy`` is raised at once; else ``on_wait(holder)`` is called once (``holder``
    is None when the holder did not say who it is) and this waits until the slot is free,
    at most ``timeout_s`` seconds (None: without end), asking ``still_wanted()`` every
    few seconds (False: stop waiting). Waiting past ``timeout_s`` or no longer wanted
    raises ``CpuSlotBusy``. A holder that is stopped (SIGSTOP, Ctrl-Z) is not waited
    for: the block runs beside it, with ``slot.held`` False.

    Raises ``CpuSlotBusy`` as above and ``ImoriError`` when the lock folder cannot be
    made; ``KeyboardInterrupt`` while waiting leaves nothing held.
    """
    lock = _new_lock()
    try:
        lock.acquire(blocking=False)
        held = True
    except Timeout:
        held = False
    holder: HolderInfo | None = None
    if not held:
        holder = read_holder()
        if holder is not None and holder.stopped():
            yield CpuSlot(held=False, holder=holder)
            return
        if not wait:
            raise CpuSlotBusy(f"another training is using this machine's CPU cores: {busy_message(holder)}", holder)
        if on_wait is not None:
            on_wait(holder)
        start = time.monotonic()
        asked = start
        while not held:
            try:
                lock.acquire(timeout=POLL_S)
                held = True
                break
            except Timeout:
                pass
            now = time.monotonic()
            holder = read_holder() or holder
            if holder is not None and holder.stopped():
                yield CpuSlot(held=False, holder=holder)
                return
            if timeout_s is not None and now - start >= timeout_s:
                raise CpuSlotBusy(f"another training is still using this machine's CPU cores after {timeout_s:g} s: "
                                  f"{busy_message(holder)}", holder)
            if still_wanted is not None and now - asked >= STILL_WANTED_EVERY_S:
                asked = now
                if not still_wanted():
                    raise CpuSlotBusy("stopped waiting for this machine's CPU cores: no longer wanted", holder)
    try:
        _write_holder(what)
        yield CpuSlot(held=True)
    finally:
        _remove_holder()
        lock.release()
