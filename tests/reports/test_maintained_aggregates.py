"""Reports stay exactly equal to a recomputation from the base tables after any mix of inserts,
updates, deletes and consent changes, whether the report maintainer has folded them or not
(stopped, taking batches between the writes, or running beside several writers), and the
maintained aggregates equal a rebuild from scratch once it has caught up."""

import datetime as dt
import random
import threading

import psycopg

from registry.reports import store
from registry.reports.maintainer import Maintainer
from tests.reports import dataset
from tests.reports.conftest import assert_same
from tests.reports.maintenance import fold_queued, queued

DIMENSIONS = ["approach", "region", "procedure", "diagnosis", "indication", "instrumented", "levels", "year",
              "centre"]


def mutate(conn, rng, centre_ids, steps):
    """Random writes, each its own transaction (some of several statements)."""
    for step in range(steps):
        action = rng.randrange(12)
        with conn.transaction():
            # locked against deletion by another writer until this write commits (a writer that
            # picked an operation being deleted gets none, and creates one instead)
            operation = conn.execute("SELECT centre_id, id, operation_date FROM operations"
                                     " ORDER BY random() LIMIT 1 FOR KEY SHARE").fetchone()
            if action == 0 or operation is None:
                centre = rng.choice(centre_ids)
                patient = dataset.add_patient(conn, rng, centre)
                dataset.add_operation(conn, rng, centre, patient, f"m{rng.random()}")
            elif action == 1:
                conn.execute("UPDATE operations SET approach = %s, blood_loss_ml = %s, duration_min = %s"
                             " WHERE centre_id = %s AND id = %s",
                             (rng.choice(dataset.APPROACHES), rng.choice([None, 10, 300, 700]),
                              rng.choice([None, 60, 95]), operation["centre_id"], operation["id"]))
            elif action == 2:
                conn.execute("UPDATE operations SET procedures = %s, region = %s, instrumented = NOT instrumented"
                             " WHERE centre_id = %s AND id = %s",
                             (sorted(set(rng.sample(dataset.PROCEDURES, 2))), rng.choice(dataset.REGIONS),
                              operation["centre_id"], operation["id"]))
            elif action == 3:
                conn.execute("DELETE FROM operations WHERE centre_id = %s AND id = %s",
                             (operation["centre_id"], operation["id"]))
            elif action == 4:
                conn.execute("UPDATE patients SET consent = CASE consent WHEN 'active' THEN 'withdrawn' ELSE 'active' END"
                             " WHERE (centre_id, id) = (SELECT centre_id, patient_id FROM operations"
                             " WHERE centre_id = %s AND id = %s)", (operation["centre_id"], operation["id"]))
            elif action == 5:
                conn.execute("UPDATE patients SET diagnosis = %s WHERE (centre_id, id) = (SELECT centre_id, patient_id"
                             " FROM operations WHERE centre_id = %s AND id = %s)",
                             (rng.choice(dataset.DIAGNOSES), operation["centre_id"], operation["id"]))
            elif action == 6:
                dataset.add_follow_up(conn, rng, operation["centre_id"], operation["id"], operation["operation_date"])
                conn.execute("UPDATE follow_ups SET fusion_status = %s, joa = %s WHERE centre_id = %s AND operation_id = %s",
                             (rng.choice(dataset.FUSION), rng.choice([None, 12.5, 16]),
                              operation["centre_id"], operation["id"]))
            elif action == 7:
                conn.execute("DELETE FROM follow_ups WHERE id = (SELECT min(id) FROM follow_ups WHERE centre_id = %s"
                             " AND operation_id = %s)", (operation["centre_id"], operation["id"]))
            elif action == 8:
                conn.execute("INSERT INTO intraop_events (centre_id, operation_id, position, type) VALUES (%s, %s, 9, %s)",
                             (operation["centre_id"], operation["id"], rng.choice(["dural_tear", "other", "wrong_level"])))
                conn.execute("DELETE FROM postop_complications WHERE centre_id = %s AND operation_id = %s",
                             (operation["centre_id"], operation["id"]))
            elif action == 9:
                conn.execute("INSERT INTO postop_complications (centre_id, operation_id, position, type, grade)"
                             " VALUES (%s, %s, 9, 'vte', %s)", (operation["centre_id"], operation["id"],
                                                                 rng.choice(dataset.GRADES)))
                conn.execute("DELETE FROM implants WHERE centre_id = %s AND operation_id = %s",
                             (operation["centre_id"], operation["id"]))
            elif action == 10:
                conn.execute("DELETE FROM patients WHERE (centre_id, id) = (SELECT centre_id, patient_id FROM operations"
                             " WHERE centre_id = %s AND id = %s)", (operation["centre_id"], operation["id"]))
            else:
                # the maintainer takes a batch in between (the rest stays queued)
                conn.execute("SELECT * FROM report_maintain(%s)", (rng.randrange(1, 30),))


