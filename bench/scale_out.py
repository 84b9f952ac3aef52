"""Scale-out benchmark: the registry direct to PostgreSQL, through PgBouncer, and with reports on
a streaming standby, all in one run on one cluster made for it.

    python -m bench.scale_out                     (about three minutes on a 2-core machine)
    python -m bench.scale_out --duration 20 --existing 10000 --report-requests 100

The bench makes its own cluster in temporary directories, as the cluster tests do
(tests/cluster/harness.py): a primary, a hot standby streaming from it (pg_basebackup -R), and
Debian's PgBouncer in transaction-pooling mode in front of the primary. On the primary it makes
the database of bench.load (a registry of `--existing` synthetic operations, analysed), then
measures, each with a gunicorn of its own (bench.load's, same workers and threads):

create throughput (bench.load's clients posting full operation documents; each configuration
run twice, in the order A B C C B A, half the time each, so that other load drifting during the
run favours none):
  direct           DATABASE_URL at the primary, prepared statements on (the default, 5)
  direct, no prep  the same with DB_PREPARE_THRESHOLD=-1, to tell the pooler's cost from the
                   prepared statements' one
  PgBouncer        DATABASE_URL at PgBouncer, DB_PREPARE_THRESHOLD=-1

report latency (one client, each report in turn, sequential; median and p95; the three
gunicorns up at once and asked in turn, request by request):
  direct           reports on the primary, directly
  PgBouncer        reports on the primary, through PgBouncer
  replica          REPORTS_DATABASE_URL at the standby (read through registry.replica, which
                   measures the replay lag in the report's transaction first)

and prints each figure next to the direct one as a ratio, with the CPU each create cost in
gunicorn and in the database tier (the cluster's PostgreSQL processes and PgBouncer). Clients,
gunicorn, PgBouncer and both servers share the machine's cores: the ratios, not the absolute
figures, are what carries over.
"""

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg

from bench import load
from tests.cluster.harness import Cluster
from tests.system_packages import pgbouncer_executable

REPORTS = [
    "/v1/reports/complications?group_by=approach",
    "/v1/reports/complications?group_by=centre",
    "/v1/reports/fusion?group_by=approach",
    "/v1/reports/outcomes?group_by=region",
    "/v1/reports/centres",
]
# The registry with its report route reading through registry.replica (tests/cluster/report_wiring.py)
REPLICA_AWARE_APP = "tests.cluster.report_wiring:create_app()"


@contextmanager
def environment(**variables: str):
    """Set environment variables for the gunicorns started inside the block (bench.load passes
    its own environment on to them)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def analyst_token(database_url: str) -> str:
    from registry.tokens.store import issue_token

    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        centre = conn.execute("SELECT id FROM centres WHERE code = 'LOAD'").fetchone()
        return issue_token(conn, centre["id"], "analyst", "bench.scale_out")[1]


def report_latencies(runs: dict, token: str, requests: int, warmup: int, data_dir: Path,
                     submitter_token: str) -> dict:
    """Seconds per report request for each configuration (name: (DATABASE_URL, environment)),
    and the databases its answers said they were read from. One gunicorn per configuration, all
    up at once, asked in turn, so that each meets the same machine."""
    servers = {}
    try:
        for name, (database_url, variables) in runs.items():
            with environment(**variables):
                servers[name] = load.Gunicorn(REPLICA_AWARE_APP, database_url, 1, 4, data_dir / name)
        for server in servers.values():
            server.wait_ready("/v1/operations/", {"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {submitter_token}"},
                              load.document_body("scale-out-ready", time.monotonic_ns()))
        connections = {name: http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                       for name, server in servers.items()}
        headers = {"Authorization": f"Bearer {token}"}
        results = {name: ([], set()) for name in servers}
        for number in range(warmup + requests):
            path = REPORTS[number % len(REPORTS)]
            for name, conn in connections.items():
                began = time.perf_counter()
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                elapsed = time.perf_counter() - began
                if response.status != 200:
                    raise RuntimeError(f"{name} {path}: {response.status}")
                results[name][1].add(response.getheader("Report-Database"))
                if number >= warmup:
                    results[name][0].append(elapsed)
        for conn in connections.values():
            conn.close()
    finally:
        for server in servers.values():
            server.stop()
    return results


def combined(first: dict, second: dict) -> dict:
    """Two halves of one configuration's create run as one."""
    requests = first["requests"] + second["requests"]

    def mean(key):
        return (first[key] * first["requests"] + second[key] * second["requests"]) / max(requests, 1)

    return {**first, "requests": requests, "errors": first["errors"] + second["errors"],
            "rps": (first["rps"] + second["rps"]) / 2, "median_ms": mean("median_ms"),
            "p99_ms": max(first["p99_ms"], second["p99_ms"]), "peak_rss_mb": max(first["peak_rss_mb"], second["peak_rss_mb"]),
            "gunicorn_cpu_ms": mean("gunicorn_cpu_ms"), "postgres_cpu_ms": mean("postgres_cpu_ms")}


