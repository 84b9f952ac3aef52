"""Bulk ingestion speed: operations per second through POST /v1/submissions, next to a plain
psycopg COPY of the same rows into the same tables, measured in the same run.

    python -m bench.ingest                                   (embedded PostgreSQL in var/bench-pgdata)
    python -m bench.ingest --database-url postgresql://postgres@127.0.0.1/postgres --sizes 1000,100000

For each batch size the bench makes three fresh databases from one migrated template, then
- COPY baseline: the rows the registry would store for the batch (patients, operations,
  implants, intraoperative events, postoperative complications, follow-ups), computed
  beforehand, written with one COPY per table (and one id look-up per parent table) in one
  transaction: the floor any ingestion path pays for the same data in the same tables,
  report triggers included; and the same COPY with the report aggregates' triggers disabled
  (`report*` on those tables), the physical floor the targets of issue 14 are measured against;
- API: `gunicorn registry:create_app()` (2 workers, as `registry serve`) started by the bench
  on a free local port; the batch is sent as one JSON array in one POST /v1/submissions with
  a submitter token over real HTTP, and the clock runs from the first byte sent to the answer
  received (JSON encoding of the batch is done before). Then the same body is sent again: the
  resend, all `unchanged`, is timed too; and the batch as CSV (the README's column layout),
  for a second centre of the same database. Beside gunicorn runs the report maintainer
  (`registry maintain-reports`, as `registry serve` runs it); the bench prints how long after
  the JSON answer it has folded the whole batch into the report aggregates (reports are exact
  meanwhile: they fold in what is still queued).

The documents are realistic spinal operations: a patient inline (a quarter of them seen
before), one to four levels with a screw group per level plus rods, one or two intraoperative
events, a postoperative complication for one in five, and one follow-up each.
"""

import argparse
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from bench.serving import wait_until_healthy
from registry import migrate
from registry import vocabulary as v

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-ingest-secret-0123456789"
# Names of this run's databases: two benches on one server (helpers, CI) must not drop each other's.
RUN = f"{os.getpid()}"
TEMPLATE = f"registry_bench_ingest_template_{RUN}"

# region -> (first level, last level) of the column where its operations fall
SPINE = {"cervical": ("C2", "C7"), "lumbar": ("L1", "S1"), "thoracic": ("T1", "T12"),
         "thoracolumbar": ("T10", "L2"), "lumbosacral": ("L4", "S1"), "cervicothoracic": ("C6", "T2")}
REGIONS = ["lumbar"] * 40 + ["cervical"] * 30 + ["thoracic"] * 10 + ["thoracolumbar"] * 8 + ["lumbosacral"] * 8 \
    + ["cervicothoracic"] * 4
EVENTS = ["dural_tear"] * 4 + ["instrument_breakage"] * 3 + ["excessive_bleeding"] * 2 + ["iatrogenic_fracture",
                                                                                           "implant_malposition"]


