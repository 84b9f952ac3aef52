"""Database access: one connection pool per worker process, one transaction per unit of work.

The pool is created closed and opened on first use, which under gunicorn is inside the worker
after fork (a pool must never cross a fork). `check=` tests a connection before handing it out,
so after a PostgreSQL restart the dead connections are replaced rather than failing requests;
while the server is down, callers wait at most `pool_timeout` and get `DatabaseUnavailable`.
Reconnection attempts give up after RECONNECT_TIMEOUT, so the pool is serving again about a
second after the server's return however long it was away.

Nothing here keeps session state between transactions (no SET, no temp tables, no advisory
locks held across requests), so the service runs behind PgBouncer in transaction mode; set
DB_PREPARE_THRESHOLD=-1 there if the pooler cannot carry prepared statements.
"""

import threading
from contextlib import contextmanager
from typing import Iterator

import psycopg
from flask import current_app, g, has_request_context
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


class Database:
    """A lazily opened connection pool and the transaction helper built on it."""

    def __init__(self, url: str, settings: Settings, name: str = "main"):
        self.url = url
        self.pool = ConnectionPool(
            url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            timeout=settings.pool_timeout,
            open=False,
            name=name,
            check=ConnectionPool.check_connection,
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
    def request_transaction(self) -> Iterator[psycopg.Connection]:
        """Make this request's `transaction()` calls share one transaction, committed at the end.

        Inside another `request_transaction()` of this database it joins that one.
        """
        shared = self._request_connection()
        if shared is not None:
            yield shared
            return
        with self.transaction() as conn:
            g.request_transaction = (self, conn)
            try:
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