def run_writers(writer, count: int) -> None:
    """writer(seed) in `count` threads at once, until all are done."""
    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def start_maintainers(database_url, count: int, batch_size: int = 7) -> list:
    """`count` maintainers running at once in threads (small batches: many turns)."""
    running = []
    for _ in range(count):
        maintainer = Maintainer(database_url, batch_size=batch_size, poll_seconds=0.01)
        thread = threading.Thread(target=maintainer.run)
        thread.start()
        running.append((maintainer, thread))
    return running


def stop_maintainers(running) -> None:
    for maintainer, _ in running:
        maintainer.stop()
    for _, thread in running:
        thread.join()


def assert_reports_exact(db, client, tokens):
    """Every report by every dimension, fast path and scan, equals the reference computed in
    Python from the raw records, whatever is still queued."""
    operations = dataset.load(db)
    for dim in DIMENSIONS:
        for report in ("complications", "fusion", "outcomes", "completeness"):
            expected = {key: dataset.REFERENCE[report](ops, count=dataset.perturbed)
                        for key, ops in dataset.published_groups(operations, [dim], dataset.perturbed).items()}
            # outcomes by a scan too (a filter that keeps every operation): the stored latest
            # scores are the one latest visit's on both paths (migration 0014)
            paths = {"fast": {}, **({"scan": {"date_from": "1900-01-01"}} if report == "outcomes" else {})}
            for method, query in paths.items():
                body = client.get(f"/v1/reports/{report}", query_string={"group_by": dim, **query},
                                  headers=tokens.header("analyst")).json
                assert body["method"] == method, (report, dim)
                got = {(g["group"][dim],): g for g in body["groups"]}
                assert set(got) == set(expected), (report, dim, method)
                for key, figures in expected.items():
                    assert_same(got[key], figures, f"{report} {dim}={key} ({method})")
                assert_same(body["total"],
                            dataset.REFERENCE[report](dataset.counted(operations), count=dataset.perturbed),
                            f"{report} total ({method})")
    assert_cell_keys_exact(db, operations)


def assert_maintained_exact(db):
    """Once the maintainer has caught up: the stored facts are the recomputed ones, nothing is
    queued or pending, and the tallies and histograms are what a rebuild from scratch gives."""
    assert queued(db) == 0
    facts = db.execute("SELECT * FROM report_operations ORDER BY centre_id, operation_id").fetchall()
    recomputed = db.execute("SELECT * FROM report_operation_facts ORDER BY centre_id, operation_id").fetchall()
    assert facts == recomputed
    assert db.execute("SELECT count(*) AS n FROM report_log").fetchone()["n"] == 0
    tallies = db.execute("SELECT * FROM report_tallies WHERE operations <> 0 ORDER BY 1, 2, 3").fetchall()
    histograms = db.execute("SELECT * FROM report_histograms WHERE n <> 0 ORDER BY 1, 2, 3, 4, 5, 6").fetchall()
    db.execute("SELECT report_rebuild()")
    assert db.execute("SELECT * FROM report_tallies ORDER BY 1, 2, 3").fetchall() == tallies
    assert db.execute("SELECT * FROM report_histograms ORDER BY 1, 2, 3, 4, 5, 6").fetchall() == histograms


# Which operations a few count measures count, computed from the raw records.
KEYED = {
    "operations": lambda o: True,
    "postop_complication": lambda o: bool(o["complications"]),
    "followed": lambda o: bool(o["follow_ups"]),
    "blood_loss_n": lambda o: o["blood_loss_ml"] is not None,
}


