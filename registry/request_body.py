"""Request bodies are read whole, within a deadline, before a request takes a database connection.

A client sending its body slowly (a byte every few seconds) holds the gunicorn thread reading
it; before this, it held a database connection too, since a write's view opens its transaction
(token lookup included) and then streams the body. Sixteen such clients took every thread of
the default deployment, and /healthz stopped answering. So, before any view runs:

- the body is read into a spool (memory up to 1 MiB, then an anonymous temporary file), and
  the view reads the spool: no connection is taken until the whole body is here;
- the read has a deadline: REQUEST_BODY_TIMEOUT seconds, extended by one second for every
  REQUEST_BODY_MIN_RATE bytes received (a large upload at a fair rate finishes; a trickle does
  not). Past it the request is answered 408 (problem+json) and its thread is free again.

A thread blocked in `recv` cannot time itself out, and a per-read socket timeout does not bound
a trickle (every byte restarts it), so one watchdog thread per process shuts the reading side
of an overdue connection (`shutdown(SHUT_RD)`): the blocked read returns at once, the answer
can still be written. Under gunicorn the connection's socket is `environ["gunicorn.socket"]`;
elsewhere (the test client) there is nothing to wait for and no deadline.

The buffering reverse proxy of the docker compose deployment (deploy/nginx.conf) receives whole
bodies before passing them on, so behind it these limits only ever meet the proxy.
"""

import os
import socket
import tempfile
import threading
import time

from flask import Request
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import LimitedStream

from registry.problems import Problem

READ_SIZE = 1 << 16
IN_MEMORY = 1 << 20  # a spooled body larger than this goes to an anonymous temporary file


class _Watch:
    """One body being read: its connection, its deadline, and whether the watchdog ended it."""

    __slots__ = ("sock", "deadline", "fired")

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline, self.fired = sock, deadline, False


class _Watchdog:
    """A thread that shuts the reading side of every connection whose body is overdue."""

    def __init__(self):
        self._condition = threading.Condition()
        self._watches: set[_Watch] = set()
        self._pid = None  # the thread of the process that started it (a fork has none)

    def watch(self, sock: socket.socket, deadline: float) -> _Watch:
        watch = _Watch(sock, deadline)
        with self._condition:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="request-body-watchdog", daemon=True).start()
            self._watches.add(watch)
            self._condition.notify()
        return watch

    def extend(self, watch: _Watch, deadline: float) -> None:
        with self._condition:  # a later deadline: the thread wakes at the old one and looks again
            watch.deadline = deadline

    def release(self, watch: _Watch) -> None:
        with self._condition:
            self._watches.discard(watch)

    def _run(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                for watch in [watch for watch in self._watches if watch.deadline <= now]:
                    self._watches.discard(watch)
                    watch.fired = True
                    try:
                        watch.sock.shutdown(socket.SHUT_RD)
                    except OSError:  # the client is gone already
                        pass
                earliest = min((watch.deadline for watch in self._watches), default=None)
                self._condition.wait(None if earliest is None else max(earliest - now, 0.01))


_watchdog = _Watchdog()


def read_whole_body(request: Request, timeout: float, min_rate: float) -> None:
    """Read the body into a spool that becomes `request.stream`; 408 past the deadline.

    The limit (`request.max_content_length`) is enforced as werkzeug does: a Content-Length
    over it is refused before reading, a chunked body when it passes it (413).
    """
    started = time.monotonic()
    sock = request.environ.get("gunicorn.socket")
    watch = _watchdog.watch(sock, started + timeout) if isinstance(sock, socket.socket) else None
    spool = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY)
    received = 0
    try:
        stream = request.stream
        while chunk := stream.read(READ_SIZE):
            spool.write(chunk)
            received += len(chunk)
            if watch is not None:
                _watchdog.extend(watch, started + timeout + received / min_rate)
        if request.content_length is None and isinstance(stream, LimitedStream) and stream.is_exhausted:
            stream.read(1)  # a chunked body at the maximum: werkzeug raises 413 if there is more
    except (HTTPException, OSError) as error:
        # a shut connection shows as a short body (werkzeug's 400) or a failed read (gunicorn's)
        spool.close()
        if watch is not None and watch.fired:
            raise _timed_out(timeout, min_rate) from None
        if isinstance(error, OSError):  # the client went away mid-body: no one will read the answer
            raise Problem(400, "The body ended before it was complete.", slug="malformed-request") from None
        raise
    finally:
        if watch is not None:
            _watchdog.release(watch)
    if watch is not None and watch.fired:  # it fired just as the last byte came: too late all the same
        spool.close()
        raise _timed_out(timeout, min_rate)
    spool.seek(0)
    request.stream = spool  # what the view reads (get_data, get_json, a bulk reader)


def _timed_out(timeout: float, min_rate: float) -> Problem:
    return Problem(408, f"The body did not arrive in time: {timeout:g} s, plus 1 s per {min_rate:g} bytes "
                        "received. Send it at once, or through the registry's reverse proxy.",
                   slug="request-timeout")
