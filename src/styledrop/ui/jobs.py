"""The studio's work queue: one worker thread owns the model and runs trainings and generations in arrival order.

G is shared by everything (an adapter attaches hooks to it), so only the worker touches it. A request joins a
bounded FIFO instead of being refused while something else runs; beyond ``limit`` waiting jobs it is refused
with a clear message. A generation's HTTP request waits for its job (``Job.wait``); a training's returns at once
and the page follows it through ``/api/status``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from ..io import UserError


class QueueFull(UserError):
    """More jobs are waiting than the queue holds; the caller should retry later."""


class Cancelled(Exception):
    """Raised inside a training's progress callback when the user cancels it."""


_ids = itertools.count(1)


@dataclass
class Job:
    kind: str  # "round 1", "next round", "round 2", ..., "subject", "generate", "restyle"
    total: int  # training steps, or pictures to make
    run: Callable[["Job"], object] = field(repr=False, default=None)
    estimate: float | None = None  # seconds it should take, before it starts (None: unknown)
    params: dict = field(default_factory=dict)  # what restarts it (trainings)
    id: int = field(default_factory=lambda: next(_ids))
    step: int = 0
    loss: float | None = None
    state: str = "queued"  # queued | running | done | failed | cancelled | interrupted
    error: str | None = None
    queued: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    result: object = field(default=None, repr=False)
    cancel: bool = False  # asked to stop; a training stops at its next step
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def training(self) -> bool:
        return self.kind not in ("generate", "restyle")

    def left(self) -> float | None:
        """Seconds this job still needs: from its own pace once it has made progress, else its estimate."""
        if self.state == "running" and self.step and self.started:
            return (time.time() - self.started) / self.step * (self.total - self.step)
        return self.estimate

    def public(self) -> dict:
        left = self.left() if self.state in ("queued", "running") else None
        return {"id": self.id, "kind": self.kind, "total": self.total, "step": self.step, "loss": self.loss,
                "state": self.state, "error": self.error, "params": self.params,
                "seconds_left": None if left is None else round(left, 1)}

    def doing(self) -> str:
        if self.training:
            return f"{self.kind} is training (step {self.step}/{self.total})"
        return f"{self.kind} of {self.total} picture{'s' * (self.total != 1)} is running"

    def wait(self, timeout: float | None = None):
        """The job's result once it has run; its error (a UserError) raised here."""
        if not self._done.wait(timeout):
            raise UserError(f"{self.kind} did not finish within {timeout:.0f} s")
        if self.state == "failed":
            raise UserError(self.error)
        if self.state == "cancelled":
            raise UserError(f"{self.kind} was cancelled")
        return self.result


class JobQueue:
    """``on_change(job)`` is called (on the worker) whenever a job starts, ends or makes progress."""

    def __init__(self, limit: int = 32, on_change: Callable[[Job], None] | None = None):
        self.limit, self.on_change = limit, on_change or (lambda job: None)
        self.waiting: deque[Job] = deque()
        self.running: Job | None = None
        self._lock = threading.Condition()
        self._stop = False
        self._worker = threading.Thread(target=self._work, name="styledrop-queue", daemon=True)
        self._worker.start()

    def submit(self, job: Job) -> Job:
        with self._lock:
            if self._stop:
                raise UserError("the studio is shutting down")
            if len(self.waiting) >= self.limit:
                raise QueueFull(f"queue full: {len(self.waiting)} jobs are waiting (at most {self.limit}); "
                                f"try again when some have finished")
            self.waiting.append(job)
            self._lock.notify_all()
        return job

    def position(self, job: Job) -> int:
        """0 for the running job, 1 for the next one to run, ..."""
        with self._lock:
            if job is self.running:
                return 0
            return next((k + 1 for k, j in enumerate(self.waiting) if j is job), -1)

    def snapshot(self) -> tuple[Job | None, list[Job]]:
        with self._lock:
            return self.running, list(self.waiting)

    def cancel(self, job_id: int | None = None) -> Job:
        """Cancel a waiting job, or ask the running training to stop (``job_id`` None: the running training, else
        the last waiting training)."""
        with self._lock:
            candidates = ([self.running] if self.running else []) + list(self.waiting)
            if job_id is None:
                job = next((j for j in candidates if j.training), None)
            else:
                job = next((j for j in candidates if j.id == job_id), None)
            if job is None:
                raise UserError("no training is running or waiting" if job_id is None else
                                f"no running or waiting job {job_id}")
            if job is self.running:
                if not job.training:
                    raise UserError(f"{job.kind} cannot be stopped once it runs; it ends in seconds")
                job.cancel = True
                return job
            self.waiting.remove(job)
        self._finish(job, "cancelled")
        return job

    def idle(self) -> bool:
        with self._lock:
            return self.running is None and not self.waiting

    def shutdown(self) -> list[Job]:
        """Stop taking jobs and ask the running training to stop; returns the jobs that will not finish."""
        with self._lock:
            self._stop = True
            left = ([self.running] if self.running else []) + list(self.waiting)
            self.waiting.clear()
            if self.running is not None:
                self.running.cancel = True
            self._lock.notify_all()
        return left

    def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        job.state, job.error, job.ended = state, error, time.time()
        job._done.set()
        self.on_change(job)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self.waiting and not self._stop:
                    self._lock.wait()
                if self._stop:
                    return
                job = self.running = self.waiting.popleft()
            job.state, job.started = "running", time.time()
            self.on_change(job)
            outcome: tuple[str, str | None] = ("done", None)
            try:
                job.result = job.run(job)
            except Cancelled:
                outcome = ("interrupted" if self._stop else "cancelled", None)
            except UserError as e:
                outcome = ("failed", str(e))
            except Exception as e:  # shown on the page; what was made before stays in place
                outcome = ("failed", f"{type(e).__name__}: {e}")
            with self._lock:
                self.running = None
            self._finish(job, *outcome)
