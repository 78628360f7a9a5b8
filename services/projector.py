"""The projector: keeps the supervision read model current, beside whatever reads it.

Reads never catch up themselves (an answer says how fresh it is instead: `Projection.freshness`). The projector
catches up when it is nudged (the API nudges it after every accepted write), and at least every `interval` seconds
for what other processes wrote (Kafka workers, imports, another API process). It runs as:

- `handoff project`: a process of its own (production: one beside the API and the Kafka workers);
- a thread of `handoff serve` (`background`, the embedded default);
- `inline`: after each write, in the writer's thread, before the write is answered: one process that must read its
  own writes at once (tests, and a single-user embedded service that prefers it).

A failed catch-up is logged and tried again at the next nudge or interval: the projector never stops for it.

`followers` are other read models that follow the log on their own position (the scorecard's count of what each
agency published): a running projector keeps them current too, so that no reader has a backlog to count. Inline,
they are left to their readers, who bring them up to date before reading.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

from services.ports import Projection

log = logging.getLogger(__name__)

Mode = Literal["background", "inline", "none"]
MODES: tuple[str, ...] = ("background", "inline", "none")


class Projector:
    def __init__(self, projection: Projection, mode: Mode = "background", interval: float = 1.0,
                 followers: Sequence[Callable[[], int]] = ()):
        if mode not in MODES:
            raise ValueError(f"projector mode {mode!r}: one of {', '.join(MODES)}")
        self.projection = projection
        self.mode = mode
        self.interval = interval
        self.followers = list(followers)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one catch-up at a time in this process
        self.failures = 0

    def nudge(self) -> None:
        """Something was written: project it (now, inline; soon, in the background)."""
        if self.mode == "inline":
            self.catch_up()
        elif self.mode == "background":
            self._wake.set()

    def catch_up(self) -> int:
        with self._lock:
            try:
                return self.projection.catch_up()
            except Exception:  # the store or read model failed this time: logged, tried again at the next nudge
                self.failures += 1
                log.exception("the projector could not catch up; it tries again")
                return 0

    def follow(self) -> None:
        for follower in self.followers:
            try:
                follower()
            except Exception:  # as a failed catch-up: logged, tried again at the next round
                self.failures += 1
                log.exception("a follower of the log could not catch up; it tries again")

    def start(self) -> None:
        if self.mode != "background" or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="handoff-projector", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run(self, on_round: Any = None) -> None:
        """Catch up, then wait for a nudge or the interval, until stopped."""
        while not self._stop.is_set():
            self._wake.clear()
            refolded = self.catch_up()
            self.follow()
            if on_round is not None:
                on_round(refolded)
            self._wake.wait(self.interval)
