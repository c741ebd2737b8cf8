"""Usage counts for the staff page, added to the database in batches instead of one write per request.

Every section heard and every topic texted adds one to a row of `usage_daily` (day, channel,
section). Written on each request, those few rows were the line's busiest: every app process
queued for the same rows (SQLite's one writer, PostgreSQL's row locks), and under load the count
cost a section more than everything else the line does for it. A `UsageCounter` keeps this
process's counts in memory and adds them in one transaction every USAGE_FLUSH_SECONDS (from a
background thread), when it holds MAX_PENDING of them, and when the process exits.

The same batches carry each call's place in the menu after every step (`note_place`, for the staff
page's picture of the line, ivr/storage/places.py): moving around the menus then costs a caller no
database round trip, and a call's several steps in one batch are one row write. Places are batched
even with USAGE_FLUSH_SECONDS=0: the call status callback (the end of a call) flushes them.

Nothing about a caller is kept: a count is a day, a channel and a section, and the step key of a
call (a keyed hash, see ivr/web/calls.py `retry_key`) so that a step Twilio retried counts once even
when the retry reached another process: the keys are claimed in the same transaction as the counts.

What this costs: a process killed outright (SIGKILL, power cut) loses the counts of its last
USAGE_FLUSH_SECONDS. The counts are a statistic for the staff page, never something a caller left;
the panel shows them that much later. With USAGE_FLUSH_SECONDS=0 every count is written at once.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import threading
import time
import weakref
from functools import partial
from typing import TYPE_CHECKING, Any

from ivr.storage import PlaceNote, Storage, Use

if TYPE_CHECKING:
    from ivr.resilience import DatabaseGuard

log = logging.getLogger(__name__)


class UsageCounter:
    """This process's usage counts, on their way to the database (see the module's docstring)."""

    #: Counts held before the timer is woken early to write them.
    MAX_PENDING = 2000
    #: Counts (and calls' places) written per transaction, and the pause between two (see `flush`): a busy
    #: second's batch (~800) is ~12 ms of Python, which this worker's request shares the GIL with.
    CHUNK = 100
    CHUNK_PAUSE_SECONDS = 0.01
    #: Counts kept while the database is away; beyond this the oldest are dropped (and logged).
    MAX_KEPT = 50_000

    def __init__(self, storage: Storage, flush_seconds: float, timezone: dt.tzinfo = dt.UTC) -> None:
        self.storage = storage
        #: Counts go on days in the staff's time zone (STAFF_TIMEZONE): the days the staff page shows.
        self.timezone = timezone
        self.flush_seconds = flush_seconds
        self._pending: list[Use] = []
        #: Each call's newest place in the menu (ivr/storage/places.py), by CallSid: a call's steps in one
        #: batch are one row write.
        self._places: dict[str, PlaceNote] = {}
        self._lock = threading.Lock()  # guards _pending
        self._flushing = threading.Lock()  # one batch at a time, so a batch that failed keeps its order
        self._timer_process = -1
        self._hurry = threading.Event()  # wakes the timer before its time (many counts waiting, or stop)
        self._stop = threading.Event()
        self._failing = False
        if flush_seconds > 0:
            # Flushed at exit (gunicorn's workers exit through sys.exit); a weak reference, so an app
            # that is gone (tests build many) is not kept alive by the hook.
            atexit.register(_close_if_alive, weakref.ref(self))

    @property
    def batching(self) -> bool:
        """True when counts wait for the timer; False when each is written at once (USAGE_FLUSH_SECONDS=0)."""
        return self.flush_seconds > 0

    def add(
        self,
        channel: str,
        section: str,
        once_key: str = "",
        at: dt.datetime | None = None,
        zone: dt.tzinfo | None = None,
    ) -> None:
        """Count one use of `section` on `channel` today (in `zone`, default the staff's time zone);
        `once_key` counts a retried step once.

        When batching this never touches the database, so it never keeps a caller waiting; written at
        once, a database error reaches the caller (see `count`).
        """
        use = Use.when(channel, section, once_key, at, zone or self.timezone)
        if not self.batching:
            self.storage.add_uses([use])
            return
        with self._lock:
            self._pending.append(use)
            full = len(self._pending) >= self.MAX_PENDING
        self._ensure_timer()
        if full:
            self._hurry.set()  # the timer thread writes them now; this request goes on

    def note_place(self, note: PlaceNote) -> None:
        """Note a call's place in the menu after a step. Never written during the request, so moving around
        the menus costs the caller no database round trip: batched with the counts, and written at the
        latest when the call ends (Twilio's status callback flushes) even when counts are written at once."""
        with self._lock:
            self._places[note.call_sid] = _newer(self._places.get(note.call_sid), note)
            full = len(self._pending) + len(self._places) >= self.MAX_PENDING
        if not self.batching:
            if full:
                self.flush()
            return
        self._ensure_timer()
        if full:
            self._hurry.set()

    def pending(self) -> int:
        """How many counts wait for the next flush."""
        with self._lock:
            return len(self._pending)

    def pending_places(self) -> int:
        """How many calls' places wait for the next flush."""
        with self._lock:
            return len(self._places)

    def flush(self, background: bool = False) -> int:
        """Add every waiting count to the database now; how many were written (0 if it is away; fewer than
        waited when it went away half-way: the rest wait for the next flush).

        `background` (the timer thread): pause between chunks and checkpoint after them. A flush inside a
        request (the call status callback, a full batch with USAGE_FLUSH_SECONDS=0) does neither, so it
        keeps its worker no longer than the writes take."""
        with self._flushing:
            with self._lock:
                uses, self._pending = self._pending, []
                places, self._places = list(self._places.values()), {}
            written = 0
            try:
                while uses or places:
                    chunk = (uses[: self.CHUNK], places[: self.CHUNK])
                    if not self._write(*chunk):
                        break
                    written += len(chunk[0]) + len(chunk[1])
                    uses, places = uses[self.CHUNK :], places[self.CHUNK :]
                    # Between chunks, SQLite's write lock is left free for a moment: a text waiting for it
                    # sleeps in SQLite's busy handler (1, 2, 5, 10 ms, ...) and, with the next chunk at
                    # once, kept finding it taken (texts waited up to 54 ms; bench mix p99 24-26 ms). With
                    # the pause: at most 19 ms, mix p99 17-19 ms (2-core machine, 2026-12-07 07:45).
                    if background and (uses or places):
                        time.sleep(self.CHUNK_PAUSE_SECONDS)
            finally:  # whatever stopped the write (even SystemExit), what is left goes back, oldest first
                if uses or places:
                    self._keep(uses, {note.call_sid: note for note in places})
            if written and background:
                self._checkpoint()
            return written

    def _checkpoint(self) -> None:
        """After a batch, in this (background) thread: SQLite's log copied into the file, so that no
        request's commit has to (see ivr/storage/sqlite.py `checkpoint`)."""
        try:
            self.storage.checkpoint()
        except Exception as error:  # the next batch tries again; a request's commit is the backstop
            log.warning("Could not checkpoint the database: %s", type(error).__name__)

    def _keep(self, batch: list[Use], places: dict[str, PlaceNote]) -> None:
        with self._lock:
            kept = batch + self._pending
            dropped = max(0, len(kept) - self.MAX_KEPT)
            self._pending = kept[dropped:]
            for call_sid, note in places.items():
                self._places[call_sid] = _newer(self._places.get(call_sid), note)
            if len(self._places) > self.MAX_KEPT:  # a long outage: the oldest calls' places go
                newest = sorted(self._places.values(), key=lambda note: note.at)[-self.MAX_KEPT :]
                dropped += len(self._places) - len(newest)
                self._places = {note.call_sid: note for note in newest}
        if dropped:
            log.warning("Dropped %d usage counts kept while the database was away", dropped)

    def close(self) -> None:
        """Stop the timer and write what waits (at exit)."""
        self._stop.set()
        self._hurry.set()
        self.flush()

    def _write(self, uses: list[Use], places: list[PlaceNote]) -> bool:
        try:
            self.storage.add_uses(uses, places)
        except Exception as error:  # the database is away or locked: kept, tried later
            # Counting is for the staff usage panel; nobody waits for it. Said once per outage, not
            # once a second, and by type only (a database error's text can quote a row).
            if not self._failing:
                log.warning("Could not add %d usage counts, keeping them: %s", len(uses), type(error).__name__)
            self._failing = True
            return False
        if self._failing:
            log.warning("Usage counts added again (%d)", len(uses))
        self._failing = False
        return True

    def _ensure_timer(self) -> None:
        """Start this process's flushing thread on first use (a forked worker starts its own)."""
        if self._timer_process == os.getpid():
            return
        with self._lock:
            if self._timer_process == os.getpid():
                return
            self._timer_process = os.getpid()
            self._hurry, self._stop = threading.Event(), threading.Event()
            events = (self._hurry, self._stop)
        thread = threading.Thread(target=self._run, args=(weakref.ref(self), *events), daemon=True)
        thread.name = "careline-usage-flush"
        thread.start()

    @staticmethod
    def _run(owner: weakref.ReferenceType[UsageCounter], hurry: threading.Event, stop: threading.Event) -> None:
        while not stop.is_set():
            counter = owner()
            if counter is None:
                return
            seconds = counter.flush_seconds
            del counter  # not held while waiting: a discarded app's counter can go
            hurry.wait(seconds)
            hurry.clear()
            if stop.is_set():
                return
            counter = owner()
            if counter is None:
                return
            try:
                counter.flush(background=True)
            except Exception as error:  # never let the thread die: the next tick tries again
                log.error("Usage count flush failed: %s", type(error).__name__)
            del counter


def count(usage: UsageCounter, guard: DatabaseGuard, channel: str, section: str, **when: Any) -> None:
    """Count a use from a request: into the batch (never the database, so even while it is away),
    or, written at once, only when the database guard says it answers."""
    if usage.batching:
        usage.add(channel, section, **when)
    else:
        guard.try_write(partial(usage.add, channel, section, **when), "counting a use")


def _newer(kept: PlaceNote | None, note: PlaceNote) -> PlaceNote:
    return note if kept is None or note.at >= kept.at else kept


def _close_if_alive(owner: weakref.ReferenceType[UsageCounter]) -> None:
    counter = owner()
    if counter is not None:
        counter.close()