def documents(count: int, seed: int = 20261125) -> list[dict]:
    """`count` realistic operation documents, each with its follow-up (deterministic)."""
    rng = random.Random(seed)
    known_patients, batch = [], []
    for number in range(count):
        if known_patients and rng.random() < 0.25:
            patient = rng.choice(known_patients)
        else:
            patient = {"ref": f"BENCH-P-{number:07d}", "sex": rng.choice(["male", "female"]),
                       "birth_year": rng.randint(1940, 2000), "diagnosis": rng.choice(list(v.DIAGNOSIS)),
                       "genes": rng.choice([[], [], ["CLCN7"], ["TCIRG1"], ["CTSK"], ["SOST"]]),
                       "inheritance": rng.choice(["autosomal_dominant", "autosomal_recessive", "unknown"])}
            known_patients.append(patient)
        region = rng.choice(REGIONS)
        first, last = (v.level_position(level) for level in SPINE[region])
        top = rng.randint(first, last - 1)
        bottom = min(last, top + rng.randint(1, 3))
        levels = [v.SPINAL_LEVELS[position] for position in range(top, bottom + 1)]
        screw = "lateral_mass_screw" if region == "cervical" else "pedicle_screw"
        implants = [{"kind": screw, "level": level, "side": "bilateral", "count": 2,
                     "diameter_mm": 3.5 if screw == "lateral_mass_screw" else rng.choice([5.5, 6.0, 6.5]),
                     "length_mm": float(rng.choice([14, 16, 40, 45, 50]))} for level in levels]
        implants.append({"kind": "rod", "side": "bilateral", "count": 2})
        events = []
        for _ in range(rng.choice([1, 1, 2])):
            kind = rng.choice(EVENTS)
            event = {"type": kind, "level": rng.choice(levels), "side": rng.choice(["left", "right"]),
                     "grade": rng.choice(["I", "II", "III"])}
            if kind == "instrument_breakage":
                event |= {"instrument": rng.choice(["drill_bit", "tap", "screw"]),
                          "retained_fragment": rng.random() < 0.5, "site": "pedicle"}
            events.append(event)
        year = rng.randint(max(2000, patient["birth_year"] + 15), 2020)
        operation_date = dt.date(year, rng.randint(1, 12), rng.randint(1, 28))
        document = {
            "local_ref": f"BENCH-OP-{number:07d}", "patient": patient, "operation_date": operation_date.isoformat(),
            "indication": rng.choice(["spinal_stenosis", "cervical_spondylotic_myelopathy", "spondylolisthesis",
                                      "fracture", "deformity"]),
            "region": region, "approach": rng.choice(["posterior"] * 4 + ["anterior", "combined"]),
            "procedures": ["laminectomy", "fusion"] if rng.random() < 0.7 else ["fusion"],
            "levels": {"from": levels[0], "to": levels[-1]},
            "instrumentation": {"system": rng.choice(["VERTEX", "CD Horizon", "Xia"]), "implants": implants},
            "bone_graft": ["local_autograft"], "duration_min": rng.randint(90, 420),
            "blood_loss_ml": rng.choice([100, 200, 300, 400, 500, 800, 1200]),
            "preop_scores": {"joa": float(rng.randint(6, 15))} if region == "cervical" else None,
            "intraop_events": events,
            "postop_complications": ([{"type": rng.choice(["wound_infection", "haematoma", "csf_leak", "c5_palsy"]),
                                       "days_after": rng.randint(1, 30), "grade": rng.choice(["I", "II", "IIIa"])}]
                                     if rng.random() < 0.2 else []),
            "follow_ups": [{"local_ref": f"BENCH-OP-{number:07d}-FU", "months_after": rng.randint(3, 60),
                            "fusion_status": rng.choice(["fused", "fused", "fused", "not_fused", "indeterminate"]),
                            "assessment": rng.choice(["xray", "ct"]),
                            "implant_status": rng.choice(["intact"] * 8 + ["loosening", "breakage"])}],
        }
        if document["preop_scores"] is None:
            del document["preop_scores"]
        batch.append(document)
    return batch


def csv_body(batch: list[dict]) -> bytes:
    """The batch in the CSV layout of registry.submissions.csv_layout (one row per operation)."""
    import csv
    import io

    def cells(value, prefix=""):
        if isinstance(value, dict):
            return {name: cell for key, item in value.items() for name, cell in cells(item, f"{prefix}{key}.").items()}
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return {name: cell for index, item in enumerate(value)
                    for name, cell in cells(item, f"{prefix}{index}.").items()}
        if isinstance(value, list):
            return {prefix[:-1]: ";".join(value)} if value else {}
        if value is None:
            return {}
        return {prefix[:-1]: "true" if value is True else "false" if value is False else str(value)}

    rows = [cells(document) for document in batch]
    columns = sorted({column for row in rows for column in row}, key=lambda column: (column != "local_ref", column))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


# --- the COPY baseline ------------------------------------------------------------------------

