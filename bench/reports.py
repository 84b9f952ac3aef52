"""Latency of every report endpoint over HTTP against a real gunicorn, next to a plain
GROUP BY over the base tables measured in the same run.

    python -m bench.reports --database-url postgresql://postgres@127.0.0.1/registry_bench_1m

The database must hold a registry (see bench.generate). The bench issues an analyst and a
submitter token, starts `registry serve` (gunicorn, 2 workers) on a free local port, sends
each request sequentially (warm-up first) and prints median and 95th percentile latency.

`--backlog N` measures the reports while the maintainer is behind: the server runs without its
maintainer, N operations are touched (a no-op update queues them in `report_changes`, as a
write the maintainer has not reached yet does) and every report folds them in as of the
request. The queue is folded afterwards, so the database is left caught up.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from bench.serving import wait_until_healthy

CASES = [
    # (label, path, token)
    ("complications by approach", "/v1/reports/complications?group_by=approach", "analyst"),
    ("complications by approach, CSV", "/v1/reports/complications?group_by=approach&format=csv", "analyst"),
    ("complications by approach, own centre", "/v1/reports/complications?group_by=approach", "submitter"),
    ("complications, no grouping", "/v1/reports/complications", "analyst"),
    ("complications by procedure", "/v1/reports/complications?group_by=procedure", "analyst"),
    ("complications by centre", "/v1/reports/complications?group_by=centre", "analyst"),
    ("complications by approach x region (scan)", "/v1/reports/complications?group_by=approach,region", "analyst"),
    ("complications by approach, 2015-2019 (scan)",
     "/v1/reports/complications?group_by=approach&date_from=2015-01-01&date_to=2019-12-31", "analyst"),
    ("fusion by approach", "/v1/reports/fusion?group_by=approach", "analyst"),
    ("fusion by approach, min_months=24 (scan)", "/v1/reports/fusion?group_by=approach&min_months=24", "analyst"),
    ("outcomes by region", "/v1/reports/outcomes?group_by=region", "analyst"),
    ("centres (funnel), intraop_event", "/v1/reports/centres", "analyst"),
    ("centres (funnel), own centre", "/v1/reports/centres", "submitter"),
    ("centres by approach (scan)", "/v1/reports/centres?group_by=approach", "analyst"),
    ("completeness by centre", "/v1/reports/completeness", "analyst"),
    # the definitions of issue 18 that the maintained aggregates cannot serve (relative to today,
    # per patient, another visit): scans over report_operation_measures with LATERAL look-ups
    ("complications by approach, window=30 (scan)", "/v1/reports/complications?group_by=approach&window=30",
     "analyst"),
    ("complications by approach, window=90, ClassIntra (scan)",
     "/v1/reports/complications?group_by=approach&window=90&major=clavien_or_classintra", "analyst"),
    ("complications by approach, unit=patient (scan)", "/v1/reports/complications?group_by=approach&unit=patient",
     "analyst"),
    ("fusion by approach, assessment=ct (scan)", "/v1/reports/fusion?group_by=approach&assessment=ct", "analyst"),
    ("fusion by approach, failure_window=24 (scan)", "/v1/reports/fusion?group_by=approach&failure_window=24",
     "analyst"),
    ("outcomes by region, timepoint=12m (scan)", "/v1/reports/outcomes?group_by=region&timepoint=12m", "analyst"),
    # issue 15's outcome scores: a scan over the stored rows (latest: the facts' score pairs,
    # migration 0015) or with the follow-ups' scores joined (12m)
    ("scores, no grouping (scan)", "/v1/reports/scores", "analyst"),
    ("scores by region (scan)", "/v1/reports/scores?group_by=region", "analyst"),
    ("scores, timepoint=12m (scan)", "/v1/reports/scores?timepoint=12m", "analyst"),
]

# The same figures as "complications by approach", straight from the base tables.
PLAIN_GROUP_BY = """
SELECT o.approach, count(*) AS operations,
       count(*) FILTER (WHERE ev.types IS NOT NULL) AS intraop_event,
       count(*) FILTER (WHERE 'instrument_breakage' = ANY(ev.types)) AS instrument_breakage,
       count(*) FILTER (WHERE pc.any_complication) AS postop_complication,
       count(*) FILTER (WHERE pc.major) AS major_complication,
       count(o.blood_loss_ml), avg(o.blood_loss_ml),
       percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY o.blood_loss_ml),
       count(o.duration_min), avg(o.duration_min),
       percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY o.duration_min)
FROM operations o
JOIN patients p ON p.centre_id = o.centre_id AND p.id = o.patient_id AND p.consent = 'active'
LEFT JOIN (SELECT centre_id, operation_id, array_agg(DISTINCT type) AS types FROM intraop_events
           GROUP BY centre_id, operation_id) ev ON ev.centre_id = o.centre_id AND ev.operation_id = o.id
LEFT JOIN (SELECT centre_id, operation_id, true AS any_complication,
                  bool_or(grade IN ('IIIa', 'IIIb', 'IVa', 'IVb', 'V')) AS major
           FROM postop_complications GROUP BY centre_id, operation_id) pc
       ON pc.centre_id = o.centre_id AND pc.operation_id = o.id
