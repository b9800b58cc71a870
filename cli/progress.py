"""What a foreground run shows in the terminal: a tqdm bar, each evaluation, Ctrl-C."""

from __future__ import annotations

import signal
import sys

from typing import Any

from core.recorder import EvalMetrics, Recorder, RunEnd, RunStart, StageProgress, StepMetrics


class CliRecorder(Recorder):
    """Draws a tqdm progress bar and prints each evaluation; Ctrl-C stops at the next
    iteration with a checkpoint (a second Ctrl-C stops at once). An automatic run
    (``--recipe auto``) gets one bar for its whole search, in seconds of its budget, with
    the ETA of the whole search; its phases' steps only update the bar's figures. A long
    stage outside the iterations (decoding, a frozen backbone's features) gets its own bar
    while it runs, in its units, with its ETA."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bar = None
        self.stop_requested = False
        self.step = 0
        self.search_bar = None
        self.stage_bar = None

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

    def on_search(self, search: dict[str, Any]) -> None:
        from tqdm import tqdm

        total = float(search.get("budget_seconds") or 0) or None
        if self.search_bar is None:
            self.search_bar = tqdm(total=total, unit="s", file=sys.stderr, disable=self.quiet, dynamic_ncols=True,
                                   desc="auto", bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                                                           "[{elapsed}<{remaining}{postfix}]")
        done = total if search.get("progress", 0) >= 1.0 and total else min(total or 0, search.get("elapsed_seconds", 0))
        self.search_bar.n = done
        phase = next((c["name"] for c in reversed(search.get("candidates", [])) if c.get("status") == "running"), None)
        if phase:
            self.search_bar.set_description_str(f"auto, {phase}", refresh=False)
        self.search_bar.refresh()

    def on_stage(self, stage: StageProgress) -> None:
        from tqdm import tqdm

        if self.quiet:  # a disabled tqdm keeps no description to compare: nothing to draw anyway
            return
        if self.stage_bar is not None and self.stage_bar.desc != stage.name:
            self.stage_bar.close()
            self.stage_bar = None
        if stage.finished:
            if self.stage_bar is not None:
                self.stage_bar.n = stage.done
                self.stage_bar.close()
            self.stage_bar = None
            return
        if self.stage_bar is None:
            self.stage_bar = tqdm(total=stage.total or None, unit=f" {stage.unit}", desc=stage.name, file=sys.stderr,
                                  disable=self.quiet, dynamic_ncols=True, leave=False)
        self.stage_bar.total = stage.total or None
        self.stage_bar.n = stage.done
        self.stage_bar.refresh()

    def on_start(self, start: RunStart) -> None:
        from tqdm import tqdm

        self.step = start.start_step
        self.write(
            f"training on {start.device}: {start.train_size} train / {start.val_size} val / "
            f"{start.test_size} test images, {len(start.classes)} classes, {start.total_steps} iterations"
        )
        if self.search_bar is not None:
            return  # the search's bar stands for the whole run
        self.bar = tqdm(
            total=start.total_steps, initial=start.start_step, unit="it", file=sys.stderr,
            disable=self.quiet, dynamic_ncols=True,
        )

    def on_step(self, m: StepMetrics) -> None:
        if self.search_bar is not None:
            self.search_bar.set_postfix(epoch=m.epoch, loss=f"{m.loss:.4f}", refresh=False)
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
        for bar in (self.bar, self.search_bar, self.stage_bar):
            if bar is not None:
                bar.close()
        self.bar = self.search_bar = self.stage_bar = None


def search_text(search: dict) -> str:
    """An automatic run's leaderboard as lines of text (``imori train`` and ``imori show``)."""
    lines = ["search (decided on the validation split" + (f", by {search['chosen_by']}" if search.get("chosen_by")
                                                          not in (None, "validation") else "") + "):"]
    candidates = search.get("candidates", [])
    width = max([44, *(len(str(c.get("name", ""))) for c in candidates)])  # the longest name keeps its column
    for c in candidates:
        val = f"{100 * c['val_accuracy']:6.2f} %" if c.get("val_accuracy") is not None else "      -"
        cv = f" (cv {100 * c['cv_accuracy']:.1f} %)" if c.get("cv_accuracy") is not None else ""
        mark = "*" if c.get("name") == search.get("winner") else " "
        lines.append(f" {mark} {c['name']:<{width}} val {val}{cv}  {c.get('seconds', 0):6.1f} s  {c.get('status', '')}")
    if search.get("reason"):
        lines.append(f"winner: {search.get('winner')}: {search['reason']}")
    for note in search.get("notes", []):
        lines.append(f"note: {note}")
    if search.get("phases"):
        lines.append("minutes went to: " + ", ".join(f"{k} {v:.0f} s" for k, v in search["phases"].items()))
    return "\n".join(lines)
