"""The pool in front of a log: batching adds, back-pressure, and the checkpoint clock.

Adds from many clients land in a bounded pool. One sequencer thread flushes it
as soon as it holds `sequence_batch` entries, or `sequence_linger_ms` after
the first waiting entry arrived, and resolves each add with its index once the
batch is durable (a group commit: one SQLite commit for many adds). One
integrator thread publishes a new checkpoint every `integration_period_ms`
when there is something new.

When the pool is full, `submit` raises `PoolFull` immediately instead of
queueing without bound; the HTTP layer turns that into 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from overt.log.log import FOLLOW_POLL_S, Log, LogError
from overt.tlog.checkpoint import Checkpoint

log = logging.getLogger("overt.log")


Sink = Future[int] | asyncio.Future[int]


def _resolve(pairs: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    """Runs on the event loop: answer every waiting add of a batch at once."""
    for fut, result in pairs:
        if fut.done():
            continue
        if isinstance(result, BaseException):
            fut.set_exception(result)
        else:
            fut.set_result(result)


class PoolFull(LogError):
    def __init__(self, retry_after: float) -> None:
        super().__init__("the log's pool is full; retry later")
        self.retry_after = retry_after


class Sequencer:
    def __init__(self, target: Log) -> None:
        self.log = target
        cfg = target.config
        self._batch = cfg.sequence_batch
        self._linger = cfg.sequence_linger_ms / 1000
        self._period = cfg.integration_period_ms / 1000
        self._capacity = cfg.pool_size
        self._pool: list[tuple[bytes, Sink]] = []
        self._first_arrival = 0.0
        self._cond = threading.Condition()
        self._stopping = False
        self._stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listeners: list[Callable[[Checkpoint], None]] = []
        self.sequenced = 0
        self.refused = 0

    def add_listener(self, callback: Callable[[Checkpoint], None]) -> None:
        """Call `callback(checkpoint)` after each publication (from the integrator thread)."""
        self._listeners.append(callback)

    def start(self) -> None:
        for name, target in (
            ("sequencer", self._sequence_loop),
            ("integrator", self._integrate_loop),
        ):
            thread = threading.Thread(target=target, name=f"overt-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Sequence what is pooled, publish a final checkpoint, stop the threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._stop_event.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        self._publish()

    def pending(self) -> int:
        with self._cond:
            return len(self._pool)

    def submit_many(self, entries: Sequence[bytes]) -> list[Future[int]]:
        futures: list[Future[int]] = [Future() for _ in entries]
        self._enqueue(entries, futures)
        return futures

    def submit_many_async(
        self, entries: Sequence[bytes], loop: asyncio.AbstractEventLoop
    ) -> list[asyncio.Future[int]]:
        """Like `submit_many`, for an event loop: a whole batch is resolved with one
        wake-up of the loop instead of one per entry."""
        futures: list[asyncio.Future[int]] = [loop.create_future() for _ in entries]
        self._enqueue(entries, futures)
        return futures

    def _enqueue(self, entries: Sequence[bytes], futures: Sequence[Sink]) -> None:
        for e in entries:
            self.log.check_entry(e)
        with self._cond:
            if self._stopping:
                raise LogError("the log is shutting down")
            if len(self._pool) + len(entries) > self._capacity:
                self.refused += len(entries)
                raise PoolFull(retry_after=max(1.0, self._period))
            if not self._pool:
                self._first_arrival = time.monotonic()
            self._pool.extend(zip(entries, futures, strict=True))
            self._cond.notify_all()

    def submit(self, entry: bytes) -> Future[int]:
        return self.submit_many([entry])[0]

    def _take_batch(self) -> list[tuple[bytes, Sink]] | None:
        with self._cond:
            while True:
                if self._pool:
                    waited = time.monotonic() - self._first_arrival
                    if len(self._pool) >= self._batch or waited >= self._linger or self._stopping:
                        break
                    self._cond.wait(self._linger - waited)
                elif self._stopping:
                    return None
                else:
                    self._cond.wait()
            batch = self._pool[: self._batch]
            del self._pool[: self._batch]
            self._first_arrival = time.monotonic()
            return batch

    def _sequence_loop(self) -> None:
        while (batch := self._take_batch()) is not None:
            results: list[int | BaseException]
            try:
                results = list(self.log.sequence([e for e, _ in batch]))
                self.sequenced += len(batch)
            except Exception as exc:  # resolve every waiter, whatever went wrong
                log.exception("sequencing a batch of %d entries failed", len(batch))
                results = [exc] * len(batch)
            by_loop: dict[
                asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | BaseException]]
            ] = {}
            for (_, sink), result in zip(batch, results, strict=True):
                if isinstance(sink, asyncio.Future):
                    by_loop.setdefault(sink.get_loop(), []).append((sink, result))
                elif isinstance(result, BaseException):
                    sink.set_exception(result)
                else:
                    sink.set_result(result)
            for loop, pairs in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_resolve, pairs)
                except RuntimeError:
                    log.warning("event loop closed; %d adds were sequenced unanswered", len(pairs))

    def _integrate_loop(self) -> None:
        if not self.log.shared:
            while not self._stop_event.wait(self._period):
                self._publish()
            return
        next_round = time.monotonic() + self._period
        while not self._stop_event.wait(min(self._period, FOLLOW_POLL_S)):
            now = time.monotonic()
            if now >= next_round:
                next_round = now + self._period
                self._publish()
            elif not self.log.integrating:
                self._publish(self.log.refresh)

    def _publish(self, step: Callable[[], Checkpoint] | None = None) -> None:
        try:
            before = self.log.checkpoint.size
            checkpoint = (step or self.log.integrate)()
        except Exception:
            log.exception("integration failed; will retry")
            return
        if checkpoint.size != before:
            for callback in self._listeners:
                try:
                    callback(checkpoint)
                except Exception:
                    log.exception("checkpoint listener failed")