def baseline_rows(batch: list[dict], centre_id: int) -> dict:
    """The rows the registry stores for `batch`, computed with the registry's own functions."""
    from registry.follow_ups.store import follow_up_columns
    from registry.operations.service import columns_and_children
    from registry.patients.store import PATIENT_FIELDS
    from registry.submissions.schemas import BulkOperationSchema

    schema = BulkOperationSchema()
    patients, operations = {}, []
    for sent in batch:
        document = schema.load(sent)
        follow_ups = document.pop("follow_ups")
        ref_hash = hmac.new(SECRET.encode(), f"{centre_id}:{document['patient']['ref']}".encode(),
                            hashlib.sha256).digest()
        patients[ref_hash] = [document["patient"].get(name) for name in PATIENT_FIELDS]
        columns, children = columns_and_children(document, document["patient"]["birth_year"])
        operations.append((ref_hash, columns, children,
                           [follow_up_columns(document["operation_date"], follow_up) for follow_up in follow_ups]))
    return {"patients": patients, "operations": operations}


REPORT_TRIGGER_PREFIX = "report"


def disable_report_triggers(url: str) -> list[str]:
    """Switch off the report aggregates' triggers (named report*) on the tables a submission
    writes: the COPY floor without report maintenance. The data rules' own triggers (a
    follow-up after its operation) and the constraints stay. Returns the triggers disabled."""
    with psycopg.connect(url, autocommit=True) as conn:
        triggers = conn.execute(
            """SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
               WHERE NOT t.tgisinternal AND t.tgname LIKE %s
                 AND c.relname IN ('patients', 'operations', 'implants', 'intraop_events', 'postop_complications',
                                   'follow_ups')
               ORDER BY 1, 2""", (REPORT_TRIGGER_PREFIX + "%",)).fetchall()
        for table, trigger in triggers:
            conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(sql.Identifier(table),
                                                                            sql.Identifier(trigger)))
    return [f"{table}.{trigger}" for table, trigger in triggers]


def copy_baseline(url: str, centre_id: int, rows: dict) -> float:
    """Seconds to COPY the rows into the tables, with the id look-ups a loader needs."""
    from registry.follow_ups.store import FIELDS as FOLLOW_UP_FIELDS
    from registry.follow_ups.store import stored_scores
    from registry.operations.store import CHILD_COLUMNS, OPERATION_COLUMNS, column_values
    from registry.patients.store import PATIENT_FIELDS

    def copy(cur, table, columns, values):
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))) as writer:
            for row in values:
                writer.write_row(row)

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        copy(cur, "patients", ("centre_id", "ref_hash", *PATIENT_FIELDS),
             ((centre_id, ref_hash, *fields) for ref_hash, fields in rows["patients"].items()))
        patient_ids = {bytes(ref_hash): id_ for id_, ref_hash in cur.execute(
            "SELECT id, ref_hash FROM patients WHERE centre_id = %s", (centre_id,))}
        # the stores' own binding of each row (a score list goes as jsonb)
        copy(cur, "operations", ("centre_id", "patient_id", *OPERATION_COLUMNS),
             ((centre_id, patient_ids[ref_hash], *column_values(columns))
              for ref_hash, columns, _, _ in rows["operations"]))
        operation_ids = {local_ref: id_ for id_, local_ref in cur.execute(
            "SELECT id, local_ref FROM operations WHERE centre_id = %s", (centre_id,))}
        for table, columns in CHILD_COLUMNS.items():
            copy(cur, table, ("centre_id", "operation_id", "position", *columns),
                 ((centre_id, operation_ids[operation["local_ref"]], position, *(item.get(name) for name in columns))
                  for _, operation, children, _ in rows["operations"]
                  for position, item in enumerate(children[table])))
        copy(cur, "follow_ups", ("centre_id", "operation_id", *FOLLOW_UP_FIELDS),
             ((centre_id, operation_ids[operation["local_ref"]], *(stored[name] for name in FOLLOW_UP_FIELDS))
              for _, operation, _, follow_ups in rows["operations"] for stored in map(stored_scores, follow_ups)))
        conn.commit()
        return time.perf_counter() - started


