"""One cluster for the whole session: a primary, a streaming hot standby, PgBouncer in front.

The cluster is made once (about two seconds) and torn down at the end of the session, failed or
not. Each module gets its own database on it, migrated through PgBouncer. Every test here needs
PgBouncer: mark it `needs_pgbouncer` (without PgBouncer it is reported NOT RUN).
"""

import atexit
import time
import uuid

import psycopg
import pytest
from psycopg import sql

from registry import create_app, migrate
from tests.cluster.harness import Cluster
from tests.conftest import Tokens, make_settings
from tests.system_packages import pgbouncer_executable

# PgBouncer 1.21+ carries protocol-level prepared statements (max_prepared_statements); older
# ones need them off. The cluster tests run every mode the installed PgBouncer supports.
PREPARED_STATEMENTS_OFF = -1


@pytest.fixture(scope="session")
def cluster():
    cluster = Cluster(pgbouncer_executable(), pool_size=6)
    atexit.register(cluster.stop)  # even if the session is interrupted before its teardown
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def prepare_thresholds(cluster) -> list[int]:
    """DB_PREPARE_THRESHOLD values the installed PgBouncer can carry: -1 always, 5 on 1.21+."""
    return [PREPARED_STATEMENTS_OFF] + ([5] if cluster.pgbouncer.supports_prepared_statements else [])


def create_database(cluster) -> str:
    name = f"registry_cluster_{uuid.uuid4().hex[:10]}"
    cluster.primary.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)).as_string())
    return name


@pytest.fixture(scope="module")
def cluster_database(cluster):
    """A database of this module's own, migrated to head, its name. Migrated on the primary
    directly: migrating through PgBouncer is a test of its own (test_through_pgbouncer.py)."""
    name = create_database(cluster)
    migrate.upgrade(cluster.primary.url(name))
    yield name
    cluster.primary.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(name)).as_string())


@pytest.fixture(scope="module")
def cluster_tokens(cluster, cluster_database):
    with psycopg.connect(cluster.primary.url(cluster_database), autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        return Tokens(conn)


def cluster_settings(cluster, dbname: str, **overrides):
    """The service's settings for the three-tier setup: writes through PgBouncer with prepared
    statements off, reports on the standby."""
    values = {"prepare_threshold": None, "reports_database_url": cluster.standby.url(dbname)}
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture(scope="module")
def cluster_app(cluster, cluster_database):
    """The registry in this process, through PgBouncer, reports on the standby."""
    app = create_app(cluster_settings(cluster, cluster_database), cluster.pgbouncer.url(cluster_database))
    app.config["TESTING"] = True
    yield app
    app.extensions["database"].close()
    app.extensions["reports_database"].close()


# --- session state left on PgBouncer's server connections -----------------------------------

# Settings a client may carry in its startup packet (PgBouncer passes these on and tracks them)
STARTUP_PARAMETERS = {"application_name", "client_encoding", "DateStyle", "TimeZone",
                      "standard_conforming_strings", "IntervalStyle", "extra_float_digits"}

PER_SESSION_STATE = """
SELECT pg_backend_pid() AS pid,
       array(SELECT name FROM pg_settings WHERE source = 'session'
             -- after a SET TRANSACTION, PostgreSQL shows these as set by the session in every later
             -- transaction though each transaction starts from the defaults: a leak only if not those
             AND NOT (name = 'transaction_isolation' AND setting = current_setting('default_transaction_isolation'))
             AND NOT (name = 'transaction_read_only' AND setting = current_setting('default_transaction_read_only'))
             AND NOT (name = 'transaction_deferrable'
                      AND setting = current_setting('default_transaction_deferrable'))) AS settings,
       array(SELECT name FROM pg_prepared_statements) AS prepared_statements,
       array(SELECT channel FROM pg_listening_channels() AS channel) AS listening,
       array(SELECT name FROM pg_cursors) AS cursors,
       array(SELECT relname::text FROM pg_class WHERE relnamespace = pg_my_temp_schema()) AS temp_tables
"""


def _idle_servers(cluster, dbname: str) -> int:
    return sum(row["sv_idle"] + row["sv_used"] for row in cluster.pgbouncer.show("POOLS") if row["database"] == dbname)


def session_state_leaks(cluster, dbname: str) -> list[str]:
    """What any of PgBouncer's server connections to `dbname` still carries from an earlier
    client's transaction: session settings, prepared statements, LISTEN, cursors, temp tables,
    advisory locks. Empty when nothing leaks.

    As many clients as the pool has server connections each open a transaction at once, so every
    existing server connection is visited (PgBouncer hands out idle ones before opening more).
    """
    leaks = []
    with psycopg.connect(cluster.primary.url(dbname), autocommit=True) as direct:
        for pid, kind, objid in direct.execute(
                "SELECT pid, 'advisory lock', objid FROM pg_locks JOIN pg_database d ON d.oid = database"
                " WHERE locktype = 'advisory' AND d.datname = %s", (dbname,)):
            leaks.append(f"backend {pid}: {kind} {objid}")
    # A transaction still in flight (a request thread of the test finishing) holds its server
    # connection: the check's clients would queue for it. Wait until every server is idle.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        busy = [row for row in cluster.pgbouncer.show("POOLS") if row["database"] == dbname
                and (row["sv_active"] or row["cl_waiting"])]
        if not busy:
            break
        time.sleep(0.1)
    servers = [row for row in cluster.pgbouncer.show("SERVERS") if row["database"] == dbname]
    clients = [psycopg.connect(cluster.pgbouncer.url(dbname), prepare_threshold=None,
                               row_factory=psycopg.rows.dict_row) for _ in range(max(len(servers), 1))]
    try:
        for client in clients:  # each holds its server connection until the end of its transaction
            if not _idle_servers(cluster, dbname):
                break  # the rest are held by a live transaction: asking would queue until query_wait_timeout
            state = client.execute(PER_SESSION_STATE).fetchone()
            settings = [name for name in state["settings"] if name not in STARTUP_PARAMETERS]
            for kind in ("prepared_statements", "listening", "cursors", "temp_tables"):
                if state[kind]:
                    leaks.append(f"backend {state['pid']}: {kind} {state[kind]}")
            if settings:
                leaks.append(f"backend {state['pid']}: settings {settings}")
    finally:
        for client in clients:
            client.rollback()  # closing inside a transaction would make PgBouncer drop the server connection
            client.close()
    return leaks
