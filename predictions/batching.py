"""Dynamic micro-batching: concurrent small requests for one model version share one call.

A model's `predict` costs about the same for 1 row as for 50 (the per-call overhead of a
pipeline dominates), so in each process a batcher thread per (version, method) gathers the
checked rows of concurrent requests, calls the model once and hands each request its own rows
back. A request that finds the batcher idle is scored at once; while requests are queued, the
batcher keeps gathering until BATCH_MAX_ROWS rows or BATCH_MAX_WAIT_MS since the first one.
Only rows that passed validation reach it, and it gathers one version's rows only, so a bad row
or another version never mixes in. If the gathered call raises, each request is scored on its
own, so an error stays with the request that caused it.
"""

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from django.conf import settings

from core import metrics
from modelregistry import serving

IDLE_EXIT_SECONDS = 60  # a batcher thread with nothing to do for this long ends (and restarts)


@dataclass
class _Request:
    features: "pd.DataFrame | dict[str, np.ndarray]"  # the schema's columns, in order
    rows: int
    queued_at: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class Batcher:
    """Gathers the rows of concurrent calls of one method of one loaded model."""

    def __init__(self, predictor, method: str, *, labels: tuple[str, str]):
        self.predictor = predictor
        self._method = getattr(predictor, method)
        self._labels = labels  # (model, version) for the metrics
        self._pending: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._running = False
        self._max_rows, self._max_wait_seconds = 1, 0.0  # the latest caller's limits

    def run(self, features, rows: int, *, max_rows: int, max_wait_seconds: float):
        """The method's output for these rows, computed with other callers' rows if any."""
        request = _Request(features, rows)
        with self._cond:
            self._pending.append(request)
            self._max_rows, self._max_wait_seconds = max_rows, max_wait_seconds
            if not self._running:
                self._running = True
                threading.Thread(
                    target=self._loop, name=f"batcher-{'-'.join(self._labels)}", daemon=True
                ).start()
            self._cond.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._pending and not self._cond.wait_for(
                    lambda: self._pending, timeout=IDLE_EXIT_SECONDS
                ):
                    self._running = False
                    return
                batch = self._gather(self._max_rows, self._max_wait_seconds)
            self._score(batch)

    def _take(self, batch: list[_Request], rows: int, max_rows: int) -> int:
        while self._pending and (not batch or rows + self._pending[0].rows <= max_rows):
            request = self._pending.popleft()
            batch.append(request)
            rows += request.rows
        return rows

    def _gather(self, max_rows: int, max_wait_seconds: float) -> list[_Request]:
        """The next batch (called with the lock held). Waits for more only when others were
        queued with the first request: a request alone goes at once."""
        batch: list[_Request] = []
        rows = self._take(batch, 0, max_rows)
        deadline = batch[0].queued_at + max_wait_seconds
        while len(batch) > 1 and rows < max_rows and not self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._cond.wait(timeout=remaining):
                break
            rows = self._take(batch, rows, max_rows)
        return batch

    def _score(self, batch: list[_Request]) -> None:
        started = time.monotonic()
        for request in batch:
            metrics.observe_microbatch_wait(self._labels, started - request.queued_at)
        metrics.observe_microbatch(self._labels, sum(r.rows for r in batch))
        try:
            if len(batch) == 1:
                batch[0].result = np.asarray(self._method(batch[0].features))
            else:
                output = np.asarray(self._method(_joined([r.features for r in batch])))
                bounds = np.cumsum([r.rows for r in batch])[:-1]
                for request, part in zip(batch, np.split(output, bounds), strict=True):
                    request.result = part
        except Exception:
            # Score each request alone, so that only the one that fails gets the error.
            for request in batch:
                try:
                    request.result = np.asarray(self._method(request.features))
                except Exception as exc:
                    request.error = exc
        finally:
            for request in batch:
                request.done.set()


def _joined(parts: list) -> dict[str, np.ndarray]:
    """The rows of several requests as one set of columns: the input is built once per batch
    (no DataFrame per request, no pd.concat)."""
    names = list(parts[0])  # a DataFrame's columns or a dict's keys: the schema's order
    return {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in names}


_batchers: dict[tuple[int, str], Batcher] = {}
_batchers_lock = threading.Lock()
_owner_pid = os.getpid()


def is_enabled(version, rows: int) -> bool:
    """Whether a call of `rows` rows for this version goes through a batcher: the version's
    plan (BATCH_ENABLED, its or its model's switch; an ONNX model scores a row in microseconds,
    less than the hand-over, see BATCH_MIN_CALL_MS) and its row limit."""
    plan = serving.plan_for(version)
    return plan.batching_enabled and 0 < rows <= plan.batch_max_rows


def call(version, predictor, method: str, features, rows: int):
    """`predictor.method(features)`, gathered with other threads' calls for the same version."""
    global _owner_pid
    key = (version.pk, method)
    with _batchers_lock:
        if _owner_pid != os.getpid():  # forked: the parent's threads are not here
            _batchers.clear()
            _owner_pid = os.getpid()
        batcher = _batchers.get(key)
        if batcher is None or batcher.predictor is not predictor:
            labels = (version.registered_model.name, str(version.number))
            batcher = _batchers[key] = Batcher(predictor, method, labels=labels)
            while len(_batchers) > 4 * settings.MODEL_CACHE_SIZE:
                _batchers.pop(next(iter(_batchers)))  # the oldest; its thread ends when idle
    plan = serving.plan_for(version)
    return batcher.run(
        features,
        rows,
        max_rows=plan.batch_max_rows,
        max_wait_seconds=plan.batch_max_wait_seconds,
    )