def assert_cell_keys_exact(db, operations):
    """The record-key sum of each count measure is the same by the fast and the scan path, and
    equals the sum of the record keys of the operations it counts."""
    measures = list(store.COUNT_MEASURES)
    for dim in DIMENSIONS:
        fast = store.fetch_cells(db, [dim], {}, measures, [])
        scan = store.fetch_cells(db, [dim], {"date_from": dt.date(1900, 1, 1)}, measures, [])
        assert store.uses_fast_path([dim], {}, measures)
        assert not store.uses_fast_path([dim], {"date_from": dt.date(1900, 1, 1)}, measures)
        for grouping in fast:
            assert {k: c.measures for k, c in fast[grouping].items()} == \
                   {k: c.measures for k, c in scan[grouping].items()}, (dim, grouping)
        centre_ids = {r["code"]: str(r["id"]) for r in db.execute("SELECT id, code FROM centres")}
        for (value,), ops in dataset.groups(operations, [dim]).items():
            # the store's group values: text, '' for not recorded, centres by id
            stored = ("" if value is None else str(value).lower() if isinstance(value, bool)
                      else centre_ids[value] if dim == "centre" else str(value))
            cell = fast[(dim,)][(stored,)]
            for measure, counts in KEYED.items():
                assert cell.measures[f"key_{measure}"] == sum(o["record_key"] for o in ops if counts(o)), \
                    (dim, value, measure)


# A report's cells recomputed from scratch: every operation's live facts (the base tables), in
# the caller's snapshot.
FROM_SCRATCH = """
SELECT d.dim, d.value, {sums} FROM report_live_measures m
CROSS JOIN LATERAL report_dimension_values(m.centre_id, m.approach, m.region, m.procedures, m.diagnosis,
    m.indication, m.instrumented, m.levels, m.year) d
WHERE m.counted AND d.dim = ANY(%(dims)s) AND (%(scope)s = 0 OR m.centre_id = %(scope)s)
GROUP BY d.dim, d.value
"""
FROM_SCRATCH_HISTOGRAMS = """
SELECT d.dim, d.value, h.metric, h.x, h.y, count(*) AS n FROM report_live_measures m
CROSS JOIN LATERAL report_dimension_values(m.centre_id, m.approach, m.region, m.procedures, m.diagnosis,
    m.indication, m.instrumented, m.levels, m.year) d
CROSS JOIN LATERAL report_metric_values(m.blood_loss_ml, m.duration_min, m.preop_joa, m.latest_joa,
    m.preop_mjoa, m.latest_mjoa) h
WHERE m.counted AND d.dim = ANY(%(dims)s) AND (%(scope)s = 0 OR m.centre_id = %(scope)s)
GROUP BY 1, 2, 3, 4, 5
"""
CHECKED_MEASURES = ["operations", "key_operations", "postop_complication", "key_postop_complication",
                    "blood_loss_sum", "joa_post_sum", "fusion_fused", "key_fusion_fused", "followed"]


def cells_from_scratch(conn, dim, scope=0) -> dict:
    params = {"dims": ["all", dim], "scope": scope}
    sums = ", ".join(f"sum(m.{name}) AS {name}" for name in CHECKED_MEASURES)
    cells = {}
    for row in conn.execute(FROM_SCRATCH.format(sums=sums), params):
        key = () if row["dim"] == "all" else (row["value"],)
        cells[key] = ({name: store._to_number(row[name]) for name in CHECKED_MEASURES}, {})
    for row in conn.execute(FROM_SCRATCH_HISTOGRAMS, params):
        key = () if row["dim"] == "all" else (row["value"],)
        cells[key][1].setdefault(row["metric"], []).append((row["x"], row["y"], row["n"]))
    return cells


def cells_of_report(conn, dim, filters) -> dict:
    measures = [m for m in CHECKED_MEASURES if not m.startswith("key_")]
    fetched = store.fetch_cells(conn, [dim], filters, measures, list(store.METRICS))
    return {key: ({name: cell.measures[name] for name in CHECKED_MEASURES}, cell.histograms)
            for grouping in fetched.values() for key, cell in grouping.items()}


def snapshot_mismatches(database_url, dim, scope) -> list:
    """The fast path, the scan and a recomputation from scratch, in one report snapshot: what differs."""
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        expected = cells_from_scratch(conn, dim, scope)
        centre = {"centre_ids": [scope]} if scope else {}
        fast = cells_of_report(conn, dim, centre)
        scan = cells_of_report(conn, dim, {**centre, "date_from": dt.date(1900, 1, 1)})
        conn.rollback()
    normal = {key: (measures, {metric: sorted(values) for metric, values in histograms.items()})
              for key, (measures, histograms) in expected.items()}
    mismatches = []
    for path, got in (("fast", fast), ("scan", scan)):
        got = {key: (measures, {metric: sorted(values) for metric, values in histograms.items()})
               for key, (measures, histograms) in got.items()}
        if got != normal:
            mismatches.append((path, dim, scope, {k for k in set(got) | set(normal) if got.get(k) != normal.get(k)}))
    return mismatches


