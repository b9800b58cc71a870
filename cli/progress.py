"""What a foreground run shows in the terminal: a tqdm bar, each evaluation, Ctrl-C."""

from __future__ import annotations

import signal
import sys

from core.recorder import EvalMetrics, Recorder, RunEnd, RunStart, StepMetrics


class CliRecorder(Recorder):
    """Draws a tqdm progress bar and prints each evaluation; Ctrl-C stops at the next
    iteration with a checkpoint (a second Ctrl-C stops at once)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bar = None
        self.stop_requested = False
        self.step = 0

    def install_sigint(self) -> None:
        """Ctrl-C, and SIGTERM (a closed session, `kill`, a job scheduler): stop after this
        iteration with a checkpoint, the run recorded ``cancelled``, never left ``running``."""
        def handler(signum, frame):  # noqa: ARG001
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            how = "Ctrl-C again" if signum == signal.SIGINT else "a second signal"
            self.write(f"stopping after this iteration ({how} to abort at once)")

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def write(self, text: str) -> None:
        if not self.quiet:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)

    def on_start(self, start: RunStart) -> None:
        from tqdm import tqdm

        self.step = start.start_step
        self.write(
            f"training on {start.device}: {start.train_size} train / {start.val_size} val / "
            f"{start.test_size} test images, {len(start.classes)} classes, {start.total_steps} iterations"
        )
        self.bar = tqdm(
            total=start.total_steps, initial=start.start_step, unit="it", file=sys.stderr,
            disable=self.quiet, dynamic_ncols=True,
        )

    def on_step(self, m: StepMetrics) -> None:
        if self.bar is not None:
            self.bar.update(m.step - self.step)
            self.bar.set_postfix(epoch=m.epoch, loss=f"{m.loss:.4f}", acc=f"{m.accuracy:.3f}", refresh=False)
        self.step = m.step

    def on_eval(self, m: EvalMetrics) -> None:
        self.write(f"epoch {m.epoch} {m.split:>4}: loss {m.loss:.4f}  accuracy {100 * m.accuracy:.2f} %")

    def on_log(self, message: str) -> None:
        self.write(message)

    def should_stop(self) -> bool:
        return self.stop_requested

    def on_end(self, end: RunEnd) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
