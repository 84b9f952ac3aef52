"""The report maintainer as an operator runs it: `registry maintain-reports` processes, killed
mid-batch and restarted, two at once, a database that goes away, `registry serve` starting one
beside gunicorn, the backlog on /metrics, and migration 0011 up and down on a populated database."""

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time

import psycopg
from psycopg.rows import dict_row

from registry import migrate, observability, serving
from registry.reports.maintainer import Maintainer
from tests.conftest import TEST_SECRET, make_settings
from tests.records.helpers import seed_case
from tests.reports import dataset
from tests.reports.maintenance import fold_queued, queued
from tests.reports.test_maintained_aggregates import (
    assert_maintained_exact, assert_reports_exact, mutate, run_writers, snapshot_mismatches)

WAIT = 60  # seconds: a deadline for what must happen, never a measure of speed


def wait_for(condition, what: str):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def start_cli_maintainer(database_url, *options) -> subprocess.Popen:
    environment = dict(os.environ, DATABASE_URL=database_url, REGISTRY_SECRET=TEST_SECRET.decode(),
                       REGISTRY_ENV="development", LOG_LEVEL="DEBUG")
    return subprocess.Popen([sys.executable, "-c", "from registry.cli import main; main()", "maintain-reports",
                             *options], env=environment, stderr=subprocess.PIPE, text=True)


def maintainer_backends(db) -> list:
    return db.execute("SELECT pid, wait_event_type FROM pg_stat_activity"
                      " WHERE application_name = 'registry-report-maintainer' AND datname = current_database()"
                      ).fetchall()


def test_a_maintainer_killed_mid_batch_leaves_its_batch_queued_and_a_restarted_one_folds_it(
        db, client, tokens, registry, database_url):
    fold_queued(db)
    mutate(db, random.Random(21), registry, 40)
    before = queued(db)
    stored = db.execute("SELECT * FROM report_operations ORDER BY 1, 2").fetchall()
    # hold one queued operation's fact row: the maintainer's refresh stops there, mid-batch
    blocker = psycopg.connect(database_url)
    blocker.execute("SELECT 1 FROM report_operations r JOIN report_changes q USING (centre_id, operation_id)"
                    " LIMIT 1 FOR UPDATE OF r")
    process = start_cli_maintainer(database_url)
    try:
        wait_for(lambda: any(b["wait_event_type"] == "Lock" for b in maintainer_backends(db)),
                 "the maintainer to wait inside its batch")
        process.kill()
        process.wait()
        # its connection dropped too (the host gone): the server rolls the batch back
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                   " WHERE application_name = 'registry-report-maintainer' AND datname = current_database()")
        wait_for(lambda: not maintainer_backends(db), "the killed maintainer's session to end")
    finally:
        blocker.close()
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    assert queued(db) == before  # nothing half-done: the batch is whole or not at all
    assert db.execute("SELECT * FROM report_operations ORDER BY 1, 2").fetchall() == stored
    assert_reports_exact(db, client, tokens)

    restarted = start_cli_maintainer(database_url, "--poll-seconds", "0.05")
    try:
        wait_for(lambda: queued(db) == 0, "the restarted maintainer to fold the queue")
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=WAIT) == 0
        restarted.stderr.close()
    assert_reports_exact(db, client, tokens)
    assert_maintained_exact(db)


def test_two_maintainer_processes_beside_writers_count_nothing_twice(db, client, tokens, registry, database_url):
    processes = [start_cli_maintainer(database_url, "--batch-size", "5", "--poll-seconds", "0.02")
                 for _ in range(2)]
    errors = []

    def writer(seed):
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
            try:
                mutate(conn, random.Random(100 + seed), registry, 30)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                pass  # the client's retry; nothing half-done remains
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))

    try:
        run_writers(writer, 3)
        wait_for(lambda: queued(db) == 0, "the maintainers to fold the queue")
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=WAIT) for process in processes]
        logs = [process.stderr.read() for process in processes]
        for process in processes:
            process.stderr.close()
    assert errors == [] and codes == [0, 0]
    # both ran, logging one JSON object per line as the service does
    for log in logs:
        messages = [json.loads(line)["message"] for line in log.splitlines() if line.startswith("{")]
        assert "report maintainer started" in messages and "report maintainer stopped" in messages
    assert_reports_exact(db, client, tokens)
    assert_maintained_exact(db)


