"""Progress of a long loop: a tqdm bar on a terminal, one line per evaluation in a log file; and
one timestamped line per item, with an ETA, for the stages that work through a known list."""
from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, initial: int, desc: str, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled, self.total, self.desc = enabled, total, desc
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, initial=initial, desc=desc, file=self.stream) if enabled and tty else None

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def note(self, step: int, loss: float, acc: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
        elif self.enabled:
            # timestamped, so that a log shows how far apart the lines are (the launcher keeps this time)
            stamped(f"{self.desc}: step {step}/{self.total}, loss {loss:.3f}, accuracy {acc:.3f}", self.stream)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def stamped(text: str, stream=None) -> None:
    """One progress line with the time of day in front."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=stream or sys.stdout, flush=True)


class Eta:
    """k of n items done, the time elapsed and an ETA from the mean item so far: one line per item
    (the repair's arms, the scan's points), so a long stage is never silent for long."""

    def __init__(self, total: int, label: str, stream=None):
        self.total, self.label, self.stream = total, label, stream or sys.stdout
        self.done, self.start = 0, time.perf_counter()

    def tick(self, what: str) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        stamped(f"{self.label}: {self.done}/{self.total} {what}; {elapsed:.0f} s elapsed, ETA {eta / 60:.1f} min",
                self.stream)
