"""Follow a server's errorlog live: tail it, parse it, emit records with their resume position.

Every emit carries the records and the position just after the last one of them
(the tail position at the parser's ``safe_offset`` plus the parser's cross-record
state), so the agent commits both in one transaction: after a ``kill -9`` the
follower resumes where the committed records end, and nothing is reported twice or
missed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from collectors.errorlog.catchup import Backlog, plan_split
from collectors.errorlog.parser import ErrorlogParser, ParserState
from monitor.events import CollectorFailed, CollectorSucceeded, Event
from monitor.tail import Chunk, FileId, FileTailer, Problem, Switched, TailPosition

Emit = Callable[[Sequence[Event], Mapping[str, str]], None]
SUCCESS_EVERY_S = 5.0
# A crash block without its end is emitted (as truncated) after this many quiet periods.
INCOMPLETE_FACTOR = 10


def encode_position(tail: TailPosition, state: ParserState) -> str:
    """The persisted resume point: where the tail stands and what the parser knew there."""
    return json.dumps({"tail": json.loads(tail.to_json()), "parser": asdict(state)}, sort_keys=True)


def decode_position(text: str | None) -> tuple[TailPosition | None, ParserState]:
    """Inverse of :func:`encode_position`; an unreadable value restarts from the file's start."""
    if not text:
        return None, ParserState()
    try:
        doc = json.loads(text)
        # Keys of older versions (0.x persisted a "robust" scan mode) are dropped, not fatal.
        known = {k: v for k, v in doc["parser"].items() if k in ParserState.__dataclass_fields__}
        return TailPosition.from_json(json.dumps(doc["tail"])), ParserState(**known)
    except (ValueError, KeyError, TypeError):
        return None, ParserState()


class ErrorlogFollower:
    """One server's errorlog, followed from a saved position.

    ``locate`` returns the errorlog path (from the config, or the running dataserver's
    ``-e``), or None while it is not known; the follower reports that and retries.
    """

    def __init__(
        self,
        server: str,
        locate: Callable[[], Path | None],
        saved: str | None,
        *,
        quiet_period: float = 0.5,
        poll_interval: float = 1.0,
        use_watchdog: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server = server
        self.source = f"errorlog:{server}"
        self._locate = locate
        self._saved = saved
        self._quiet = quiet_period
        self._poll = poll_interval
        self._watchdog = use_watchdog
        self._clock = clock
        self._last_ok = 0.0

    def run(self, emit: Emit, stop: threading.Event) -> None:
        """Follow until ``stop`` is set; never raises (failures are CollectorFailed events)."""
        path = self._wait_for_path(emit, stop)
        if path is None:
            return
        tail_pos, state = decode_position(self._saved)
        backlog = self._backlog(path, tail_pos, state)
        if backlog is not None:  # a large backlog: live from near the end, history beside it
            tail_pos, state = backlog.split.live, backlog.split.live_state
        parser = ErrorlogParser(offset=tail_pos.offset if tail_pos else 0, state=state)
        file_id: FileId | None = tail_pos.file_id if tail_pos else None
        last_position: str | None = self._saved
        with FileTailer(path, tail_pos, poll_interval=self._poll, use_watchdog=self._watchdog) as tailer:
            while not stop.is_set():
                records: list[Event] = []
                problems: list[Problem] = []
                for item in tailer.read():
                    if isinstance(item, Chunk):
                        file_id = item.file_id
                        records += parser.feed(item.data)
                    elif isinstance(item, Switched):
                        records += parser.close()
                        last_position = self._emit(
                            emit,
                            records,
                            tailer=tailer,
                            file_id=file_id,
                            parser=parser,
                            last_position=last_position,
                            backlog=backlog,
                        )
                        records = []
                        parser = ErrorlogParser(offset=0, state=parser.state())
                        file_id = item.new
                    else:
                        problems.append(item)
                        if item.kind == "gap":
                            # The saved file is gone or rewritten: no position can name it any
                            # more, and the next one comes with the file read from offset 0.
                            file_id = None
                quiet = 0.0 if tailer.pending else time.monotonic() - tailer.last_data_monotonic
                if quiet >= self._quiet:
                    # Finished records now; a block cut off mid-stack only after a long quiet.
                    records += parser.flush_idle(incomplete=quiet >= self._quiet * INCOMPLETE_FACTOR)
                if backlog is not None:
                    records += self._history(backlog, problems)
                last_position = self._emit(
                    emit,
                    records,
                    tailer=tailer,
                    file_id=file_id,
                    parser=parser,
                    last_position=last_position,
                    backlog=backlog,
                )
                if backlog is not None and backlog.done:
                    backlog = None
                self._health(emit, problems)
                if backlog is not None:
                    continue  # history left: read the next slice after a look at the live end
                # While a record is held back, wake after the quiet period to emit it.
                tailer.wait(self._quiet if parser.holding else self._poll)

    @staticmethod
    def _backlog(path: Path, saved: TailPosition | None, state: ParserState) -> Backlog | None:
        try:
            split = plan_split(path, saved, state)
            return Backlog(path, split) if split is not None else None
        except OSError:  # missing, unreadable: the tailer reports it; the file is read in line
            return None

    def _history(self, backlog: Backlog, problems: list[Problem]) -> list[Event]:
        try:
            return list(backlog.step())
        except OSError as e:
            backlog.close()
            problems.append(Problem("gap", f"cannot read the errorlog's history: {e}", backlog.path))
            return []

    def _emit(
        self,
        emit: Emit,
        records: list[Event],
        *,
        tailer: FileTailer,
        file_id: FileId | None,
        parser: ErrorlogParser,
        last_position: str | None,
        backlog: Backlog | None,
    ) -> str | None:
        if backlog is not None and not backlog.done:
            # The history is not all read: the resume point stays in it (see catchup.py).
            hist_pos, hist_state = backlog.position()
            position = encode_position(hist_pos, hist_state)
            if records or position != last_position:
                emit(records, {self.source: position})
            return position
        if file_id is None:
            if records:
                emit(records, {})
            return last_position
        position = encode_position(tailer.position_at(file_id, parser.safe_offset), parser.state())
        if records or position != last_position:
            emit(records, {self.source: position})
        return position

    def _health(self, emit: Emit, problems: list[Problem]) -> None:
        now = self._clock()
        if problems:
            emit([CollectorFailed(self.source, p.reason, now) for p in problems[:1]], {})
        elif now - self._last_ok >= SUCCESS_EVERY_S:
            self._last_ok = now
            emit([CollectorSucceeded(self.source, now)], {})

    def _wait_for_path(self, emit: Emit, stop: threading.Event) -> Path | None:
        while not stop.is_set():
            try:
                path = self._locate()
            except OSError as e:
                path, reason = None, f"cannot locate the errorlog: {e}"
            else:
                reason = (
                    "errorlog path unknown: no errorlog configured and the dataserver (its -e) is not running"
                )
            if path is not None:
                return path
            emit([CollectorFailed(self.source, reason, self._clock())], {})
            stop.wait(self._poll * 5)
        return None