def queue_estimate(db) -> float:
    """The planner's count of the queue, as a report folding it in plans with."""
    return db.execute("EXPLAIN (FORMAT JSON) SELECT centre_id, operation_id FROM report_changes"
                      ).fetchone()["QUERY PLAN"][0]["Plan"]["Plan Rows"]


def test_a_drained_queue_is_analysed_so_reports_plan_for_the_few_rows_left(db, registry, database_url):
    # a big batch queued (as a bulk submission leaves it), the planner told of it
    db.execute("INSERT INTO report_changes (centre_id, operation_id)"
               " SELECT centre_id, id FROM operations CROSS JOIN generate_series(1, 15)")
    db.execute("ANALYZE report_changes")
    assert queue_estimate(db) > 2000
    maintainer = Maintainer(database_url, batch_size=500, vacuum_after=1000)
    try:
        assert maintainer.drain() > 2000
    finally:
        maintainer.close()
    # then a few writes: with autovacuum off (as on the test server) the planner would still
    # count the big batch, and a report would scan every operation to fold in three
    db.execute("INSERT INTO report_changes (centre_id, operation_id) SELECT centre_id, id FROM operations LIMIT 3")
    assert queue_estimate(db) < 200  # the planner's guess for one page, not the 2,400 of the batch


def test_a_maintainer_batch_is_never_jit_compiled(db, registry):
    """JIT compiling the facts view's expressions cost seconds a batch (migration 0016). The
    functions carry `jit = off`, which the server applies to every statement they run, whoever
    calls them and through PgBouncer too. (Checked as the setting: the embedded server has no
    JIT and no auto_explain to show a plan with.)"""
    rows = db.execute("SELECT p.oid::regprocedure::text AS function, p.proconfig AS config FROM pg_proc p"
                      " WHERE p.proname IN ('report_maintain', 'report_forget_erased')").fetchall()
    settings = {row["function"]: row["config"] for row in rows}
    assert settings == {"report_maintain(integer,bigint,bigint)": ["jit=off"],
                        "report_forget_erased(bigint)": ["jit=off"]}
    # and a batch run with JIT on for the session still folds the queue
    db.execute("INSERT INTO report_changes (centre_id, operation_id) SELECT centre_id, id FROM operations")
    db.execute("SET jit = on")
    assert fold_queued(db) > 0 and queued(db) == 0
    assert_maintained_exact(db)


def test_the_maintainer_waits_out_a_database_that_went_away(db, registry, database_url, caplog):
    fold_queued(db)
    maintainer = Maintainer("postgresql://postgres@127.0.0.1:1/registry", poll_seconds=0.02)
    thread = threading.Thread(target=maintainer.run)
    with caplog.at_level(logging.INFO, logger="registry.reports.maintainer"):
        thread.start()
        try:
            wait_for(lambda: sum(r.message.startswith("report maintainer: database error") for r in caplog.records) >= 2,
                     "two failed attempts")
            db.execute("UPDATE operations SET blood_loss_ml = 123 WHERE (centre_id, id) ="
                       " (SELECT centre_id, id FROM operations ORDER BY centre_id, id LIMIT 1)")
            assert queued(db) == 1
            maintainer.database_url = database_url  # the database is back
            wait_for(lambda: queued(db) == 0, "the maintainer to fold the queue once the database is back")
        finally:
            maintainer.stop()
            thread.join()
    failure = next(r for r in caplog.records if r.message.startswith("report maintainer: database error"))
    assert "OperationalError" in failure.error and failure.retry_in_seconds > 0
    assert any(r.message == "report maintainer: database reachable again" for r in caplog.records)
    assert_maintained_exact(db)


def test_registry_serve_runs_a_maintainer_beside_gunicorn_and_stops_it_with_gunicorn(
        db, registry, database_url, monkeypatch, tmp_path):
    class Gunicorn:
        """Stands in for the gunicorn child: it 'serves' until the maintainer has folded the queue."""

        def __init__(self, *args, **kwargs):
            pass

        def wait(self):
            wait_for(lambda: queued(db) == 0, "the maintainer beside gunicorn to fold the queue")
            return 0

        def send_signal(self, signum):
            pass

    assert queued(db) > 0
    monkeypatch.setattr(serving.subprocess, "Popen", Gunicorn)
    monkeypatch.setattr(serving.signal, "signal", lambda *args: None)
    monkeypatch.setattr(observability, "configure_logging", lambda level: None)
    settings = make_settings(data_dir=tmp_path)
    code = serving.serve(settings, database_url, bind="127.0.0.1:0", workers=1, threads=1,
                         maintainer={"batch_size": 50, "poll_seconds": 0.02})
    assert code == 0
    assert not [t for t in threading.enumerate() if t.name == "report-maintainer"]
    # stopped with gunicorn, its connection closed (the server ends the backend a moment after)
    wait_for(lambda: maintainer_backends(db) == [], "the maintainer's connection to close")
    assert_maintained_exact(db)


