"""The report maintainer: folds the writers' queued changes into the report aggregates.

Writers only append the operations they touched to `report_changes` (migration 0011). This
loop takes them in batches: `report_maintain()` refreshes the batch's operations set-based,
deletes exactly the queue rows it took and folds the log, all in one transaction, so a batch
is applied whole or not at all (a maintainer killed mid-way leaves its batch queued). It sleeps
briefly when there is nothing to do: polling, because LISTEN does not work through PgBouncer in
transaction pooling. Each batch is one statement in its own transaction, with no prepared
statements, so it runs through PgBouncer as well.

Safe to run twice at once: a batch holds the aggregates' compaction lock (tried, not waited
for), so a second maintainer finds it held and waits for its next turn; nothing is counted
twice. Reports never wait for it: they fold in whatever is still queued (registry.reports.store).

After a drain that took many changes it runs `VACUUM (ANALYZE) report_changes`: a queue
table that swings from a hundred thousand rows to none keeps the planner's last count of it
until analysed, and a report folding in ten queued operations then plans for a hundred
thousand and scans every operation (seconds instead of milliseconds). Autovacuum would get
there within a minute or so when it is on; the maintainer knows the moment the queue empties.

Started by `registry serve` beside gunicorn (a thread of the parent process), and runnable on
its own as `registry maintain-reports` (docker compose runs it so). When the database goes
away it logs the error (JSON, as the service does) and tries again, waiting a little longer
each time up to RETRY_MAX_SECONDS.
"""

import logging
import threading
import time
from dataclasses import dataclass

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

BATCH_SIZE = 5000           # queued changes per transaction (REPORT_MAINTAINER_BATCH)
POLL_SECONDS = 0.5          # sleep when the queue is empty (REPORT_MAINTAINER_POLL_SECONDS)
RETRY_MIN_SECONDS = 0.5     # after a database error, doubling ...
RETRY_MAX_SECONDS = 10.0    # ... up to this
CONNECT_TIMEOUT = 5
VACUUM_AFTER = 10_000       # changes taken before the drained queue is vacuumed and analysed


@dataclass
class Batch:
    changes: int      # queue rows taken (and deleted)
    operations: int   # distinct operations refreshed
    logged: int       # signed log rows written
    folded: int       # log rows folded into the tallies


BACKLOG = """
SELECT count(*) AS changes, count(DISTINCT (centre_id, operation_id)) AS operations,
       coalesce(extract(epoch FROM clock_timestamp() - min(queued_at)), 0)::float8 AS oldest_seconds
FROM report_changes
"""


def backlog(conn) -> dict:
    """What the maintainer has not reached yet: queued changes, the operations they name, and
    the age in seconds of the oldest (0 when none)."""
    row = conn.execute(BACKLOG).fetchone()
    if isinstance(row, dict):
        return dict(row)
    return {"changes": row[0], "operations": row[1], "oldest_seconds": row[2]}


def backlog_exposition(conn) -> bytes:
    """The backlog as Prometheus gauges (read from the database at each scrape, so every
    worker, and any app host, reports the same figures)."""
    figures = backlog(conn)

    class Backlog:
        def collect(self):
            yield GaugeMetricFamily("registry_report_backlog_operations",
                                    "Operations with changes the report maintainer has not folded in yet",
                                    value=figures["operations"])
            yield GaugeMetricFamily("registry_report_backlog_changes",
                                    "Queued changes (rows of report_changes) not folded in yet",
                                    value=figures["changes"])
            yield GaugeMetricFamily("registry_report_backlog_oldest_seconds",
                                    "Age of the oldest queued change, 0 when none",
                                    value=figures["oldest_seconds"])

    registry = CollectorRegistry()
    registry.register(Backlog())
    return generate_latest(registry)


class Maintainer:
    """Runs batches on one connection of its own until stopped."""

    def __init__(self, database_url: str, batch_size: int = BATCH_SIZE, poll_seconds: float = POLL_SECONDS,
                 vacuum_after: int = VACUUM_AFTER):
        self.database_url = database_url
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.vacuum_after = vacuum_after
        self.taken_since_vacuum = 0
        self.stopping = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._after = (0, 0)  # where the last batch stopped in the queue's key order

    def stop(self) -> None:
        self.stopping.set()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            # autocommit: each batch is one statement, its own transaction (PgBouncer-friendly)
            self._conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                         prepare_threshold=None, application_name="registry-report-maintainer")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run_batch(self) -> Batch:
        """One batch, committed; raises psycopg errors (the caller retries)."""
        row = self._connection().execute("SELECT * FROM report_maintain(%s, %s, %s)",
                                         (self.batch_size, *self._after)).fetchone()
        changes, operations, logged, folded, last_centre, last_id = row
        self._after = (last_centre, last_id)
        self.taken_since_vacuum += changes
        return Batch(changes, operations, logged, folded)

    def tidy_queue(self) -> bool:
        """Once the queue is drained after `vacuum_after` changes or more: vacuum and analyse it,
        so reports plan for the few rows it now holds (see the module docstring). SKIP_LOCKED:
        a second maintainer already doing it is enough. True when it ran."""
        if self.taken_since_vacuum < self.vacuum_after:
            return False
        self._connection().execute("VACUUM (ANALYZE, SKIP_LOCKED) report_changes")
        self.taken_since_vacuum = 0
        return True

    def drain(self) -> int:
        """Run batches until the queue is empty (or another maintainer holds the lock); the
        number of queued changes taken."""
        taken = 0
        while True:
            batch = self.run_batch()
            taken += batch.changes
            if batch.changes == 0:
                self.tidy_queue()
                return taken

    def run(self) -> None:
        """Until stop(): batches while there is work, a short sleep when there is none, and a
        longer one (logged) while the database cannot be reached or refuses."""
        log.info("report maintainer started", extra={"batch_size": self.batch_size,
                                                     "poll_seconds": self.poll_seconds})
        retry = RETRY_MIN_SECONDS
        failing = False
        while not self.stopping.is_set():
            try:
                started = time.perf_counter()
                batch = self.run_batch()
                tidied = batch.changes == 0 and self.tidy_queue()
            except psycopg.Error as exc:
                self.close()
                log.warning("report maintainer: database error, retrying", extra={
                    "error": f"{type(exc).__name__}: {exc}".strip(), "retry_in_seconds": retry})
                failing = True
                self.stopping.wait(retry)
                retry = min(retry * 2, RETRY_MAX_SECONDS)
                continue
            if failing:
                log.info("report maintainer: database reachable again")
                failing = False
            retry = RETRY_MIN_SECONDS
            if batch.changes:
                log.debug("report maintainer batch", extra={
                    "changes": batch.changes, "operations": batch.operations, "logged": batch.logged,
                    "folded": batch.folded, "duration_ms": round((time.perf_counter() - started) * 1000, 1)})
            else:
                if tidied:
                    log.debug("report maintainer: drained queue vacuumed and analysed")
                self.stopping.wait(self.poll_seconds)
        self.close()
        log.info("report maintainer stopped")


def start_thread(database_url: str, batch_size: int = BATCH_SIZE,
                 poll_seconds: float = POLL_SECONDS) -> tuple[Maintainer, threading.Thread]:
    """A maintainer running in a daemon thread (`registry serve`); stop it with .stop() and join."""
    maintainer = Maintainer(database_url, batch_size, poll_seconds)
    thread = threading.Thread(target=maintainer.run, name="report-maintainer", daemon=True)
    thread.start()
    return maintainer, thread
