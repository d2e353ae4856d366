"""One request's decoding in a worker thread, and the queue that admits requests.

The model is shared; each :class:`DecodeJob` builds its own generator and canvases, so two requests
never see each other's steps.  :class:`Scheduler` lets ``max_concurrent`` jobs decode at once and
``max_queue`` more wait; a request beyond that is refused with :class:`Busy` (the page says so).
"""
import logging
import queue
import threading
import time
from typing import Optional

from ..errors import UserError
from .events import CanvasView, done_event
from .requests import DecodeRequest

logger = logging.getLogger(__name__)


class Busy(UserError, RuntimeError):
    """Every decoding slot and queue place is taken."""


class Cancelled(Exception):
    """The page went away: the job stops at its next step."""


class Scheduler:
    """``max_concurrent`` decoding slots and ``max_queue`` waiting places."""

    def __init__(self, max_concurrent: int, max_queue: int):
        self.max_concurrent, self.max_queue = max_concurrent, max_queue
        self._slots = threading.Semaphore(max_concurrent)
        self._lock = threading.Lock()
        self.waiting = self.running = 0

    def admit(self) -> int:
        """Reserve a place (raises :class:`Busy`); returns how many requests are ahead of it."""
        with self._lock:
            ahead = self.waiting + self.running
            if ahead >= self.max_concurrent + self.max_queue:
                raise Busy(f"the demo is busy ({self.running} request(s) decoding, {self.waiting} waiting, "
                           f"--max-queue {self.max_queue}); try again in a moment")
            self.waiting += 1
            return max(ahead - self.max_concurrent + 1, 0)

    def acquire(self, cancelled: threading.Event) -> None:
        """Wait for a decoding slot (a reserved place becomes a running one)."""
        while not self._slots.acquire(timeout=0.1):
            if cancelled.is_set():  # the place stays reserved until leave(running=False)
                raise Cancelled()
        with self._lock:
            self.waiting -= 1
            self.running += 1

    def leave(self, running: bool) -> None:
        """Give the place back (``running``: it held a decoding slot)."""
        with self._lock:
            if running:
                self.running -= 1
            else:
                self.waiting -= 1
        if running:
            self._slots.release()


class DecodeJob:
    """Decodes ``request`` with ``lm`` in a thread of its own; :meth:`next_event` reads its events.

    Call :meth:`start` once the scheduler admitted it (``ahead``: requests before it)."""

    def __init__(self, lm, request: DecodeRequest, scheduler: Scheduler, ahead: int):
        self.lm, self.request, self.scheduler, self.ahead = lm, request, scheduler, ahead
        self.cancelled = threading.Event()
        self._events: "queue.Queue[Optional[dict]]" = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="fairseq-dlm-demo-job", daemon=True)

    def start(self) -> "DecodeJob":
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.cancelled.set()

    def next_event(self, timeout: float) -> Optional[dict]:
        """The next event, ``{"type": "wait"}`` if none came within ``timeout`` s, ``None`` at the end."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return {"type": "wait"}

    def _run(self) -> None:
        running = False
        try:
            if self.ahead:
                self._events.put({"type": "queued", "position": self.ahead})
            self.scheduler.acquire(self.cancelled)
            running = True
            self._decode()
        except Cancelled:
            logger.info("a request was cancelled (its page went away)")
        except UserError as e:  # a combination of options the decoder refuses
            self._events.put({"type": "error", "message": str(e)})
        except Exception as e:  # a bug: say so in the page, keep the trace in the server's log
            logger.exception("decoding failed")
            self._events.put({"type": "error", "message": f"internal error ({type(e).__name__}: {e}); see the "
                                                          "server's log"})
        finally:
            self.scheduler.leave(running)
            self._events.put(None)

    def _decode(self) -> None:
        view, delay = CanvasView(self.lm), self.request.step_delay_ms / 1000
        start = time.perf_counter()
        first = []

        def on_step(state, active):
            if self.cancelled.is_set():
                raise Cancelled()
            elapsed = time.perf_counter() - start
            if active is not None and not first:
                first.append(elapsed)
            self._events.put(view.step_event(state, active, elapsed))
            if delay and active is not None:
                self.cancelled.wait(delay)  # slow motion; ends early when the page goes away

        result = self.lm.generate(on_step=on_step, **self.request.generate_kwargs())
        self._events.put(done_event(result, time.perf_counter() - start, first[0] if first else None))
