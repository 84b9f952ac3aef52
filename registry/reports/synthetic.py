"""A synthetic registry of N operations for benchmarks, loaded fast with COPY.

    registry generate --operations 1000000          (into the configured database)
    python -m bench.generate --operations 1000000 --database-url postgresql://... [--fresh]

Rows are written with triggers and foreign-key checks off (session_replication_role =
replica), since the generator makes them consistent by construction; the report aggregates
are then rebuilt in one pass by `report_rebuild()`. The distributions follow a spine registry:
skewed centre sizes, lumbar and cervical regions first, posterior approach first, blood loss
log-normal around 300 mL rounded as surgeons record it, a few per cent of operations with an
intraoperative event, follow-ups at 3 to 60 months, 1 % of patients with consent withdrawn.
"""

import datetime as dt
import io
import math
import multiprocessing
import queue
import random
import time

import psycopg

from registry import vocabulary as v

CHUNK = 50_000  # operations per COPY batch
SHARED_ID_TABLES = ("intraop_events", "postop_complications", "implants")
PER_CENTRE_ID_TABLES = ("patients", "operations", "follow_ups")

REGIONS = (["lumbar"] * 38 + ["cervical"] * 28 + ["thoracic"] * 8 + ["thoracolumbar"] * 6 + ["lumbosacral"] * 6
           + ["cervicothoracic"] * 3 + ["craniocervical"] * 2 + ["femur"] * 3 + ["tibia"] * 2 + ["hip"] * 2
           + ["upper_limb"] + ["skull"])
SPAN = {"lumbar": (20, 24), "cervical": (1, 7), "thoracic": (8, 19), "thoracolumbar": (17, 22),
        "lumbosacral": (22, 25), "cervicothoracic": (5, 10), "craniocervical": (0, 3)}
APPROACHES = ["posterior"] * 60 + ["anterior"] * 20 + ["combined"] * 7 + ["lateral"] * 5 + ["percutaneous"] * 4 + [None] * 4
INDICATIONS = (["spinal_stenosis"] * 25 + ["cervical_spondylotic_myelopathy"] * 18 + ["radiculopathy"] * 12
               + ["spondylolisthesis"] * 10 + ["fracture"] * 10 + ["deformity"] * 6 + ["instability"] * 5
               + ["pseudarthrosis"] * 3 + ["tumour"] * 2 + ["infection"] * 2 + ["other"] * 2 + [None] * 5)
PROCEDURE_SETS = ([("fusion", "laminectomy")] * 22 + [("laminectomy",)] * 14 + [("discectomy",)] * 12
                  + [("discectomy", "fusion")] * 12 + [("fusion",)] * 10 + [("laminoplasty",)] * 6
                  + [("corpectomy", "fusion")] * 5 + [("decompression_without_fusion",)] * 5
                  + [("fracture_fixation",)] * 5 + [("deformity_correction", "fusion", "osteotomy")] * 3
                  + [("revision", "fusion")] * 3 + [("implant_removal",)] * 2 + [("arthroplasty",)] * 1)
DIAGNOSES = (["ado_ii"] * 30 + ["pycnodysostosis"] * 14 + ["melorheostosis"] * 12 + ["aro"] * 8 + ["iro"] * 8
             + ["osteopoikilosis"] * 8 + ["camurati_engelmann"] * 7 + ["sclerosteosis"] * 5 + ["van_buchem"] * 4
             + ["other_sclerosing"] * 4)
EVENTS = (["dural_tear"] * 30 + ["instrument_breakage"] * 20 + ["excessive_bleeding"] * 15
          + ["iatrogenic_fracture"] * 10 + ["neuromonitoring_change"] * 8 + ["implant_malposition"] * 6
          + ["nerve_injury"] * 4 + ["vascular_injury"] * 2 + ["wrong_level"] * 1 + ["other"] * 4)
INSTRUMENTS = ["drill_bit"] * 5 + ["tap"] * 2 + ["screw"] * 2 + ["burr"] + ["kerrison"]
COMPLICATIONS = list(v.POSTOP_COMPLICATION)
GRADES = ["I"] * 35 + ["II"] * 30 + ["IIIa"] * 12 + ["IIIb"] * 12 + ["IVa"] * 5 + ["IVb"] * 3 + ["V"] * 1
IMPLANT_KINDS = ["pedicle_screw"] * 5 + ["lateral_mass_screw"] * 2 + ["rod"] * 3 + ["plate"] + ["cage"]
FOLLOW_UP_MONTHS = [3, 6, 12, 24, 36, 60]
FUSION = ["fused"] * 70 + ["not_fused"] * 10 + ["indeterminate"] * 10 + ["not_assessed"] * 5 + [None] * 5
IMPLANT_STATUS = ["intact"] * 85 + ["loosening"] * 5 + ["migration"] * 2 + ["breakage"] * 3 + ["removed"] * 2 + [None] * 3
FIRST_DAY = dt.date(2000, 1, 1)
DAYS = (dt.date(2025, 12, 31) - FIRST_DAY).days