def cluster_processes(cluster: Cluster):
    """The cluster's own server processes (both postmasters and their children) and PgBouncer: the
    database tier's CPU, without any other PostgreSQL on the machine."""
    import psutil

    processes = []
    for server in (cluster.primary, cluster.standby):
        try:
            postmaster = psutil.Process(int((server.data_dir / "postmaster.pid").read_text().split()[0]))
            processes += [postmaster, *postmaster.children()]
        except (OSError, psutil.Error):
            pass
    if cluster.pgbouncer.process is not None:
        processes.append(psutil.Process(cluster.pgbouncer.process.pid))
    return processes


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent create clients (default 16)")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for the create runs")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per create run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--existing", type=int, default=10_000, help="synthetic operations beforehand")
    parser.add_argument("--report-requests", type=int, default=100, help="report requests per configuration")
    parser.add_argument("--pool-size", type=int, default=10, help="PgBouncer's server connections per database")
    args = parser.parse_args(argv)

    executable = pgbouncer_executable()
    if executable is None:
        print("PgBouncer is not installed: apt-get install pgbouncer", file=sys.stderr)
        return 2
    cluster = Cluster(executable, pool_size=args.pool_size)
    try:
        cluster.start()
        (server_version,), = cluster.primary.execute("SHOW server_version")
        print(f"  cluster up: PostgreSQL from {cluster.bin_dir}, PgBouncer {'.'.join(map(str, cluster.pgbouncer.version))}",
              file=sys.stderr)
        primary_url, submitter_token = load.prepare_database(cluster.primary.url(), args.existing)
        token = analyst_token(primary_url)
        pgbouncer_url = cluster.pgbouncer.url(load.DATABASE)
        standby_url = cluster.standby.url(load.DATABASE)
        cluster.wait_for_replay(timeout=120)
        # bench.load counts every `postgres` process on the machine; here only the cluster's
        load.postgres_processes = lambda: cluster_processes(cluster)

        creates, reports = {}, {}
        with tempfile.TemporaryDirectory(prefix="bench-scale-out-") as data_dir:
            # Each configuration twice, in the order A B C C B A, half the time each: a machine
            # whose other load drifts during the run favours none of them.
            runs = [("direct", primary_url, {}),
                    ("direct, no prep", primary_url, {"DB_PREPARE_THRESHOLD": "-1"}),
                    ("PgBouncer", pgbouncer_url, {"DB_PREPARE_THRESHOLD": "-1"})]
            halves = argparse.Namespace(**{**vars(args), "duration": args.duration / 2})
            for name, url, variables in runs + runs[::-1]:
                with environment(**variables):
                    half = load.measure("registry", url, submitter_token, halves, Path(data_dir))
                creates[name] = combined(creates[name], half) if name in creates else half
                print(f"  measured create, {name}", file=sys.stderr)
            cluster.wait_for_replay(timeout=120)
            runs = {"direct": (primary_url, {}),
                    "PgBouncer": (pgbouncer_url, {"DB_PREPARE_THRESHOLD": "-1"}),
                    "replica": (primary_url, {"REPORTS_DATABASE_URL": standby_url})}
            reports = report_latencies(runs, token, args.report_requests, len(REPORTS), Path(data_dir),
                                       submitter_token)
    finally:
        cluster.stop()

    print(f"\nPostgreSQL {server_version} primary + streaming standby, PgBouncer "
          f"{'.'.join(map(str, cluster.pgbouncer.version))} (transaction pooling, {args.pool_size} server connections); "
          f"{os.cpu_count()} CPU cores shared by everything; {args.existing:,} operations beforehand\n")
    print(f"create: {args.clients} clients, gunicorn {args.workers} x {args.threads}, "
          f"{args.duration:.0f} s measured after {args.warmup:.0f} s")
    print(f"{'':<18} {'req/s':>8} {'ratio':>6} {'median ms':>10} {'p99 ms':>8} {'errors':>7} "
          f"{'CPU ms/req: gunicorn':>21} {'database tier':>14}")
    base = creates["direct"]
    for name, row in creates.items():
        print(f"{name:<18} {row['rps']:>8.1f} {row['rps'] / base['rps']:>6.2f} {row['median_ms']:>10.1f} "
              f"{row['p99_ms']:>8.1f} {row['errors']:>7} {row['gunicorn_cpu_ms']:>21.2f} {row['postgres_cpu_ms']:>14.2f}")
    print("(database tier: the primary's, the standby's and PgBouncer's processes)")
    print(f"\nreports: one client, {args.report_requests} requests over {len(REPORTS)} reports, sequential, "
          "the three configurations asked in turn")
    print(f"{'':<18} {'median ms':>10} {'ratio':>6} {'p95 ms':>8} {'ratio':>6}  read on")
    base_median, base_p95 = statistics.median(reports["direct"][0]), percentile(reports["direct"][0], 0.95)
    for name, (latencies, sources) in reports.items():
        median, p95 = statistics.median(latencies), percentile(latencies, 0.95)
        print(f"{name:<18} {median * 1000:>10.1f} {median / base_median:>6.2f} {p95 * 1000:>8.1f} "
              f"{p95 / base_p95:>6.2f}  {', '.join(sorted(map(str, sources)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