GROUP BY o.approach
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def issue_tokens(url: str) -> dict:
    from registry.tokens.store import issue_token

    with psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        biggest = conn.execute("SELECT centre_id FROM report_tallies WHERE centre_id > 0 AND dim = 'all'"
                               " ORDER BY operations DESC LIMIT 1").fetchone()
        centre = biggest["centre_id"] if biggest else conn.execute("SELECT min(id) AS id FROM centres").fetchone()["id"]
        _, analyst = issue_token(conn, centre, "analyst", "bench analyst")
        _, submitter = issue_token(conn, centre, "submitter", "bench submitter")
    return {"analyst": analyst, "submitter": submitter}


def queue_backlog(url: str, operations: int) -> int:
    """Queue `operations` random operations for the maintainer; the queued operations after."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE operations SET blood_loss_ml = blood_loss_ml WHERE (centre_id, id) IN "
                     "(SELECT centre_id, id FROM operations ORDER BY random() LIMIT %s)", (operations,))
        return conn.execute("SELECT count(DISTINCT (centre_id, operation_id)) FROM report_changes").fetchone()[0]


def fold_backlog(url: str) -> int:
    from registry.reports.maintainer import Maintainer

    maintainer = Maintainer(url)
    try:
        return maintainer.drain()
    finally:
        maintainer.close()


def start_server(url: str, port: int, workers: int, maintainer: bool = True) -> subprocess.Popen:
    registry = Path(sys.executable).with_name("registry")
    env = {**os.environ, "DATABASE_URL": url, "REGISTRY_SECRET": "bench-secret-0123456789abcdef",
           "LOG_LEVEL": "WARNING", "DB_POOL_MAX_SIZE": "4"}
    server = subprocess.Popen([str(registry), "serve", "--no-migrate", "--bind", f"127.0.0.1:{port}",
                               "--workers", str(workers), "--threads", "1",
                               "--maintainer" if maintainer else "--no-maintainer"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_until_healthy(server, port, 30)


class CaseFailed(Exception):
    pass


def measure(port: int, path: str, token: str, requests: int, warmup: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {token}"}
    timings = []
    for index in range(warmup + requests):
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:  # reported, and the run goes on with the next case
            raise CaseFailed(f"HTTP {response.status} after {elapsed * 1000:.0f} ms: {body[:120]!r}")
        if index >= warmup:
            timings.append(elapsed * 1000)
    return timings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def plain_group_by(url: str, runs: int) -> list[float]:
    timings = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET jit = off")
        for _ in range(runs + 1):
            started = time.perf_counter()
            conn.execute(PLAIN_GROUP_BY).fetchall()
            timings.append((time.perf_counter() - started) * 1000)
    return timings[1:]  # the first run warms the cache


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--scan-requests", type=int, default=10, help="requests for the (slower) scan cases")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plain-runs", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=0,
                        help="queue this many operations for a stopped maintainer before measuring")
    parser.add_argument("--only", action="append", default=[],
                        help="run only the cases whose label contains this text (repeatable)")
    args = parser.parse_args(argv)

    with psycopg.connect(args.database_url) as conn:
        operations = conn.execute("SELECT count(*) FROM operations").fetchone()[0]
        pending = conn.execute("SELECT count(*) FROM report_log").fetchone()[0]
        version = conn.execute("SHOW server_version").fetchone()[0]
    tokens = issue_tokens(args.database_url)
    port = free_port()
    server = start_server(args.database_url, port, args.workers, maintainer=not args.backlog)
    queued = queue_backlog(args.database_url, args.backlog) if args.backlog else 0
    print(f"registry of {operations:,} operations, {pending:,} pending log rows, {queued:,} operations queued "
          f"for a stopped maintainer, PostgreSQL {version}, gunicorn {args.workers} workers on 127.0.0.1:{port}")
    results, failures = [], []
    try:
        for label, path, who in CASES:
            if args.only and not any(text in label for text in args.only):
                continue
            count = args.scan_requests if "(scan)" in label else args.requests
            try:
                timings = measure(port, path, tokens[who], count, args.warmup)
            except CaseFailed as failure:
                failures.append((label, str(failure)))
                print(f"  {label:48s} FAILED: {failure}", flush=True)
                continue
            results.append((label, statistics.median(timings), percentile(timings, 0.95), count))
            print(f"  {label:48s} median {results[-1][1]:9.1f} ms   p95 {results[-1][2]:9.1f} ms   (n={count})",
                  flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if args.backlog:
            print(f"  folded the backlog: {fold_backlog(args.database_url):,} queued changes", flush=True)
    timings = plain_group_by(args.database_url, args.plain_runs)
    print(f"  {'plain GROUP BY over base tables (by approach)':48s} median {statistics.median(timings):9.1f} ms"
          f"   p95 {percentile(timings, 0.95):9.1f} ms   (n={len(timings)})")
    print(json.dumps({"operations": operations, "backlog_operations": queued, "cases": results, "failures": failures,
                      "plain_group_by_ms": statistics.median(timings)}))


if __name__ == "__main__":
    sys.exit(main())
