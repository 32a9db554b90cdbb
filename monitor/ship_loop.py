"""One target's loop in the shipper: work the queue, back off when the target is down.

Each attempt is: claim the row (``uploading``), put the file with the target's session
(resuming what a killed run left), then mark it verified or failed in the store. A
failed attempt is retried after :func:`backoff`; a target that cannot be reached backs
off as a whole (its other files wait instead of each failing on their own).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import tenacity

from monitor.config_ship import TimeWindow
from monitor.errors import StoreError
from monitor.ship_state import Claim, Job, MarkFailed, MarkVerified, Requeue, TargetSeen, due_jobs, next_due
from monitor.ship_targets import Session, ShipError, Stopped, Target, TokenBucket, Transfer
from monitor.store import Batch, DerivedOp

if TYPE_CHECKING:
    from monitor.ship import Shipper

__all__ = ["PassResult", "TargetLoop", "backoff"]

log = logging.getLogger("asewatch.ship")


def backoff(attempt: int, initial: float, maximum: float, jitter: float) -> float:
    """Seconds to wait before attempt ``attempt + 1`` after ``attempt`` failures: exponential
    from ``initial``, capped at ``maximum``, plus up to ``jitter`` random seconds (tenacity's
    ``wait_exponential_jitter``, so many agents do not retry in step)."""
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = max(1, attempt)
    return float(tenacity.wait_exponential_jitter(multiplier=initial, max=maximum, jitter=jitter)(state))


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass over a target did: files verified and attempts failed."""

    verified: int = 0
    failed: int = 0


