"""Reports read from a replica, and say how current the figures are.

With REPORTS_DATABASE_URL pointed at a hot standby (streaming replication), a report runs there
in one read-only REPEATABLE READ transaction, and its first statement measures how far the
standby's replay is behind (`freshness`): the report then states the database it was read
from, `as_of` (the primary's time its figures are current to) and the replay lag.

A standby that cannot answer correctly is never used for the figures:
- further behind than REPORTS_MAX_LAG_SECONDS, or unable to say how far behind it is;
- unreachable (stopped, crashed, network), which also rests it for REPLICA_REST seconds so
  that reports do not each wait for a connection that will not come;
- a query cancelled by a recovery conflict (replay needed rows or a lock the report held).
In each case the report is read from the primary instead, the same way, and says so.

Why fall back rather than answer 503: the primary holds the truth and a report is a bounded
read (REPORT_TIMEOUT, the pool's size), so an analyst gets a correct, current figure instead of
an error while the replica is away; the replica exists to take load off the primary, not to be
the only place a report can come from. When the primary cannot answer either, the answer is
the usual 503 problem (`database-unavailable`).
"""

import logging
import time
from datetime import datetime, timezone
from typing import Callable, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from registry.db import Database, DatabaseUnavailable, database, reports_database

log = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds an unreachable replica is left alone before a report tries it again.
REPLICA_REST = 5.0
# Seconds a report waits for a replica connection (a dead server is not waited for as long as
# the primary would be, DB_POOL_TIMEOUT).
REPLICA_CONNECT_WAIT = 1.0

# On a standby:
# - received WAL all replayed while the WAL receiver runs: current as of now (up to what is in
#   flight on the network), lag 0;
# - otherwise as of the last transaction replayed (its commit time on the primary). With no WAL
#   receiver the standby cannot know what it is missing, so that time ages with the clock.
FRESHNESS = """
SELECT pg_is_in_recovery() AS in_recovery,
       clock_timestamp() AS now,
       pg_last_xact_replay_timestamp() AS replayed_at,
       pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() AS replayed_all_received,
       EXISTS (SELECT FROM pg_stat_wal_receiver WHERE pid IS NOT NULL) AS receiving
"""


class ReplicaBehind(Exception):
    """The replica is further behind than the configured bound (or cannot say how far)."""


def freshness(conn: psycopg.Connection) -> dict:
    """How current a report read on `conn` is.

    `{"database": "replica" | "primary", "as_of": datetime, "replay_lag_seconds": float | None}`;
    the lag is None when a standby cannot tell (it has replayed no transaction since it started).
    Run it as the first statement of the report's transaction: the snapshot is taken then.
    """
    row = conn.cursor(row_factory=dict_row).execute(FRESHNESS).fetchone()
    now: datetime = row["now"]
    if not row["in_recovery"]:
        return {"database": "primary", "as_of": now, "replay_lag_seconds": 0.0}
    if row["receiving"] and row["replayed_all_received"]:
        return {"database": "replica", "as_of": now, "replay_lag_seconds": 0.0}
    replayed_at: datetime | None = row["replayed_at"]
    if replayed_at is None:
        return {"database": "replica", "as_of": None, "replay_lag_seconds": None}
    lag = max((now - replayed_at).total_seconds(), 0.0)
    return {"database": "replica", "as_of": replayed_at, "replay_lag_seconds": round(lag, 3)}


def _read(db: Database, work: Callable[[psycopg.Connection], T], max_lag: float | None,
          timeout: float | None = None) -> tuple[T, dict]:
    with db.transaction(timeout=timeout) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        state = freshness(conn)
        if max_lag is not None and state["database"] == "replica":
            lag = state["replay_lag_seconds"]
            if lag is None or lag > max_lag:
                raise ReplicaBehind(f"replay lag {lag} s, over the bound of {max_lag:g} s")
        return work(conn), state


def _cannot_connect(error: DatabaseUnavailable) -> bool:
    """No connection to the server could be had (rather than one that broke, or a statement
    refused, as by a recovery conflict)."""
    return isinstance(error.__cause__, PoolTimeout)


def read_report(work: Callable[[psycopg.Connection], T], max_lag: float) -> tuple[T, dict]:
    """Run `work(conn)` in a read-only REPEATABLE READ transaction on the reports database, or
    on the primary when the reports database is a replica that cannot answer correctly (see the
    module docstring); return its result and the `freshness` of what it read.

    `work` must only read, and may be run twice (on the replica, then on the primary).
    """
    reports, main = reports_database(), database()
    if reports is not main and time.monotonic() >= reports.unavailable_until:
        try:
            return _read(reports, work, max_lag, timeout=REPLICA_CONNECT_WAIT)
        except ReplicaBehind as exc:
            log.warning("report read from the primary: the replica is behind (%s)", exc)
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            log.warning("report read from the primary: the replica is read-only (%s)", exc)
        except DatabaseUnavailable as exc:
            if _cannot_connect(exc):
                reports.unavailable_until = time.monotonic() + REPLICA_REST
            log.warning("report read from the primary: the replica cannot answer (%s)", exc)
    return _read(main, work, None)


def freshness_headers(state: dict) -> dict:
    """The answer's headers saying where a report was read and how current it is (every format:
    JSON, CSV, plots, FHIR)."""
    as_of = state["as_of"]
    return {
        "Report-Database": state["database"],
        "Report-As-Of": as_of.astimezone(timezone.utc).isoformat() if as_of else "unknown",
        "Report-Replay-Lag": "unknown" if state["replay_lag_seconds"] is None else f"{state['replay_lag_seconds']:g}",
    }