def test_reports_are_exact_with_the_maintainer_stopped_then_caught_up(db, client, tokens, registry):
    rng = random.Random(7)
    mutate(db, rng, registry, 120)
    assert queued(db) > 0
    stale = db.execute("SELECT count(*) AS n FROM report_operations s FULL JOIN report_operation_facts f"
                       " USING (centre_id, operation_id) WHERE ROW(s.*) IS DISTINCT FROM ROW(f.*)").fetchone()["n"]
    assert stale > 0  # the stored facts are behind: the reports must fold the queue in
    assert_reports_exact(db, client, tokens)
    assert fold_queued(db) > 0
    assert_reports_exact(db, client, tokens)
    assert_maintained_exact(db)


def test_outcomes_take_both_latest_scores_from_one_visit_queued_or_maintained(db, client, tokens, registry):
    """JOA at a visit, then a later visit that recorded mJOA only: at the latest visit JOA was
    not recorded (the one visit decides), in the live facts, the stored ones and every report."""
    fold_queued(db)
    centre = registry[0]
    patient = dataset.add_patient(db, random.Random("one-visit"), centre)
    operation = db.execute(
        "INSERT INTO operations (centre_id, patient_id, local_ref, operation_date, region, approach, procedures,"
        " instrumented, preop_joa, preop_mjoa) VALUES (%s, %s, 'one-visit', '2020-03-01', 'cervical', 'posterior',"
        " '{laminoplasty}', false, 9, 10) RETURNING id", (centre, patient)).fetchone()["id"]
    db.execute("INSERT INTO follow_ups (centre_id, operation_id, follow_up_date, months_after, joa, mjoa)"
               " VALUES (%s, %s, '2020-09-01', 6, 13, 14), (%s, %s, '2022-03-01', 24, NULL, 16)",
               (centre, operation, centre, operation))
    latest = "SELECT latest_joa, latest_mjoa, joa_post_n, recovery_n, mjoa_post_n FROM {} " \
             "WHERE centre_id = %s AND operation_id = %s"
    one_visit = {"latest_joa": None, "latest_mjoa": 16, "joa_post_n": 0, "recovery_n": 0, "mjoa_post_n": 1}
    assert queued(db) > 0
    assert db.execute(latest.format("report_live_measures"), (centre, operation)).fetchone() == one_visit
    assert_reports_exact(db, client, tokens)   # the maintainer stopped: from the queue
    fold_queued(db)
    assert db.execute(latest.format("report_operation_measures"), (centre, operation)).fetchone() == one_visit
    assert_reports_exact(db, client, tokens)   # maintained: from the tallies
    assert_maintained_exact(db)


def test_reports_are_exact_when_nothing_was_ever_maintained(db, client, tokens, registry):
    """The registry's records all written since the maintainer last ran: every figure comes
    from the queue's correction, none from the tallies."""
    db.execute("SELECT report_rebuild()")
    db.execute("TRUNCATE report_changes")
    mutate(db, random.Random(5), registry, 40)
    mutate(db, random.Random(6), registry, 40)
    assert_reports_exact(db, client, tokens)
    fold_queued(db)
    assert_maintained_exact(db)


def test_rebuild_gives_the_maintained_aggregates(db, registry):
    mutate(db, random.Random(3), registry, 60)
    fold_queued(db)
    assert_maintained_exact(db)


def test_concurrent_writers_and_maintainers_keep_every_report_exact(db, client, tokens, registry, database_url):
    """Four writers and two maintainers at once; meanwhile, in one snapshot at a time, the fast
    path and the scan equal a recomputation from scratch."""
    errors, mismatches, snapshots, done = [], [], [], threading.Event()

    def writer(seed):
        rng = random.Random(seed)
        with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
            for _ in range(25):
                try:
                    mutate(conn, rng, registry, 1)
                except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                    pass  # the client's retry; nothing half-done remains
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(repr(exc))

    def reader():
        rng = random.Random(99)
        while not done.is_set():
            mismatches.extend(snapshot_mismatches(database_url, rng.choice(DIMENSIONS),
                                                  rng.choice([0, *registry])))
            snapshots.append(1)

    maintainers = start_maintainers(database_url, 2)
    reading = threading.Thread(target=reader)
    reading.start()
    try:
        run_writers(writer, 4)
    finally:
        done.set()
        reading.join()
        stop_maintainers(maintainers)
    assert errors == []
    assert mismatches == [] and snapshots
    assert_reports_exact(db, client, tokens)
    fold_queued(db)
    assert_maintained_exact(db)