def test_metrics_show_the_backlog_and_readiness_ignores_it(client, tokens, db):
    headers = {**tokens.header("submitter_a"), "Idempotency-Key": "backlog-1"}
    assert client.post("/v1/operations/", json=seed_case(), headers=headers).status_code == 201
    text = client.get("/metrics", headers=tokens.header("metrics")).get_data(as_text=True)
    gauges = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("registry_report_backlog_")}
    assert gauges["registry_report_backlog_operations"] == 1
    assert gauges["registry_report_backlog_changes"] >= 1
    assert gauges["registry_report_backlog_oldest_seconds"] >= 0
    assert client.get("/readyz").status_code == 200
    fold_queued(db)
    text = client.get("/metrics", headers=tokens.header("metrics")).get_data(as_text=True)
    assert "registry_report_backlog_operations 0.0" in text
    assert "registry_report_backlog_oldest_seconds 0.0" in text


def fill(url, seed):
    with psycopg.connect(url, row_factory=dict_row) as conn:
        ids = [conn.execute("INSERT INTO centres (code, name) VALUES (%s, %s) RETURNING id",
                            (f"M-{seed}-{n}", f"Centre {n}")).fetchone()["id"] for n in range(2)]
        dataset.generate(conn, ids, seed=seed, operations=60)
        return ids


def test_migration_0011_up_and_down_on_a_populated_database(empty_database_url):
    migrate.upgrade(empty_database_url, "0010")
    fill(empty_database_url, 1)
    migrate.upgrade(empty_database_url, "0011")
    with psycopg.connect(empty_database_url, autocommit=True, row_factory=dict_row) as conn:
        assert queued(conn) == 0  # the commit-time refresh had kept every aggregate exact
        ids = fill(empty_database_url, 2)
        mutate(conn, random.Random(4), ids, 30)
        assert queued(conn) > 0
        for dim in ("approach", "centre", "procedure"):
            assert snapshot_mismatches(empty_database_url, dim, 0) == []

    migrate.downgrade(empty_database_url, "0010")  # folds what is queued first
    with psycopg.connect(empty_database_url, autocommit=True, row_factory=dict_row) as conn:
        assert conn.execute("SELECT to_regclass('report_changes') AS t").fetchone()["t"] is None
        # writers refresh at commit again
        operation = conn.execute("SELECT centre_id, id FROM operations ORDER BY id LIMIT 1").fetchone()
        conn.execute("UPDATE operations SET blood_loss_ml = 4321 WHERE centre_id = %s AND id = %s",
                     (operation["centre_id"], operation["id"]))
        assert conn.execute("SELECT blood_loss_ml FROM report_operations WHERE centre_id = %s AND operation_id = %s",
                            (operation["centre_id"], operation["id"])).fetchone()["blood_loss_ml"] == 4321
        assert conn.execute("SELECT * FROM report_operations ORDER BY 1, 2").fetchall() == \
            conn.execute("SELECT * FROM report_operation_facts ORDER BY 1, 2").fetchall()
        conn.execute("SELECT report_compact()")
        tallies = conn.execute("SELECT * FROM report_tallies WHERE operations <> 0 ORDER BY 1, 2, 3").fetchall()
        conn.execute("SELECT report_rebuild()")
        assert conn.execute("SELECT * FROM report_tallies ORDER BY 1, 2, 3").fetchall() == tallies

    migrate.upgrade(empty_database_url)
    with psycopg.connect(empty_database_url, autocommit=True, row_factory=dict_row) as conn:
        mutate(conn, random.Random(8), ids, 10)
        assert queued(conn) > 0
        assert snapshot_mismatches(empty_database_url, "region", 0) == []
        fold_queued(conn)
        assert_maintained_exact(conn)


def test_the_live_measures_have_the_stored_measures_columns(db):
    """report_live_measures is the measures view over the facts view: same columns, same types
    (a migration that changes one must recreate the other)."""
    columns = """SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute
                 WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum"""
    assert db.execute(columns, ("report_live_measures",)).fetchall() == \
        db.execute(columns, ("report_operation_measures",)).fetchall()
