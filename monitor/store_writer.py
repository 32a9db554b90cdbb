"""The agent's one store writer: a named thread that commits batches from a bounded queue.

Collectors' batches arrive through :meth:`StoreWriter.submit`. The thread takes the
first waiting batch and whatever else is queued behind it (up to ``max_group``) and
commits them in one transaction, so a burst costs one fsync rather than one per batch;
each batch stays all-or-nothing. If the group fails, its batches are retried one by
one so a single bad batch cannot take the others down with it.

After each commit the thread calls ``on_committed`` with only the events that were new.
The callback runs on the writer thread, after the commit, one call at a time: it may
read the store and write derived state with :meth:`Store.append` directly, but must
not call :meth:`submit` (the writer would wait on its own queue).

A full queue is the caller's problem to count: :meth:`submit` waits up to its timeout,
then raises StoreError, and the agent drops the batch, counts it and logs once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from monitor.errors import StoreError
from monitor.store_types import Batch, StoredEvent

if TYPE_CHECKING:
    from monitor.store import Store

log = logging.getLogger(__name__)

OnCommitted = Callable[[list[StoredEvent]], None]


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters since the writer was made (for metrics): batches and events."""

    committed_batches: int
    inserted_events: int
    duplicate_events: int
    failed_batches: int
    abandoned_batches: int
    callback_errors: int
    queued: int


class StoreWriter:
    """The one writer thread, named ``store-writer``. ``start()``, ``submit()``, ``stop()``."""

    def __init__(
        self,
        store: Store,
        *,
        queue_size: int = 10_000,
        on_committed: OnCommitted | None = None,
        max_group: int = 64,
    ) -> None:
        if queue_size < 1 or max_group < 1:
            raise ValueError("queue_size and max_group must be at least 1")
        self._store = store
        self._on_committed = on_committed
        self._max_group = max_group
        self._queue: queue.Queue[Batch] = queue.Queue(maxsize=queue_size)
        self._stopping = threading.Event()
        self._drain_deadline = 0.0
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=False)
        # Written by the writer thread only; other threads read them whole (see stats()).
        self._committed = self._inserted = self._duplicates = 0
        self._failed = self._abandoned = self._callback_errors = 0

    def start(self) -> None:
        """Start the thread. Raises RuntimeError if it was started before."""
        self._thread.start()

    def submit(self, batch: Batch, timeout: float = 1.0) -> None:
        """Queue ``batch`` for commit, waiting up to ``timeout`` seconds for room.

        Raises StoreError when the queue stays full for ``timeout`` (the batch is not
        queued: the caller drops and counts it) or when the writer is stopping.
        """
        if self._stopping.is_set():
            raise StoreError(str(self._store.path), "the store writer is stopped; batch not stored")
        try:
            self._queue.put(batch, timeout=timeout)
        except queue.Full:
            raise StoreError(
                str(self._store.path),
                f"write queue full ({self._queue.maxsize} batches) for {timeout:g}s; batch not stored",
            ) from None

    def stop(self, timeout: float = 5.0) -> None:
        """Commit what is queued (for at most ``timeout`` seconds), then end the thread.

        Batches still queued at the deadline are abandoned, counted and logged. Raises
        StoreError if the thread is still busy (a commit stuck on I/O) a second after
        the deadline. Idempotent.
        """
        self._drain_deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._thread.ident is not None:
            self._thread.join(timeout + 1.0)
            if self._thread.is_alive():
                raise StoreError(str(self._store.path), f"the store writer did not stop within {timeout:g}s")
        self._abandon_leftovers()

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread.is_alive()

    def stats(self) -> WriterStats:
        """A snapshot of the counters."""
        return WriterStats(
            committed_batches=self._committed,
            inserted_events=self._inserted,
            duplicate_events=self._duplicates,
            failed_batches=self._failed,
            abandoned_batches=self._abandoned,
            callback_errors=self._callback_errors,
            queued=self._queue.qsize(),
        )

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            if self._stopping.is_set() and (self._queue.empty() or time.monotonic() > self._drain_deadline):
                break
            try:
                # A short wait so a stop request is seen promptly; it costs no commit latency.
                group = [self._queue.get(timeout=0.1)]
            except queue.Empty:
                continue
            while len(group) < self._max_group:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(group)

    def _commit(self, group: Sequence[Batch]) -> None:
        try:
            new = self._store.append_many(group)
        except Exception as exc:  # noqa: BLE001 - the writer outlives any one bad batch
            if len(group) == 1:
                self._failed += 1
                log.error("store write failed, batch dropped: %s", exc)
                return
            new = []
            for batch in group:
                try:
                    stored = self._store.append_many((batch,))
                except Exception as one:  # noqa: BLE001 - as above
                    self._failed += 1
                    log.error("store write failed, batch dropped: %s", one)
                    continue
                self._count((batch,), stored)
                new.extend(stored)
        else:
            self._count(group, new)
        if new and self._on_committed is not None:
            try:
                self._on_committed(new)
            except Exception:  # derived state must not stop the event log (logged with traceback)
                self._callback_errors += 1
                log.exception("on_committed callback failed")

    def _count(self, batches: Sequence[Batch], new: Sequence[StoredEvent]) -> None:
        self._committed += len(batches)
        self._inserted += len(new)
        self._duplicates += sum(len(b.events) for b in batches) - len(new)

    def _abandon_leftovers(self) -> None:
        left = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            left += 1
        if left:
            self._abandoned += left
            log.warning("store writer stopped with %d batches uncommitted (drain deadline passed)", left)