# --- the API ----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gunicorn(url: str, port: int, log) -> subprocess.Popen:
    environment = dict(os.environ, DATABASE_URL=url, REGISTRY_SECRET=SECRET, REGISTRY_BIND=f"127.0.0.1:{port}",
                       WEB_CONCURRENCY="2", REGISTRY_THREADS="4", LOG_LEVEL="WARNING",
                       MAX_CONTENT_LENGTH=str(1 << 30), PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp())
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:registry.gunicorn_conf",
                               "registry:create_app()"], env=environment, cwd=ROOT, stdout=log, stderr=log)
    return wait_until_healthy(server, port, 60)


def peak_worker_memory(server: subprocess.Popen) -> int:
    """The largest peak resident set (bytes) among gunicorn's workers, from /proc (Linux)."""
    peak = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(server.pid) and "VmHWM" in fields:
            peak = max(peak, int(fields["VmHWM"].split()[0]) * 1024)
    return peak


def post(port: int, token: str, body: bytes, media_type: str = "application/json") -> tuple[float, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    started = time.perf_counter()
    connection.request("POST", "/v1/submissions/?mode=partial", body=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": media_type})
    response = connection.getresponse()
    answer = json.loads(response.read())
    elapsed = time.perf_counter() - started
    if response.status != 201:
        raise SystemExit(f"submission failed: {response.status} {answer}")
    return elapsed, answer


# --- the run ----------------------------------------------------------------------------------

def _database(server_url: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)) if template is None else
                     sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    params = psycopg.conninfo.conninfo_to_dict(server_url)
    params["dbname"] = name
    return psycopg.conninfo.make_conninfo(**params)


def _centre_and_token(url: str, code: str = "BENCH") -> tuple[int, str]:
    from registry.centres.store import add_centre
    from registry.tokens.store import issue_token

    with psycopg.connect(url, row_factory=dict_row) as conn:
        centre = add_centre(conn, code, "Benchmark centre")
        _, token = issue_token(conn, centre["id"], "submitter", "bench")
    return centre["id"], token


def run(server_url: str, sizes: list[int], revision: str = "head", api_without_report_triggers: bool = False) -> None:
    template_url = _database(server_url, TEMPLATE)
    migrate.upgrade(template_url, revision)
    print(f"schema at revision {revision}"
          + ("; the API's database WITHOUT the report triggers (its reports are not maintained)"
             if api_without_report_triggers else ""))
    print(f"{'operations':>10}  {'COPY':>13}  {'COPY, no report triggers':>24}  {'API (POST JSON)':>15}  "
          f"{'API/COPY':>8}  {'API/COPY no triggers':>20}  {'resend (unchanged)':>18}  {'API (POST CSV)':>15}")
    (ROOT / "var").mkdir(exist_ok=True)
    log = open(ROOT / "var" / "bench-ingest-gunicorn.log", "ab")
    copy_name, bare_name, api_name = (f"registry_bench_ingest_{kind}_{RUN}" for kind in ("copy", "bare", "api"))
    disabled = []
    figures = []
    for size in sizes:
        batch = documents(size)
        body = json.dumps(batch).encode()
        csv_text = csv_body(batch)

        copy_url = _database(server_url, copy_name, TEMPLATE)
        centre_id, _ = _centre_and_token(copy_url)
        rows = baseline_rows(batch, centre_id)
        copy_seconds = copy_baseline(copy_url, centre_id, rows)
        bare_url = _database(server_url, bare_name, TEMPLATE)
        centre_id, _ = _centre_and_token(bare_url)
        disabled = disable_report_triggers(bare_url)
        bare_seconds = copy_baseline(bare_url, centre_id, rows)
        _drop(server_url, copy_name, bare_name)

        api_url = _database(server_url, api_name, TEMPLATE)
        if api_without_report_triggers:  # what the write path costs once report maintenance leaves it
            disable_report_triggers(api_url)
        _, token = _centre_and_token(api_url)
        _, csv_token = _centre_and_token(api_url, "BENCH-CSV")  # the same records again, as another centre
        port = _free_port()
        server = start_gunicorn(api_url, port, log)
        maintainer = start_maintainer(api_url, log) if has_report_queue(api_url) else None
        catch_up = float("nan")
        try:
            api_seconds, answer = post(port, token, body)
            assert answer["created"] == size, {k: answer[k] for k in ("created", "updated", "unchanged", "rejected")}
            if maintainer:
                catch_up = seconds_until_maintained(api_url)
            resend_seconds, again = post(port, token, body)
            assert again["unchanged"] == size, again["status"]
            csv_seconds, from_csv = post(port, csv_token, csv_text, "text/csv")
            assert from_csv["created"] == size, from_csv["status"]
            peak = peak_worker_memory(server)
        finally:
            server.terminate()
            server.wait(timeout=30)
            if maintainer:
                maintainer.terminate()
                maintainer.wait(timeout=30)
        _drop(server_url, api_name)
        figures.append((size, size / api_seconds, copy_seconds / api_seconds, bare_seconds / api_seconds))
        print(f"{size:>10,}  {size / copy_seconds:>7,.0f} ops/s  {size / bare_seconds:>18,.0f} ops/s  "
              f"{size / api_seconds:>9,.0f} ops/s  {copy_seconds / api_seconds:>7.2f}x  "
              f"{bare_seconds / api_seconds:>19.2f}x  {size / resend_seconds:>12,.0f} ops/s  "
              f"{size / csv_seconds:>9,.0f} ops/s"
              f"   ({len(body) / 1e6:,.1f} MB JSON, {len(csv_text) / 1e6:,.1f} MB CSV; API {api_seconds:.1f} s,"
              f" COPY {copy_seconds:.1f} s, without report triggers {bare_seconds:.1f} s;"
              f" peak worker RSS {peak / 1e6:,.0f} MB; report maintainer caught up {catch_up:.1f} s after the"
              f" answer)",
              flush=True)
    _drop(server_url, TEMPLATE)
    print(f"\nCOPY without report triggers: {', '.join(disabled) or 'none found'} disabled")
    size, rate, share, bare_share = figures[-1]
    print(f"targets at {size:,} operations (issue 14): >= 5,000 ops/s: {rate:,.0f}  {'met' if rate >= 5000 else 'MISSED'};"
          f" >= 0.3x COPY without report triggers: {bare_share:.2f}x  {'met' if bare_share >= 0.3 else 'MISSED'}"
          f" (with them: {share:.2f}x)")


def has_report_queue(url: str) -> bool:
    """The schema queues report changes for a maintainer (migration 0011 on)."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass('report_changes') IS NOT NULL").fetchone()[0]


def start_maintainer(url: str, log) -> subprocess.Popen:
    """`registry maintain-reports` beside gunicorn, as `registry serve` runs one."""
    environment = dict(os.environ, DATABASE_URL=url, REGISTRY_SECRET=SECRET, LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-c", "from registry.cli import main; main()", "maintain-reports"],
                            env=environment, cwd=ROOT, stdout=log, stderr=log)


def seconds_until_maintained(url: str) -> float:
    """From now until the maintainer has folded every queued change into the aggregates."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute("SELECT EXISTS (SELECT FROM report_changes)").fetchone()[0]:
            time.sleep(0.1)
    return time.perf_counter() - started


def _drop(server_url: str, *names: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL server (any database; the bench makes its own); "
                                               "default: the embedded server in var/bench-pgdata")
    parser.add_argument("--sizes", default="1000,100000", help="batch sizes, comma-separated")
    parser.add_argument("--revision", default="head",
                        help="migrate the bench databases to this revision (e.g. 0001: without the report "
                             "aggregates' triggers, to see what they cost)")
    parser.add_argument("--api-without-report-triggers", action="store_true",
                        help="disable the report triggers in the API's database too: the write path's own cost, "
                             "without report maintenance (its reports are wrong; for comparing write paths)")
    arguments = parser.parse_args()
    server_url = arguments.database_url
    if server_url is None:
        from registry.embedded import start_embedded_server

        server_url = start_embedded_server(ROOT / "var" / "bench-pgdata", database="postgres")
    run(server_url, [int(size) for size in arguments.sizes.split(",")], arguments.revision,
        arguments.api_without_report_triggers)


if __name__ == "__main__":
    main()
