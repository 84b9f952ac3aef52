"""Database access: one connection pool per worker process, one transaction per unit of work.

The pool is created closed and opened on first use, which under gunicorn is inside the worker
after fork (a pool must never cross a fork). A connection idle for a while is tested before it
is handed out, so after a PostgreSQL restart the dead connections are replaced rather than
failing requests; while the server is down, callers wait at most `pool_timeout` and get
`DatabaseUnavailable`. Reconnection attempts give up after RECONNECT_TIMEOUT, so the pool is
serving again about a second after the server's return however long it was away.

Round trips to the server are most of a single-record write's cost (each is a few hundred
microseconds of CPU on the two sides), so a write view may run its request transaction in
pipeline mode (`@pipelined`): statements whose results it does not read (audit entries, child
rows, the idempotency answer) travel with the next one it does read, or with the COMMIT.

Nothing here keeps session state between transactions (no SET, no temp tables, no LISTEN, no
advisory locks held across requests: settings are SET LOCAL, locks pg_advisory_xact_lock), so the
service runs behind PgBouncer in transaction mode, which tests/cluster/ checks on a real one.
There set DB_PREPARE_THRESHOLD=-1 unless the pooler carries prepared statements (PgBouncer 1.21+
with max_prepared_statements > 0): psycopg would prepare a statement on one server connection and
run it on another. See docs/scale-out.md.
"""

import threading
import time
import weakref
from contextlib import contextmanager
from typing import Iterator

