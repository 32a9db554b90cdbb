"""Finds and watches the dataserver process(es) of each configured ASE server.

A process is (pid, create_time), psutil's identity. A server runs as one process
(threaded kernel mode) or as engine 0 plus one child per further engine, each with
``-ONLINE:N`` in its argv (process mode); every event carries ``engine`` (0 for the
main process in both modes), and the server is up while its engine 0 runs. A new pid
for the same server is a restart: a new ``ProcessStarted``.

Exits are noticed at once: each watched process has a pidfd, waited on with
``select.poll`` beside a wake-up pipe (for stop). Where pidfds are missing (not Linux
>= 5.3, a seccomp filter, out of descriptors) the watch polls ``is_running()`` every
0.1 s and logs that once. New and restarted processes are looked for every
``poll_interval``; the process table is listed only when a pid was allocated since
the last look, and only pids not seen before have their cmdline read.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import os
import select
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import psutil

from collectors.process_find import (
    DataserverArgs,
    DataserverProcess,
    DataserverTarget,
    file_sig,
    find_dataservers,
    inspect_pid,
    last_pid,
    match_target,
    parse_dataserver_args,
    parse_run_file,
    read_hints,
)
from monitor.errors import AsewatchError, SourceError
from monitor.events import (
    CollectorFailed,
    CollectorSucceeded,
    Event,
    ProcessExited,
    ProcessSample,
    ProcessStarted,
)

__all__ = [
    "DataserverArgs",
    "DataserverProcess",
    "DataserverTarget",
    "ProcessWatch",
    "find_dataservers",
    "parse_dataserver_args",
    "parse_run_file",
]

COLLECTOR = "process"
log = logging.getLogger(__name__)

_CT_TOLERANCE = 0.01  # s: create_time after a round trip through the store
_YOUNG = 5.0  # s: a new pid may not have exec'd its final program yet; re-read it this long
_POLL_EXITS = 0.1  # s: how often exits are polled for processes without a pidfd
_OK_EVERY = 5.0  # s: at most one CollectorSucceeded per this
_FAIL_REPEAT = 30.0  # s: the same failure reason is emitted again only after this


@dataclass(slots=True)
class _Watched:
    server: str
    proc: DataserverProcess
    ps: psutil.Process
    fd: int | None  # pidfd, or None when polled
    own_child: bool


def _peek_status(pid: int) -> tuple[int | None, int | None]:
    """(returncode, signal) of our own exited child, leaving it for its owner to reap (WNOWAIT)."""
    try:
        res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (OSError, AttributeError):  # reaped by its owner already; or no waitid here
        return None, None
    if res is not None and res.si_code == os.CLD_EXITED:
        return res.si_status, None
    if res is not None and res.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
        return None, res.si_status
    return None, None


def _guarded(emit: Callable[[Event], None], event: Event) -> None:
    try:
        emit(event)
    except Exception:  # the consumer's failure must not stop the watch
        log.exception("process watch: emit failed, event lost: %r", event)


def _alive(ps: psutil.Process) -> bool:
    """Running with the same create_time, and not a zombie (psutil counts zombies as running)."""
    try:
        return ps.is_running() and ps.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class ProcessWatch:
    """Watches the dataservers of ``targets`` and emits process events.

    ``known`` holds the (server, pid, create_time) the store believed running when the
    agent last stopped: at start each one gone (or whose pid now has another create
    time) gets a ``ProcessExited`` whose ``exit_time`` is the time it was noticed, an
    upper bound; each still running is adopted and its ``ProcessStarted`` emitted again
    (the event's key makes that a no-op in the store). Intervals are seconds;
    ``clock`` gives the POSIX seconds stamped on events. ``use_pidfd=False`` forces
    the polling fallback. Raises ``ValueError`` on a non-positive interval.
    """

    def __init__(
        self,
        targets: Sequence[DataserverTarget],
        *,
        poll_interval: float = 0.5,
        sample_interval: float = 5.0,
        rescan_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        known: Iterable[tuple[str, int, float]] = (),
        use_pidfd: bool = True,
    ) -> None:
        if min(poll_interval, sample_interval, rescan_interval) <= 0:
            raise ValueError("process watch intervals must be positive")
        self._targets = tuple(targets)
        self._poll_interval = poll_interval
        self._sample_interval = sample_interval
        self._rescan_interval = rescan_interval
        self._clock = clock
        self._known = list(known)
        self._use_pidfd = use_pidfd and hasattr(os, "pidfd_open")
        self._fallback_logged = False
        self._classified: set[int] = set()  # pids whose cmdline was read
        self._young: dict[int, float] = {}  # non-dataserver pid -> monotonic s first seen
        self._candidates: dict[int, DataserverProcess] = {}  # dataservers not (yet) ours
        self._last_pid: int | None = None
        self._hint_sigs: dict[DataserverTarget, tuple[object, object]] = {}
        self._watched: dict[int, _Watched] = {}
        self._by_fd: dict[int, _Watched] = {}
        self._poller = select.poll()
        self._lock = threading.Lock()  # guards the wake-up pipe between run() and _relay()
        self._wake_w: int | None = None
        self._last_ok = -math.inf
        self._last_fail = ("", -math.inf)
        self._stop_event: threading.Event | None = None

    def stop(self) -> None:
        """Stop a running ``run()`` at once, as setting its stop event does. Thread-safe."""
        if (event := self._stop_event) is not None:
            event.set()

    def _relay(self, stop: threading.Event) -> None:
        """Turn ``stop.set()`` into a byte on the wake-up pipe, so run() sleeps until needed."""
        while not stop.wait(5.0):
            if self._wake_w is None:  # run() ended without stop (a BaseException): leave
                return
        with self._lock:  # never write to a closed (and perhaps reused) descriptor number
            if self._wake_w is not None:
                os.write(self._wake_w, b"x")  # cannot block: an empty pipe, one byte

    def run(self, emit: Callable[[Event], None], stop: threading.Event) -> None:
        """Watch until ``stop`` is set, emitting events; blocking, for one named thread.

        Returns at once after ``stop.set()``: a helper thread (``process-watch-wake``, idle
        until then) wakes the loop, which otherwise sleeps until the next scan. Never raises:
        a failure is emitted as ``CollectorFailed`` (the same reason at most every 30 s)
        and retried next cycle; a ``CollectorSucceeded`` follows a good cycle at most every
        5 s. Calling ``run()`` again later resumes the processes this run was watching.
        """
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._poller = select.poll()
        self._poller.register(wake_r, select.POLLIN)
        with self._lock:
            self._wake_w, self._stop_event = wake_w, stop
        relay = threading.Thread(target=self._relay, args=(stop,), name="process-watch-wake")
        relay.start()
        try:
            self._loop(functools.partial(_guarded, emit), stop, wake_r)
        finally:
            with self._lock:
                self._wake_w, self._stop_event = None, None
                os.close(wake_w)
            os.close(wake_r)
            if stop.is_set():
                relay.join(timeout=1.0)
            for w in self._watched.values():
                if w.fd is not None:
                    os.close(w.fd)
            self._known = [(w.server, w.proc.pid, w.proc.create_time) for w in self._watched.values()]
            self._watched.clear()
            self._by_fd.clear()

    # ------------------------------------------------------------------ the loop

    def _loop(self, emit: Callable[[Event], None], stop: threading.Event, wake_r: int) -> None:
        self._attempt(emit, self._resume)
        next_scan = next_sample = next_rescan = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_scan:
                fresh = now >= next_rescan
                if fresh:  # forget every classification: a pid that exec'd a dataserver late is re-read
                    self._classified.clear()
                    self._young.clear()
                    self._candidates.clear()
                    next_rescan = now + self._rescan_interval
                ok = self._attempt(emit, functools.partial(self._scan, fresh=fresh))
                if now >= next_sample:  # samples ride on a scan: at most poll_interval late
                    ok = self._attempt(emit, self._sample) and ok
                    next_sample = now + self._sample_interval
                if ok:
                    self._last_fail = ("", -math.inf)  # a failure that comes back is news again
                    if now - self._last_ok >= _OK_EVERY:
                        self._last_ok = now
                        emit(CollectorSucceeded(COLLECTOR, self._clock()))
                next_scan = now + self._poll_interval
            polled = [w for w in self._watched.values() if w.fd is None]
            wake_at = min(next_scan, now + _POLL_EXITS) if polled else next_scan
            timeout = max(0.0, wake_at - time.monotonic())
            ready = self._poller.poll(timeout * 1000.0)
            fired = self._clock()  # the moment the pidfd fired: the exit time we record
            for fd, _mask in ready:
                if fd == wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                elif (w := self._by_fd.get(fd)) is not None:
                    self._attempt(emit, functools.partial(self._exited, w, fired))
            for w in polled:
                if w.proc.pid in self._watched and not _alive(w.ps):
                    self._attempt(emit, functools.partial(self._exited, w, self._clock()))

    def _attempt(
        self, emit: Callable[[Event], None], step: Callable[[Callable[[Event], None]], None]
    ) -> bool:
        """Run one step; a failure becomes a (rate-limited) CollectorFailed. True on success."""
        try:
            step(emit)
        except Exception as exc:  # the watch never dies; the reason goes out as an event
            reason = str(exc) if isinstance(exc, AsewatchError) else f"{type(exc).__name__}: {exc}"
            now = time.monotonic()
            if reason != self._last_fail[0] or now - self._last_fail[1] >= _FAIL_REPEAT:
                self._last_fail = (reason, now)
                if not isinstance(exc, AsewatchError):  # expected failures are reported by the agent
                    log.error("process watch: unexpected failure, retrying", exc_info=exc)
                emit(CollectorFailed(COLLECTOR, reason, self._clock()))
            return False
        return True

    def _resume(self, emit: Callable[[Event], None]) -> None:
        known, self._known = self._known, []
        for server, pid, create_time in known:
            if pid in self._watched:
                continue
            try:
                ps = psutil.Process(pid)
                alive = abs(ps.create_time() - create_time) <= _CT_TOLERANCE and _alive(ps)
                argv = tuple(ps.cmdline()) if alive else ()
                ppid = ps.ppid() if alive else 0
            except psutil.NoSuchProcess:  # includes zombies
                alive = False
            except psutil.AccessDenied:  # it runs, we may not read it: adopt with what we know
                alive, argv, ppid = True, (), 0
            if not alive:
                now = self._clock()  # an upper bound: it died while the agent was not watching
                emit(ProcessExited(server, pid, create_time, now, None, None, now))
                continue
            proc = DataserverProcess(pid, create_time, ppid, argv, parse_dataserver_args(argv))
            self._watch(server, proc, emit)

    def _scan(self, emit: Callable[[Event], None], *, fresh: bool) -> None:
        """Find new dataservers and watch those of our targets; cheap when nothing changed.

        The process table is listed only when the kernel's last allocated pid moved (no
        fork, no new pid); only pids not classified before have their cmdline read, and each
        is re-read for 5 s in case it had not exec'd yet. ``fresh`` (the first scan and the
        periodic rescan) lists and reads everything and re-reads the target files.
        """
        now = time.monotonic()
        found = False
        last = last_pid()
        if fresh or last is None or last != self._last_pid:
            self._last_pid = last
            pids = psutil.pids()
            live = set(pids)
            self._classified &= live
            self._young = {p: t for p, t in self._young.items() if p in live}
            self._candidates = {p: c for p, c in self._candidates.items() if p in live}
            for pid in pids:
                if pid in self._classified or pid in self._watched:
                    continue
                self._classified.add(pid)
                if (proc := inspect_pid(pid)) is not None:
                    self._candidates[pid], found = proc, True
                else:  # even at a fresh scan: a pid forked just before may exec a dataserver next
                    self._young[pid] = now
        for pid, born in list(self._young.items()):
            if now - born > _YOUNG:
                del self._young[pid]
            elif born < now and (proc := inspect_pid(pid)) is not None:  # it exec'd a dataserver
                del self._young[pid]
                self._candidates[pid], found = proc, True
        sigs = {t: (file_sig(t.pid_file), file_sig(t.run_file)) for t in self._targets}
        # A pid file often appears after its process: re-match waiting candidates when files change.
        if not (fresh or found or (self._candidates and sigs != self._hint_sigs)):
            return
        self._hint_sigs = sigs
        problems: list[str] = []
        for target in self._targets:
            hints, errors = read_hints(target)
            problems += [str(e) for e in errors]
            engine0 = {
                w.proc.pid for w in self._watched.values() if w.server == target.name and w.proc.engine == 0
            }
            for proc in match_target(target, hints, self._candidates.values(), engine0):
                del self._candidates[proc.pid]
                self._watch(target.name, proc, emit)
        if problems:
            raise SourceError(COLLECTOR, "; ".join(problems) + " (servers are matched by -s name only)")

    def _watch(self, server: str, proc: DataserverProcess, emit: Callable[[Event], None]) -> None:
        """Emit ProcessStarted and watch ``proc``; if it is already gone, emit its exit too."""
        # The pidfd first, then the identity check: a pidfd opened on a reused pid is caught here.
        fd = self._open_pidfd(proc.pid)
        ps: psutil.Process | None = None
        with contextlib.suppress(psutil.NoSuchProcess):  # a zombie keeps its identity; reaped ones fail
            ps = psutil.Process(proc.pid)
            if abs(ps.create_time() - proc.create_time) > _CT_TOLERANCE:
                ps = None
        obs = self._clock()
        emit(ProcessStarted(server, proc.pid, proc.create_time, proc.engine, proc.cmdline, obs))
        if ps is None:
            if fd is not None:
                os.close(fd)
            emit(ProcessExited(server, proc.pid, proc.create_time, obs, None, None, obs))
            return
        own = proc.ppid == os.getpid()
        w = _Watched(server, proc, ps, fd, own)
        self._watched[proc.pid] = w
        if fd is not None:
            self._by_fd[fd] = w
            self._poller.register(fd, select.POLLIN)

    def _open_pidfd(self, pid: int) -> int | None:
        """A pidfd for ``pid``, or None: already gone (``_watch`` sees that), or poll instead."""
        why = "pidfds disabled by configuration"
        if self._use_pidfd:
            try:
                return os.pidfd_open(pid)
            except OSError as exc:
                if exc.errno == errno.ESRCH:
                    return None
                why = f"pidfd_open failed: {exc.strerror}"
        if not self._fallback_logged:
            self._fallback_logged = True
            log.warning("process watch: %s; noticing exits by polling every %.1f s", why, _POLL_EXITS)
        return None

    def _exited(self, w: _Watched, exit_time: float, emit: Callable[[Event], None]) -> None:
        """Stop watching ``w`` and emit its exit; the status only if it is our own child."""
        if w.fd is not None:
            self._poller.unregister(w.fd)
            del self._by_fd[w.fd]
            os.close(w.fd)
            w.fd = None
        del self._watched[w.proc.pid]
        self._classified.discard(w.proc.pid)  # the pid may come back as a restart
        returncode, signal = _peek_status(w.proc.pid) if w.own_child else (None, None)
        p = w.proc
        emit(ProcessExited(w.server, p.pid, p.create_time, exit_time, returncode, signal, self._clock()))

    def _sample(self, emit: Callable[[Event], None]) -> None:
        for w in list(self._watched.values()):
            try:
                with w.ps.oneshot():
                    rss = w.ps.memory_info().rss
                    cpu = w.ps.cpu_times()
                    threads = w.ps.num_threads()
                    try:
                        fds: int | None = w.ps.num_fds()
                    except psutil.AccessDenied:  # another user's process and we are not root
                        fds = None
            except psutil.NoSuchProcess:  # exiting: the pidfd or the poll reports it
                continue
            p, cpu_s = w.proc, cpu.user + cpu.system
            emit(ProcessSample(w.server, p.pid, p.create_time, self._clock(), rss, cpu_s, threads, fds))