class TargetLoop:
    """One target's loop: works its queue, backs off when it cannot be reached."""

    def __init__(self, shipper: Shipper, target: Target, stop: threading.Event) -> None:
        self.s = shipper
        self.t = target
        self.stop = stop
        self.window: TimeWindow | None = shipper.config.window_of(target.config)
        self.tr = Transfer(TokenBucket(target.bandwidth), stop, shipper.hook)
        self.session: Session | None = None
        self.down_since_attempts = 0
        self.connect_after = 0.0
        self.last_contact = 0.0
        self.force_done = shipper.force_gen

    def _append(self, *ops: DerivedOp) -> None:
        self.s.store.append(Batch(ops=ops))

    def run(self) -> None:
        wake = self.s.wakes[self.t.name]
        try:
            while not self.stop.is_set():
                try:
                    force = self.s.force_gen != self.force_done
                    gen = self.s.force_gen
                    worked = self.one_pass(force=force)
                    self.force_done = gen
                    if worked.verified or worked.failed:
                        continue
                    self._idle()
                    wake.wait(self._sleep())
                except StoreError as exc:
                    log.error("%s: the store failed (retried): %s", self.t.name, exc)
                    self.stop.wait(1.0)
                except Exception:  # a bug must not stop shipping for good
                    log.exception("%s: the shipper loop failed; retrying in 5 s", self.t.name)
                    self.close()
                    self.stop.wait(5.0)
                wake.clear()
        finally:
            self.close()

    def _sleep(self) -> float:
        """Seconds until something may be due (at most 1: new rows and releases are polled)."""
        now = self.s.clock()
        with self.s.store.reader() as r:
            due = next_due(r, self.t.name)
        return max(0.05, 1.0 if due is None else min(1.0, due - now))

    def _idle(self) -> None:
        """Nothing to do: drop the connection; now and then check the target is reachable."""
        self.close()
        now = self.s.clock()
        if now - self.last_contact < self.s.config.probe_interval or now < self.connect_after:
            return
        try:
            self.t.connect(self.t.config.timeout).close()
        except ShipError as exc:
            self._append(TargetSeen(self.t.name, up=False, error=exc.reason))
            self._down()
        else:
            self._append(TargetSeen(self.t.name, up=True))
            self.down_since_attempts = 0
        self.last_contact = now

    def one_pass(self, *, force: bool = False, limit: int = 50) -> PassResult:
        """Ship what is due now on this target (at most ``limit`` files)."""
        now = self.s.clock()
        if not force and now < self.connect_after:
            return PassResult()
        in_window = self.window is None or self.window.contains(self.s.local_now())
        with self.s.store.reader() as r:
            jobs = due_jobs(
                r, self.t.name, now, force=force, dumps=force or in_window,
                metadata=force or in_window or self.s.config.metadata_first, limit=limit,
            )  # fmt: skip
        verified = failed = 0
        for job in jobs:
            if self.stop.is_set():
                break
            if (
                not force
                and job.kind == "dump"
                and self.window
                and not self.window.contains(self.s.local_now())
            ):
                break  # the window closed meanwhile
            ok = self._ship(job)
            verified += ok is True
            failed += ok is False
            if ok is False and self.session is None and not force and self.s.clock() < self.connect_after:
                break  # the target is down: the rest waits for the target's backoff
        return PassResult(verified, failed)

    def _ship(self, job: Job) -> bool | None:
        """One attempt; True verified, False failed, None stopped (left to resume)."""
        key = (job.package_id, job.file, job.target)
        self._append(Claim(*key))
        self.tr.phase("claimed", job, str(job.attempts + 1))
        try:
            if self.session is None:
                self.session = self._connect()
            outcome = self.session.place(job, Path(job.path) / job.file, self.tr)
        except Stopped:
            self._append(Requeue(*key))
            return None
        except ShipError as exc:
            self._failed(job, exc)
            return False
        except Exception as exc:  # a bug must not stop shipping: count it, retry later
            log.exception("%s: shipping %s/%s failed unexpectedly", self.t.name, job.package_id, job.file)
            self._failed(job, ShipError(self.t.name, f"internal error: {type(exc).__name__}: {exc}"))
            return False
        self._append(MarkVerified(*key), TargetSeen(self.t.name, up=True))
        self.last_contact = self.s.clock()
        self.down_since_attempts = 0
        self.tr.phase("verified", job, outcome)
        log.info("%s: %s/%s verified (%s)", self.t.name, job.package_id, job.file, outcome)
        return True

    def _failed(self, job: Job, exc: ShipError) -> None:
        c = self.s.config
        retry_at = self.s.clock() + backoff(job.attempts + 1, c.retry_initial, c.retry_max, c.retry_jitter)
        ops: list[DerivedOp] = [
            MarkFailed(job.package_id, job.file, job.target, exc.reason, retry_at if exc.retry else None)
        ]
        if exc.retry:  # a permanent failure is the package's (or a person's) business, not the target's
            ops.append(TargetSeen(self.t.name, up=False, error=exc.reason))
        self._append(*ops)
        self.last_contact = self.s.clock()
        log.warning(
            "%s: %s/%s failed (attempt %d): %s",
            self.t.name,
            job.package_id,
            job.file,
            job.attempts + 1,
            exc.reason,
        )
        self.close()
        if exc.connect:
            self._down()

    def _down(self) -> None:
        c = self.s.config
        self.down_since_attempts += 1
        wait = backoff(self.down_since_attempts, c.retry_initial, c.retry_max, c.retry_jitter)
        self.connect_after = self.s.clock() + wait

    def _connect(self) -> Session:
        # A blip (a busy sshd refusing a new connection) is retried at once, a few times;
        # a target that stays down is the backoff's business.
        # A refusal (login, host key, token) is never retried at once: the vendor's side
        # may lock the account after a few failed logins.
        def blip(exc: BaseException) -> bool:
            return isinstance(exc, ShipError) and exc.connect and not exc.refused and not self.stop.is_set()

        def sleep(seconds: float) -> None:
            self.stop.wait(seconds)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_random_exponential(multiplier=0.2, max=2.0),
            retry=tenacity.retry_if_exception(blip),
            sleep=sleep,
            reraise=True,
        )
        return retrying(self.t.connect, self.t.config.timeout)

    def close(self) -> None:
        """Drop the session, if any (a broken one may fail to close; it is gone anyway)."""
        if self.session is not None:
            try:
                self.session.close()
            except Exception:
                log.debug("%s: closing the session failed", self.t.name, exc_info=True)
            self.session = None