import psycopg
from flask import current_app, g, has_request_context
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from registry.config import Settings


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached right now; the request may be retried later."""


# psycopg_pool retries a failed connection with exponential backoff (1, 2, 4, 8 s ...) for
# `reconnect_timeout`, 5 minutes by default, and starts no other attempt meanwhile: after an
# outage of a minute the next attempt could come a minute after the server was back, all
# requests answering 503 until then. Giving up after 2 s (attempts at 0, 1 and 2 s) caps
# that gap at about a second; the next request that finds no connection starts a fresh
# attempt at once.
RECONNECT_TIMEOUT = 2.0

# A connection back in the pool for less than this is handed out again untested: testing costs
# a round trip per request, and a server restart takes longer than this, so a connection that
# predates one is always tested.
CHECK_WHEN_IDLE_FOR = 1.0


class _CheckWhenIdle:
    """Pool callbacks: note when a connection comes back; test it only after CHECK_WHEN_IDLE_FOR."""

    def __init__(self):
        self._returned_at = weakref.WeakKeyDictionary()

    def returned(self, conn: psycopg.Connection) -> None:
        self._returned_at[conn] = time.monotonic()

    def check(self, conn: psycopg.Connection) -> None:
        returned_at = self._returned_at.get(conn)
        if returned_at is None or time.monotonic() - returned_at >= CHECK_WHEN_IDLE_FOR:
            ConnectionPool.check_connection(conn)


@contextmanager
def batched(conn: psycopg.Connection) -> Iterator[None]:
    """Send the block's statements in one round trip: a pipeline, unless one is running already
    (leaving a nested pipeline would cost a round trip of its own)."""
    if conn.pgconn.pipeline_status:
        yield
    else:
        with conn.pipeline():
            yield


def pipelined(view):
    """Mark a write view whose request transaction runs in pipeline mode (see module docstring).

    Only for views that use no COPY (not allowed in pipeline mode) and catch no error of a
    particular statement: in pipeline mode an error surfaces when a later result is read.
    """
    view.pipelined = True
    return view


@contextmanager
def _explicit_transaction(conn: psycopg.Connection) -> Iterator[None]:
    """A transaction in pipeline mode whose BEGIN and COMMIT are queued like any statement: the
    BEGIN goes with the first statement whose result is read, the COMMIT with the pipeline's
    closing sync. psycopg's own BEGIN waits for its answer, and a commit() inside the pipeline
    syncs before the pipeline's exit syncs again: two round trips of the five a create took.

    The connection is in autocommit mode meanwhile (so psycopg sends no BEGIN of its own); it
    goes back to the pool out of it and idle, or closed (the pool then replaces it): a pooled
    connection left in autocommit would run the next request's statements outside a transaction.
    """
    conn.autocommit = True
    try:
        try:
            with conn.pipeline():
                conn.execute("BEGIN", prepare=False)
                yield
                conn.execute("COMMIT", prepare=False)
        except BaseException:
            if conn.pgconn.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                try:
                    conn.rollback()
                except psycopg.Error:
                    pass
            raise
    finally:
        if conn.pgconn.transaction_status == TransactionStatus.IDLE:
            conn.autocommit = False
        else:
            conn.close()


class Database:
    """A lazily opened connection pool and the transaction helper built on it."""

    def __init__(self, url: str, settings: Settings, name: str = "main"):
        self.url = url
        checks = _CheckWhenIdle()
        self.pool = ConnectionPool(
            url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            timeout=settings.pool_timeout,
            open=False,
            name=name,
            check=checks.check,
            reset=checks.returned,
            reconnect_timeout=RECONNECT_TIMEOUT,
            kwargs={
                "row_factory": dict_row,
                "prepare_threshold": settings.prepare_threshold,
                "connect_timeout": 3,
                "application_name": f"registry-{name}",
            },
        )
        self._open_lock = threading.Lock()
        self._opened = False
        # monotonic time before which a replica found unreachable is not tried (registry.replica)
        self.unavailable_until = 0.0

    def _ensure_open(self) -> None:
        if self._opened:
            return
        with self._open_lock:
            if not self._opened:
                self.pool.open(wait=False)
                self._opened = True

    def _request_connection(self) -> psycopg.Connection | None:
        """The connection of this request's shared transaction on this database, if one is open."""
        shared = g.get("request_transaction") if has_request_context() else None
        return shared[1] if shared is not None and shared[0] is self else None

    @contextmanager
    def transaction(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """A connection inside one transaction: committed when the block ends, rolled back on error.

        `timeout` bounds the wait for a connection (default: the pool's, DB_POOL_TIMEOUT).

        Inside `request_transaction()` every call joins the request's one transaction instead,
        so a wrapper (the idempotency record) commits or rolls back together with the view.
        """
        shared = self._request_connection()
        if shared is not None:
            yield shared
            return
        self._ensure_open()
        try:
            with self.pool.connection(timeout=timeout) as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseUnavailable("no database connection available") from exc
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(str(exc).splitlines()[0] if str(exc) else "database error") from exc

    @contextmanager
    def request_transaction(self, pipelined: bool = False) -> Iterator[psycopg.Connection]:
        """Make this request's `transaction()` calls share one transaction, committed at the end.

        Inside another `request_transaction()` of this database it joins that one. `pipelined`
        runs the transaction in pipeline mode, its COMMIT sent with the statements still queued.
        """
        shared = self._request_connection()
        if shared is not None:
            yield shared
            return
        with self.transaction() as conn:
            g.request_transaction = (self, conn)
            try:
                if pipelined:
                    with _explicit_transaction(conn):
                        yield conn
                else:
                    yield conn
            finally:
                g.pop("request_transaction", None)

    def close(self) -> None:
        if self._opened:
            self.pool.close()
            self._opened = False


def init_app(app, database_url: str, reports_database_url: str | None, settings: Settings) -> None:
    main = Database(database_url, settings, "main")
    app.extensions["database"] = main
    # Reports may read from a replica; without one they share the main pool.
    app.extensions["reports_database"] = (
        Database(reports_database_url, settings, "reports") if reports_database_url else main
    )


def database() -> Database:
    """The main (read-write) database of the current app."""
    return current_app.extensions["database"]


def reports_database() -> Database:
    """The database reports read from: REPORTS_DATABASE_URL, or the main one."""
    return current_app.extensions["reports_database"]
