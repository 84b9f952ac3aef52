"""Load benchmark: single-record creation under gunicorn, next to two baselines in the same run.

    python -m bench.load                                             (machine's PostgreSQL, see below)
    python -m bench.load --database-url postgresql://postgres@127.0.0.1:5432/postgres --clients 16

Three services, each started in turn by the bench with the registry's own gunicorn settings
(`registry/gunicorn_conf.py`: the same workers, threads and gthread worker class for all three):

- constant:   a Flask route that reads the body and answers a constant (bench/load_baselines.py);
- raw insert: a Flask route that inserts the raw JSON body into one table with psycopg;
- registry:   POST /v1/operations/ — the full operation document validated, its patient upserted,
              operation and child rows written, audited, with an Idempotency-Key on every request;
              with the report maintainer running beside it (`registry maintain-reports`), as
              `registry serve` runs it: the maintainer's CPU and its backlog at the end are printed.

Every request carries the same kind of body: the published seed case (an operation document
with its inline patient, implants and an intraoperative event) with a fresh local_ref and
patient ref; with `--known-patients SHARE`, that share of the documents (spread evenly) name the
patient of the client's previous document again, as a hospital's next operation for a patient
it sent before (a known patient with the same values: the stored patient is not changed). The
load client runs in separate processes (several threads each, one keep-alive HTTP connection
per thread) so that it is not the Python process being measured; it still
shares the machine's cores with gunicorn and PostgreSQL, which the report says.

The bench makes a fresh database `registry_load` on the given server (dropped afterwards),
migrated to head, with one centre and one submitter token, and by default 10,000 synthetic
operations of other centres, analysed (`--existing`): a registry in steady state. From an empty,
never-analysed database, report maintenance runs on plans made for tiny tables (sequential
scans, dearer with every row) until autovacuum analyses them, which a short run never sees.

It prints requests/s, median and p99 latency and the peak RSS of any gunicorn worker for each
service, then the registry's figures against their targets: requests/s >= 0.4x the raw-insert
floor (issue 14; issue 6 asked 60 %), p99 < 100 ms at 16 clients, worker RSS < 150 MB.

Before the services, one child process submits 200 documents in-process (Flask's test client)
with a libpq trace on its connections and prints what one create costs the registry itself:
statements sent, round trips to PostgreSQL and Python CPU (issue 14, decision 3).

It also prints the CPU time each request cost in the gunicorn workers and in PostgreSQL (every
`postgres` process on this machine, so a server elsewhere shows none, and other work on the same
server counts too). Throughput on a shared machine moves by a fifth from run to run; CPU per
request moves much less, so it is the figure to compare two versions of the code by.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from registry import migrate

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-load-secret-0123456789"
DATABASE = f"registry_load_{os.getpid()}"  # two benches on one server must not share it
SEED_CASE = json.loads((ROOT / "registry" / "demo" / "seed-case.json").read_text())

SERVICES = {
    "constant": ("bench.load_baselines:constant_app()", "/"),
    "raw insert": ("bench.load_baselines:raw_insert_app()", "/"),
    "registry": ("registry:create_app()", "/v1/operations/"),
}


def with_database(url: str, name: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = name
    return psycopg.conninfo.make_conninfo(**params)


def prepare_database(server_url: str, existing: int = 0) -> tuple[str, str]:
    """A fresh migrated database with `existing` synthetic operations (analysed), a centre, a
    submitter token and the raw-insert table."""
    from registry.centres.store import add_centre
    from registry.reports.synthetic import generate
    from registry.tokens.store import issue_token
    from bench.load_baselines import RAW_TABLE

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    url = with_database(server_url, DATABASE)
    migrate.upgrade(url)
    if existing:
        with psycopg.connect(url, autocommit=True) as conn:
            generate(conn, existing, log=lambda line: None)
    with psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        centre = add_centre(conn, "LOAD", "Load benchmark centre")
        _, token = issue_token(conn, centre["id"], "submitter", "bench.load")
        conn.execute(f"CREATE TABLE {RAW_TABLE} (id bigserial PRIMARY KEY, document jsonb NOT NULL)")
    return url, token


def drop_database(server_url: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """gunicorn with registry/gunicorn_conf.py serving `app`, and a sampler of its workers' RSS."""

    def __init__(self, app: str, database_url: str, workers: int, threads: int, data_dir: Path):
        self.port = free_port()
        metrics = data_dir / "prometheus"
        metrics.mkdir(parents=True, exist_ok=True)
        environment = dict(os.environ, DATABASE_URL=database_url, REGISTRY_SECRET=SECRET,
                           REGISTRY_DATA_DIR=str(data_dir), REGISTRY_BIND=f"127.0.0.1:{self.port}",
                           WEB_CONCURRENCY=str(workers), REGISTRY_THREADS=str(threads),
                           PROMETHEUS_MULTIPROC_DIR=str(metrics), LOG_LEVEL="WARNING")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:registry.gunicorn_conf", app],
            env=environment, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.peak_rss = 0
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def wait_ready(self, path: str, headers: dict, body: bytes) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("POST", path, body=body, headers=headers)
                if conn.getresponse().status < 500:
                    conn.close()
                    self._sampler.start()
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")

    def _sample(self) -> None:
        master = psutil.Process(self.process.pid)
        while not self._sampling.is_set():
            try:
                for worker in master.children():
                    self.peak_rss = max(self.peak_rss, worker.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.1)

    def stop(self) -> None:
        self._sampling.set()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class CpuMeter:
    """CPU seconds used by a group of processes between `start()` and `stop()`."""

    def __init__(self, processes):
        self._processes = processes  # a callable giving the group's current psutil processes
        self._at_start = {}

    @staticmethod
    def _used(process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def start(self) -> None:
        self._at_start = {}
        for process in self._processes():
            try:
                self._at_start[process.pid] = self._used(process)
            except psutil.Error:
                pass

    def stop(self) -> float:
        used = 0.0
        for process in self._processes():
            try:  # a process started meanwhile counts from zero
                used += self._used(process) - self._at_start.get(process.pid, 0.0)
            except psutil.Error:
                pass
        return used


def postgres_processes():
    return [process for process in psutil.process_iter(["name"]) if process.info["name"] == "postgres"]


def document_body(run: str, number: int, known_patients: float = 0.0) -> bytes:
    """The seed case as document `number` of a client; its patient is the previous document's for
    a `known_patients` share of the numbers, spread evenly (0.5: every second one)."""
    patient = int(number * (1 - known_patients))
    document = dict(SEED_CASE, local_ref=f"{run}-{number}",
                    patient=dict(SEED_CASE["patient"], ref=f"{run}-P{patient}"))
    return json.dumps(document).encode()


def client_process(port: int, path: str, token: str, threads: int, warmup: float, duration: float,
                   run: str, results: multiprocessing.Queue, known_patients: float = 0.0) -> None:
    """Threads with one keep-alive connection each, posting until the time is up.

    Latencies of requests started during the warm-up are not kept.
    """
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + duration
    latencies, errors, lock = [], [], threading.Lock()

    def loop(thread: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        kept, failed, number = [], 0, 0
        while True:
            began = time.monotonic()
            if began >= stop_at:
                break
            body = document_body(f"{run}-{thread}", number, known_patients)
            number += 1
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}",
                       "Idempotency-Key": f"{run}-{thread}-{number}"}
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status in (200, 201)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                ok = False
            if began >= measure_from:
                if ok:
                    kept.append(time.monotonic() - began)
                else:
                    failed += 1
        with lock:
            latencies.extend(kept)
            errors.append(failed)

    workers = [threading.Thread(target=loop, args=(number,)) for number in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put((latencies, sum(errors)))


def start_maintainer(database_url: str) -> subprocess.Popen:
    """`registry maintain-reports` beside the registry's gunicorn, as `registry serve` runs one."""
    environment = dict(os.environ, DATABASE_URL=database_url, REGISTRY_SECRET=SECRET, LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-c", "from registry.cli import main; main()", "maintain-reports"],
                            env=environment, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def backlog(database_url: str) -> dict:
    from registry.reports.maintainer import backlog as read_backlog

    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        return read_backlog(conn)


def measure(name: str, database_url: str, token: str, args, data_dir: Path) -> dict:
    app, path = SERVICES[name]
    server = Gunicorn(app, database_url, args.workers, args.threads, data_dir)
    maintainer = start_maintainer(database_url) if name == "registry" else None
    maintainer_cpu = CpuMeter(lambda: [psutil.Process(maintainer.pid)] if maintainer else [])
    run = uuid.uuid4().hex[:8]
    try:
        server.wait_ready(path, {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
                          document_body(f"{run}-ready", 0))
        results = multiprocessing.Queue()
        per_process = [args.clients // args.client_processes + (1 if i < args.clients % args.client_processes else 0)
                       for i in range(args.client_processes)]
        processes = [multiprocessing.Process(target=client_process, args=(
            server.port, path, token, threads, args.warmup, args.duration, f"{run}-{i}", results,
            args.known_patients))
            for i, threads in enumerate(per_process)]
        for process in processes:
            process.start()
        workers_cpu = CpuMeter(lambda: psutil.Process(server.process.pid).children())
        postgres_cpu = CpuMeter(postgres_processes)
        time.sleep(args.warmup)
        workers_cpu.start()
        postgres_cpu.start()
        maintainer_cpu.start()
        time.sleep(args.duration)
        cpu = {"gunicorn": workers_cpu.stop(), "postgres": postgres_cpu.stop(), "maintainer": maintainer_cpu.stop()}
        left = backlog(database_url) if maintainer else None
        latencies, errors = [], 0
        for _ in processes:
            kept, failed = results.get()
            latencies += kept
            errors += failed
        for process in processes:
            process.join()
    finally:
        server.stop()
        if maintainer:
            maintainer.terminate()
            maintainer.wait(timeout=30)
    latencies.sort()
    return {
        "service": name, "requests": len(latencies), "errors": errors,
        "rps": len(latencies) / args.duration,
        "median_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan"),
        "peak_rss_mb": server.peak_rss / 2**20,
        "gunicorn_cpu_ms": cpu["gunicorn"] * 1000 / max(len(latencies), 1),
        "postgres_cpu_ms": cpu["postgres"] * 1000 / max(len(latencies), 1),
        "maintainer_cpu_ms": cpu["maintainer"] * 1000 / max(len(latencies), 1),
        "backlog": left,
    }


def _one_create_in_process(database_url: str, token: str, creates: int, results: multiprocessing.Queue,
                           known_patients: float = 0.0) -> None:
    """In a child process: what one create costs the registry itself, without HTTP or other load —
    statements sent and round trips to PostgreSQL (read from libpq's trace of every connection),
    and the Python CPU of the request (Flask's test client)."""
    from registry import create_app
    from registry.config import Settings

    traced = []
    with tempfile.NamedTemporaryFile("w+", prefix="bench-load-trace-") as trace:
        connect = psycopg.Connection.connect.__func__

        def connect_traced(cls, *args, **kwargs):
            conn = connect(cls, *args, **kwargs)
            conn.pgconn.trace(trace.fileno())
            traced.append(conn)
            return conn

        psycopg.Connection.connect = classmethod(connect_traced)
        client = create_app(Settings(registry_secret=SECRET.encode()), database_url=database_url).test_client()
        run = uuid.uuid4().hex[:8]
        started = time.process_time()
        for number in range(creates):
            response = client.post("/v1/operations/", data=document_body(f"{run}-inproc", number, known_patients),
                                   headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {token}",
                "Idempotency-Key": f"{run}-inproc-{number}"})
            assert response.status_code == 201, response.status_code
        cpu = time.process_time() - started
        for conn in traced:
            conn.pgconn.untrace()  # flushes libpq's buffer
        # libpq trace lines: timestamp, F (sent) or B (received), length, message
        directions = [line.split("\t")[1:4] for line in open(trace.name) if line.count("\t") >= 3]
    statements = sum(1 for direction, _, message in directions if direction == "F" and message.startswith("Execute"))
    round_trips = sum(1 for before, after in zip(directions, directions[1:]) if before[0] == "F" and after[0] == "B")
    results.put((statements / creates, round_trips / creates, cpu * 1000 / creates))


def one_create_in_process(database_url: str, token: str, creates: int = 200,
                          known_patients: float = 0.0) -> tuple[float, float, float]:
    """(statements, round trips, Python CPU ms) per create, measured in a child process."""
    results = multiprocessing.Queue()
    child = multiprocessing.Process(target=_one_create_in_process,
                                    args=(database_url, token, creates, results, known_patients))
    child.start()
    figures = results.get(timeout=600)
    child.join()
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="an admin URL of the PostgreSQL server to use (a database is made on it)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--client-processes", type=int, default=2, help="processes the clients run in")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, for all three services")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker, for all three")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per service")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument("--existing", type=int, default=10_000,
                        help="synthetic operations already in the registry, analysed (default 10,000)")
    parser.add_argument("--known-patients", type=float, default=0.0, metavar="SHARE",
                        help="share of the registry's creates (0 to 1, spread evenly) whose inline patient is the "
                             "client's previous one, already stored (default 0: every patient new)")
    args = parser.parse_args(argv)
    if not 0 <= args.known_patients <= 1:
        parser.error("--known-patients is a share, from 0 to 1")

    database_url, token = prepare_database(args.database_url, args.existing)
    figures = []
    try:
        statements, round_trips, python_cpu = one_create_in_process(database_url, token,
                                                                    known_patients=args.known_patients)
        print("  measured one create in-process", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="bench-load-") as data_dir:
            for name in SERVICES:
                figures.append(measure(name, database_url, token, args, Path(data_dir)))
                print(f"  measured {name}", file=sys.stderr)
    finally:
        drop_database(args.database_url)

    print(f"\n{args.clients} clients in {args.client_processes} processes; gunicorn {args.workers} workers x "
          f"{args.threads} threads (gthread) for all three; {os.cpu_count()} CPU cores shared by clients, "
          f"gunicorn and PostgreSQL; {args.duration:.0f} s measured after {args.warmup:.0f} s warm-up; "
          f"{args.existing:,} operations in the registry beforehand; {args.known_patients:.0%} of the "
          f"registry's creates for a known patient\n")
    print(f"{'service':<12} {'requests':>9} {'req/s':>8} {'median ms':>10} {'p99 ms':>8} {'errors':>7} "
          f"{'peak worker RSS MB':>19} {'CPU ms/request: gunicorn':>25} {'PostgreSQL':>11}")
    for row in figures:
        print(f"{row['service']:<12} {row['requests']:>9} {row['rps']:>8.1f} {row['median_ms']:>10.1f} "
              f"{row['p99_ms']:>8.1f} {row['errors']:>7} {row['peak_rss_mb']:>19.1f} "
              f"{row['gunicorn_cpu_ms']:>25.2f} {row['postgres_cpu_ms']:>11.2f}")
    registry = figures[-1]
    raw = next(row for row in figures if row["service"] == "raw insert")
    share = registry["rps"] / raw["rps"] if raw["rps"] else float("nan")
    print(f"\nregistry / raw insert floor, requests/s: {share:.2f}x (target >= 0.4x, issue 14)  "
          f"{'met' if share >= 0.4 else 'MISSED'}")
    print(f"registry p99 at {args.clients} clients: {registry['p99_ms']:.0f} ms (target < 100 ms)  "
          f"{'met' if registry['p99_ms'] < 100 else 'MISSED'}")
    registry_cpu = registry["gunicorn_cpu_ms"] + registry["postgres_cpu_ms"]
    raw_cpu = raw["gunicorn_cpu_ms"] + raw["postgres_cpu_ms"]
    print(f"registry CPU per request: {registry_cpu:.2f} ms (gunicorn {registry['gunicorn_cpu_ms']:.2f}, "
          f"PostgreSQL {registry['postgres_cpu_ms']:.2f}); raw insert {raw_cpu:.2f} ms "
          f"({registry_cpu / raw_cpu if raw_cpu else float('nan'):.1f}x)")
    left = registry["backlog"]
    print(f"report maintainer (beside gunicorn, issue 14 decision 2): {registry['maintainer_cpu_ms']:.2f} ms "
          f"of its own CPU per request (its PostgreSQL work is in the PostgreSQL figure); backlog when "
          f"the measurement ended: {left['operations']} operations, oldest {left['oldest_seconds']:.1f} s")
    print(f"one create, in-process (Flask test client, no other load): {statements:.1f} statements, "
          f"{round_trips:.1f} round trips to PostgreSQL, {python_cpu:.2f} ms of Python CPU")
    print(f"registry peak worker RSS: {registry['peak_rss_mb']:.0f} MB (target < 150 MB)  "
          f"{'met' if registry['peak_rss_mb'] < 150 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
