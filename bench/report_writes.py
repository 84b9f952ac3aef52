"""What keeping the report aggregates exact costs writers.

    python -m bench.report_writes --database-url postgresql://postgres@127.0.0.1/registry_bench_100000

Inserts operations the way the API does (an operation, an intraoperative event and two
follow-ups, each its own statement) and prints:
- per-operation commit latency, one operation per transaction, with the report triggers (since
  migration 0011 they only queue the touched operations in report_changes);
- the time the report maintainer's batches (`report_maintain()`, as `registry maintain-reports`
  runs them) take to fold what those writes queued;
- a batch of N operations in one transaction, with the report triggers and without them
  (the second run disables them inside a transaction that is rolled back), and the
  maintainer's time to fold the batch.
Rows written with the triggers stay (they are real, consistent records of a bench centre).
"""

import argparse
import datetime as dt
import random
import statistics
import sys
import time

import psycopg

REPORT_TRIGGERS = [(table, f"report_{event}_{table}")
                   for table in ("operations", "intraop_events", "follow_ups")
                   for event in ("insert", "update", "delete")]


def insert_operation(cur, rng, centre, patient, serial):
    date = dt.date(2020, 1, 1) + dt.timedelta(days=rng.randrange(1500))
    operation = cur.execute(
        "INSERT INTO operations (centre_id, patient_id, local_ref, operation_date, region, approach, procedures,"
        " blood_loss_ml, duration_min, instrumented) VALUES (%s, %s, %s, %s, 'lumbar', %s, '{fusion,laminectomy}',"
        " %s, %s, true) RETURNING id",
        (centre, patient, f"W-{serial}", date, rng.choice(["posterior", "anterior"]),
         rng.randrange(0, 2000, 50), rng.randrange(60, 400, 5))).fetchone()[0]
    cur.execute("INSERT INTO intraop_events (centre_id, operation_id, position, type) VALUES (%s, %s, 0, 'dural_tear')",
                (centre, operation))
    for months in (6, 24):
        cur.execute("INSERT INTO follow_ups (centre_id, operation_id, follow_up_date, months_after, fusion_status)"
                    " VALUES (%s, %s, %s, %s, 'fused')", (centre, operation, date + dt.timedelta(days=31 * months), months))


def fold(conn, what: str, batch_size: int = 5000) -> None:
    """Run the maintainer's batches until the queue is empty, and say how long they took."""
    cur = conn.cursor()
    queued = cur.execute("SELECT count(DISTINCT (centre_id, operation_id)) FROM report_changes").fetchone()[0]
    started = time.perf_counter()
    batches = 0
    while cur.execute("SELECT changes FROM report_maintain(%s)", (batch_size,)).fetchone()[0]:
        conn.commit()
        batches += 1
    conn.commit()
    seconds = time.perf_counter() - started
    print(f"report maintainer: folded {what} ({queued} operations) in {batches} batches, {seconds * 1000:.0f} ms"
          f" ({queued / seconds if seconds else float('nan'):,.0f} operations/s)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--single", type=int, default=200, help="operations, one per transaction")
    parser.add_argument("--batch", type=int, default=2000, help="operations in one transaction")
    args = parser.parse_args(argv)
    rng = random.Random(9)
    tag = f"{time.time_ns()}"
    with psycopg.connect(args.database_url) as conn:
        cur = conn.cursor()
        centre = cur.execute("INSERT INTO centres (code, name) VALUES (%s, 'writes bench') RETURNING id",
                             (f"W{tag[-12:]}",)).fetchone()[0]
        patient = cur.execute("INSERT INTO patients (centre_id, ref_hash, diagnosis) VALUES (%s, 'w', 'ado_ii')"
                              " RETURNING id", (centre,)).fetchone()[0]
        conn.commit()

        latencies = []
        for serial in range(args.single):
            started = time.perf_counter()
            insert_operation(cur, rng, centre, patient, f"{tag}-s{serial}")
            conn.commit()
            latencies.append((time.perf_counter() - started) * 1000)
        print(f"one operation per transaction (4 statements), with report triggers: "
              f"median {statistics.median(latencies):.2f} ms, p95 {sorted(latencies)[int(0.95 * len(latencies))]:.2f} ms")

        fold(conn, "the operations written one per transaction")

        started = time.perf_counter()
        for serial in range(args.batch):
            insert_operation(cur, rng, centre, patient, f"{tag}-b{serial}")
        statements = time.perf_counter() - started
        conn.commit()
        with_triggers = time.perf_counter() - started
        print(f"{args.batch} operations in one transaction, with report triggers: {with_triggers:.2f} s "
              f"({statements:.2f} s statements + {with_triggers - statements:.2f} s commit)")
        fold(conn, "the batch")

        started = time.perf_counter()
        for table, trigger in REPORT_TRIGGERS:
            cur.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        for serial in range(args.batch):
            insert_operation(cur, rng, centre, patient, f"{tag}-n{serial}")
        without = time.perf_counter() - started
        conn.rollback()
        print(f"{args.batch} operations in one transaction, without report triggers: {without:.2f} s (rolled back)")



if __name__ == "__main__":
    sys.exit(main())