def test_a_writer_only_queues_and_the_maintainer_refreshes_each_operation_once(db, registry, database_url):
    fold_queued(db)
    operation = db.execute("SELECT o.centre_id, o.id FROM operations o JOIN patients p"
                           " ON p.centre_id = o.centre_id AND p.id = o.patient_id WHERE p.consent = 'active'"
                           " LIMIT 1").fetchone()
    stored = db.execute("SELECT * FROM report_operations WHERE centre_id = %s AND operation_id = %s",
                        (operation["centre_id"], operation["id"])).fetchone()
    with db.transaction():
        for position in range(5):
            db.execute("INSERT INTO intraop_events (centre_id, operation_id, position, type) VALUES (%s, %s, %s, 'other')",
                       (operation["centre_id"], operation["id"], 20 + position))
    # the writer's commit wrote nothing to the aggregates: one queue row per statement
    assert db.execute("SELECT count(*) AS n FROM report_log").fetchone()["n"] == 0
    assert db.execute("SELECT * FROM report_operations WHERE centre_id = %s AND operation_id = %s",
                      (operation["centre_id"], operation["id"])).fetchone() == stored
    assert db.execute("SELECT centre_id, operation_id FROM report_changes").fetchall() == [
        {"centre_id": operation["centre_id"], "operation_id": operation["id"]}] * 5
    maintainer = Maintainer(database_url)
    batch = maintainer.run_batch()
    maintainer.close()
    assert (batch.changes, batch.operations) == (5, 1)
    assert batch.logged in (2, 0)  # -old, +new (none if 'other' was already among its events)
    assert batch.folded == batch.logged  # and folded in the same transaction
    assert queued(db) == 0


def test_many_writers_of_one_operation_beside_two_maintainers(db, client, tokens, registry, database_url):
    """Writers of one operation queue it over and over while two maintainers refresh it: none
    works from a stale row, none inserts a second row for it, the log nets out to the final state."""
    operation = db.execute("SELECT centre_id, id FROM operations ORDER BY id LIMIT 1").fetchone()
    errors = []
    start = threading.Barrier(6)

    def writer(seed):
        rng = random.Random(seed)
        with psycopg.connect(database_url, autocommit=True) as conn:
            start.wait()
            for step in range(30):
                try:
                    # children of the operation: the writers share no base row, only the fact row
                    if rng.random() < 0.6:
                        conn.execute("INSERT INTO intraop_events (centre_id, operation_id, position, type)"
                                     " VALUES (%s, %s, %s, %s)",
                                     (operation["centre_id"], operation["id"], 100 * (seed + 1) + step,
                                      rng.choice(["dural_tear", "other", "wrong_level"])))
                    else:
                        conn.execute("DELETE FROM intraop_events WHERE centre_id = %s AND operation_id = %s"
                                     " AND position >= %s AND position < %s",
                                     (operation["centre_id"], operation["id"], 100 * (seed + 1), 100 * (seed + 2)))
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(repr(exc))

    maintainers = start_maintainers(database_url, 2, batch_size=3)
    try:
        run_writers(writer, 6)
    finally:
        stop_maintainers(maintainers)
    assert errors == []
    assert_reports_exact(db, client, tokens)
    fold_queued(db)
    assert_maintained_exact(db)


def test_a_bulk_insert_is_folded_in_batches(db, client, tokens, registry, database_url):
    fold_queued(db)
    with db.transaction():
        db.execute("""INSERT INTO operations (centre_id, patient_id, local_ref, operation_date, region, procedures,
                                              instrumented, blood_loss_ml)
                      SELECT o.centre_id, o.patient_id, 'bulk-' || g, o.operation_date, o.region, o.procedures,
                             o.instrumented, g % 900
                      FROM (SELECT o.* FROM operations o JOIN patients p
                            ON p.centre_id = o.centre_id AND p.id = o.patient_id
                            WHERE p.consent = 'active' LIMIT 1) o, generate_series(1, 2100) g""")
    assert queued(db) == 2100
    assert_reports_exact(db, client, tokens)  # before the maintainer: from the queue
    maintainer = Maintainer(database_url, batch_size=500)
    batches = []
    while (batch := maintainer.run_batch()).changes:
        batches.append(batch.changes)
    maintainer.close()
    assert batches == [500, 500, 500, 500, 100]
    assert db.execute("SELECT sum(operations) AS n FROM report_tallies WHERE centre_id = 0 AND dim = 'all'"
                      ).fetchone()["n"] >= 2100
    assert_reports_exact(db, client, tokens)
    assert_maintained_exact(db)
