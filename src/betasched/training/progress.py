"""Progress of a long loop: a tqdm bar on a terminal, one line per evaluation in a log file."""
from __future__ import annotations

import sys

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
            print(f"{self.desc}: step {step}/{self.total}, loss {loss:.3f}, accuracy {acc:.3f}", file=self.stream,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