def _text(value) -> str:
    if value is None:
        return "\\N"
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "t" if value else "f"
    if kind is list or kind is tuple:
        return "{" + ",".join(value) + "}"
    return str(value)


def _line(*values) -> str:
    return "\t".join(map(_text, values)) + "\n"


def _rounded_blood_loss(rng) -> int | None:
    if rng.random() < 0.06:
        return None
    value = math.exp(rng.gauss(math.log(300), 0.8))
    step = 50 if rng.random() < 0.6 else 10  # estimated blood loss is mostly recorded in 50s
    return min(50_000, int(round(value / step) * step))


def _duration(rng) -> int | None:
    if rng.random() < 0.05:
        return None
    return max(10, min(2880, int(round(math.exp(rng.gauss(math.log(160), 0.45)) / 5) * 5)))


def centre_count(operations: int) -> int:
    return max(10, min(200, operations // 20_000))


def generate(conn: psycopg.Connection, operations: int, seed: int = 1, log=print) -> dict:
    """Load `operations` operations (plus patients and children) into an empty registry.

    The rows are made in a worker process while this one copies the previous batch in, so
    making rows (Python) and storing them (the server) overlap.
    """
    centres = centre_count(operations)
    started = time.perf_counter()
    scalars = conn.cursor(row_factory=psycopg.rows.tuple_row)
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("SET LOCAL synchronous_commit = off")
        first_centre = scalars.execute("SELECT coalesce(max(id), 0) + 1 FROM centres").fetchone()[0]
        with conn.cursor().copy("COPY centres (id, code, name) FROM STDIN") as copy:
            for index in range(centres):
                copy.write(_line(first_centre + index, f"BENCH-{index + 1:03d}", f"Bench centre {index + 1}"))
        centre_ids = list(range(first_centre, first_centre + centres))
        ids = {table: scalars.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
               for table in SHARED_ID_TABLES}
        # public ids count per centre (migration 0005), and these centres are new
        ids |= {table: dict.fromkeys(centre_ids, 0) for table in PER_CENTRE_ID_TABLES}
        counts = dict.fromkeys(ids, 0)
        context = multiprocessing.get_context("spawn")  # no inherited connections or threads
        batches = context.Queue(maxsize=2)
        maker = context.Process(target=_make_batches, args=(batches, operations, seed, centre_ids, ids),
                                daemon=True)
        maker.start()
        try:
            while True:
                done, data = _next_batch(batches, maker)
                if done is None:
                    ids = data
                    break
                for table, text in data.items():
                    with conn.cursor().copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
                        copy.write(text)
                    counts[table] += text.count(b"\n")
                log(f"  {done:,} operations written ({time.perf_counter() - started:.0f} s)")
            maker.join()
        finally:
            if maker.is_alive():
                maker.terminate()
                maker.join()
        for table in SHARED_ID_TABLES:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", (max(ids[table], 1),))
        conn.execute("SELECT setval(pg_get_serial_sequence('centres', 'id'), %s)", (first_centre + centres - 1,))
        # the centres' own id sequences, which their insert trigger (off here) would have made
        conn.execute("SELECT centre_ids_ensure(id) FROM centres WHERE id >= %s", (first_centre,))
    loaded = time.perf_counter()
    log(f"  base tables loaded in {loaded - started:.0f} s: {counts}")
    conn.execute("ANALYZE")
    with conn.transaction():
        conn.execute("SET LOCAL work_mem = '256MB'")
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 2")
        counted = scalars.execute("SELECT report_rebuild()").fetchone()[0]
    rebuilt = time.perf_counter()
    log(f"  report aggregates rebuilt in {rebuilt - loaded:.0f} s ({counted:,} counted operations)")
    conn.execute("VACUUM ANALYZE")  # all-visible pages: the reports' index-only scans
    log(f"  vacuumed and analysed in {time.perf_counter() - rebuilt:.0f} s")
    return {"centres": centres, **counts, "seconds": time.perf_counter() - started}


def _next_batch(batches, maker):
    while True:
        try:
            return batches.get(timeout=5)
        except queue.Empty:
            if not maker.is_alive():
                raise RuntimeError(f"the row maker exited with code {maker.exitcode}") from None


def _make_batches(batches, operations: int, seed: int, centre_ids: list, ids: dict) -> None:
    """In the worker process: put (operations done, {table: COPY text}) per batch, then
    (None, the last id of each table)."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 0.8 for rank in range(len(centre_ids))]  # a few big centres, many small
    done = 0
    while done < operations:
        batch = min(CHUNK, operations - done)
        buffers = {table: io.StringIO() for table in ids}
        patients_of_centre = {}
        for _ in range(batch):
            centre = rng.choices(centre_ids, weights)[0]
            known = patients_of_centre.setdefault(centre, [])
            if known and rng.random() < 0.25:
                patient, diagnosis = rng.choice(known)
            else:
                ids["patients"][centre] += 1  # ref_hash is bytea: \\x + hex in COPY text format
                patient, diagnosis = ids["patients"][centre], rng.choice(DIAGNOSES)
                known.append((patient, diagnosis))
                buffers["patients"].write(_line(
                    centre, patient, "\\\\x" + rng.randbytes(16).hex(), rng.choice(["male", "female"]),
                    rng.randrange(1930, 2015), diagnosis,
                    "withdrawn" if rng.random() < 0.01 else "active"))
            ids["operations"][centre] += 1
            operation = ids["operations"][centre]
            _operation(rng, buffers, ids, centre, patient, operation)
        done += batch
        batches.put((done, {table: buffer.getvalue().encode() for table, buffer in buffers.items()}))
    batches.put((None, ids))


COLUMNS = {
    "patients": "centre_id, id, ref_hash, sex, birth_year, diagnosis, consent",
    "operations": ("centre_id, id, patient_id, local_ref, operation_date, indication, region, approach, procedures,"
                   " level_from, level_to, vertebra_count, segment_count, instrumented, duration_min,"
                   " blood_loss_ml, preop_joa, preop_mjoa"),
    "intraop_events": "centre_id, id, operation_id, position, type, instrument, retained_fragment, grade",
    "postop_complications": "centre_id, id, operation_id, position, type, days_after, grade",
    "implants": "centre_id, id, operation_id, position, kind, level, side",
    "follow_ups": ("centre_id, id, operation_id, follow_up_date, months_after, fusion_status, implant_status,"
                   " joa, mjoa, revision_surgery"),
}


def _operation(rng, buffers, ids, centre, patient, operation) -> None:
    region = rng.choice(REGIONS)
    levels = None
    if region in SPAN:
        low, high = SPAN[region]
        start = rng.randint(low, high)
        end = min(high + 1, start + min(7, int(rng.expovariate(0.6))))
        levels = (v.SPINAL_LEVELS[start], v.SPINAL_LEVELS[end])
    vertebrae, segments = v.level_counts(*levels) if levels else (None, None)
    # more operations in later years
    day = int(DAYS * math.sqrt(rng.random()))
    date = FIRST_DAY + dt.timedelta(days=day)
    procedures = rng.choice(PROCEDURE_SETS)
    instrumented = "fusion" in procedures and rng.random() < 0.85 or rng.random() < 0.05
    cervical = region in ("cervical", "craniocervical", "cervicothoracic")
    joa = rng.randrange(4, 34) / 2 if cervical and rng.random() < 0.8 else None
    mjoa = rng.randrange(5, 18) if cervical and rng.random() < 0.5 else None
    buffers["operations"].write(_line(
        centre, operation, patient, f"OP-{operation}", date, rng.choice(INDICATIONS), region,
        rng.choice(APPROACHES), procedures, levels[0] if levels else None, levels[1] if levels else None,
        vertebrae, segments, instrumented, _duration(rng), _rounded_blood_loss(rng), joa, mjoa))
    if rng.random() < 0.12:
        for position in range(1 if rng.random() < 0.8 else 2):
            event = rng.choice(EVENTS)
            ids["intraop_events"] += 1
            buffers["intraop_events"].write(_line(
                centre, ids["intraop_events"], operation, position, event,
                rng.choice(INSTRUMENTS) if event == "instrument_breakage" else None,
                rng.random() < 0.5 if event == "instrument_breakage" else None, rng.choice(["I", "II", "III"])))
    if rng.random() < 0.15:
        for position in range(1 if rng.random() < 0.85 else 2):
            ids["postop_complications"] += 1
            buffers["postop_complications"].write(_line(
                centre, ids["postop_complications"], operation, position, rng.choice(COMPLICATIONS),
                rng.randrange(0, 90), rng.choice(GRADES)))
    if instrumented:
        for position in range(rng.randint(2, 6)):
            ids["implants"] += 1
            buffers["implants"].write(_line(
                centre, ids["implants"], operation, position, rng.choice(IMPLANT_KINDS),
                levels[0] if levels else None, rng.choice(["left", "right"])))
    horizon = (dt.date(2026, 6, 30) - date).days // 30
    for months in FOLLOW_UP_MONTHS:
        if months > horizon or rng.random() < 0.45:
            continue
        ids["follow_ups"][centre] += 1
        follow_joa = min(17.0, joa + rng.randrange(-4, 9) / 2) if joa is not None and rng.random() < 0.7 else None
        buffers["follow_ups"].write(_line(
            centre, ids["follow_ups"][centre], operation, date + dt.timedelta(days=months * 30 + rng.randrange(0, 14)),
            months, rng.choice(FUSION) if "fusion" in procedures and months >= 6 else None,
            rng.choice(IMPLANT_STATUS) if instrumented else None,
            max(0.0, follow_joa) if follow_joa is not None else None,
            min(18, mjoa + rng.randrange(-2, 5)) if mjoa is not None and rng.random() < 0.7 else None,
            rng.random() < 0.03))


def recreate_database(url: str) -> None:
    """Drop and create the database the URL names (on the same server)."""
    from psycopg import sql

    params = psycopg.conninfo.conninfo_to_dict(url)
    name = params["dbname"]
    admin = psycopg.conninfo.make_conninfo(**{**params, "dbname": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
