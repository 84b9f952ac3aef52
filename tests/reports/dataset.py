"""A seeded random registry written straight into the base tables, read back as plain
records, and a reference computation of every report figure in Python (independent of the
SQL: it works from the raw rows, with the statistics module for quantiles)."""

import datetime as dt
import math
import random
import statistics
from fractions import Fraction

from registry import vocabulary as v
from registry.reports import suppression
from registry.reports.store import REPORTERS

DIAGNOSES = list(v.DIAGNOSIS)
REGIONS = ["cervical", "cervical", "lumbar", "thoracic", "femur", "craniocervical", "tibia"]
APPROACHES = ["posterior", "posterior", "anterior", "combined", None]
INDICATIONS = ["cervical_spondylotic_myelopathy", "fracture", "spinal_stenosis", None]
PROCEDURES = ["laminectomy", "fusion", "discectomy", "fracture_fixation", "osteotomy"]
EVENT_TYPES = list(v.INTRAOP_EVENT)
GRADES = list(v.CLAVIEN_DINDO_GRADE)
REPORTED_BY = ["surgeon", "surgeon", "patient_reported", "chart_review", "claims", None]
FUSION = ["fused", "not_fused", "indeterminate", "not_assessed", None]
IMPLANT = ["intact", "intact", "loosening", "migration", "breakage", "removed", None]


def add_patient(conn, rng, centre_id, consent="active"):
    return conn.execute(
        "INSERT INTO patients (centre_id, ref_hash, diagnosis, consent) VALUES (%s, %s, %s, %s) RETURNING id",
        (centre_id, rng.randbytes(16), rng.choice(DIAGNOSES), consent)).fetchone()["id"]


def add_operation(conn, rng, centre_id, patient_id, serial, recording=None):
    if recording is None:  # by what the schema can hold
        recording = schema_records_recording(conn)
    region = rng.choice(REGIONS)
    levels = None
    if region in v.SPINAL_REGIONS:
        start = rng.randrange(1, 20)
        end = min(len(v.SPINAL_LEVELS) - 2, start + rng.randrange(0, 5))
        levels = (v.SPINAL_LEVELS[start], v.SPINAL_LEVELS[end])
    vertebrae = v.level_counts(*levels)[0] if levels else None
    date = dt.date(2012, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 10))
    procedures = sorted(set(rng.sample(PROCEDURES, rng.choice([1, 1, 2, 3]))))
    joa = rng.choice([None, None, *[x / 2 for x in range(0, 35)]]) if region.startswith("c") else None
    row = conn.execute(
        """INSERT INTO operations (centre_id, patient_id, local_ref, operation_date, indication, region,
               approach, procedures, level_from, level_to, vertebra_count, instrumented, duration_min,
               blood_loss_ml, preop_joa, preop_mjoa)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (centre_id, patient_id, f"op-{serial}", date, rng.choice(INDICATIONS), region, rng.choice(APPROACHES),
         procedures, levels[0] if levels else None, levels[1] if levels else None, vertebrae,
         rng.random() < 0.4, rng.choice([None, *range(40, 400, 7)]),
         rng.choice([None, 0, 50, 100, 150, 300, 300, 450, 800, 1200, 2500]), joa,
         rng.choice([None, *range(0, 19)]) if joa is not None else None)).fetchone()
    operation_id = row["id"]
    # timing, ClassIntra grades and imaging methods come from a side generator, so that the
    # main sequence (and every other value) is what it was before they were added
    side = random.Random(f"{serial}")
    events = rng.choice([0, 0, 0, 1, 2])
    for position in range(events):
        event_type = rng.choice(EVENT_TYPES)
        conn.execute(
            "INSERT INTO intraop_events (centre_id, operation_id, position, type, instrument, grade)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (centre_id, operation_id, position, event_type,
             rng.choice(list(v.INSTRUMENT)) if event_type == "instrument_breakage" else None,
             side.choice([None, "I", "II", "III", "IV"])))
    complications = rng.choice([0, 0, 1, 2])
    for position in range(complications):
        conn.execute(
            "INSERT INTO postop_complications (centre_id, operation_id, position, type, grade, days_after)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (centre_id, operation_id, position, rng.choice(list(v.POSTOP_COMPLICATION)), rng.choice(GRADES),
             side.choice([None, 2, 14, 30, 31, 60, 90, 91, 400])))
    for position in range(rng.choice([0, 0, 1, 2, 3])):
        conn.execute(
            "INSERT INTO implants (centre_id, operation_id, position, kind) VALUES (%s, %s, %s, %s)",
            (centre_id, operation_id, position, rng.choice(list(v.IMPLANT_KIND))))
    if recording:
        # who reported each event and complication (a generator of its own; None: not recorded)
        reporter = random.Random(f"reporter-{serial}")
        for table, count in (("intraop_events", events), ("postop_complications", complications)):
            for position in range(count):
                conn.execute(f"UPDATE {table} SET reported_by = %s WHERE centre_id = %s AND operation_id = %s"
                             " AND position = %s", (reporter.choice(REPORTED_BY), centre_id, operation_id, position))
        # issue 15: some operations without events or complications did not record them, some
        # record a transfusion (a generator of its own, so the others' values stay as they were)
        unknown = random.Random(f"recorded-{serial}")
        conn.execute(
            "UPDATE operations SET intraop_events_recorded = %s, postop_complications_recorded = %s, transfusion = %s"
            " WHERE centre_id = %s AND id = %s",
            (bool(events) or unknown.random() > 0.3, bool(complications) or unknown.random() > 0.3,
             unknown.choice([None, True, False]), centre_id, operation_id))
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        add_follow_up(conn, rng, centre_id, operation_id, date, recording)
    return operation_id


def add_follow_up(conn, rng, centre_id, operation_id, operation_date, recording=None):
    if recording is None:  # by what the schema can hold
        recording = schema_records_recording(conn)
    months = rng.choice([0, 3, 6, 12, 12, 18, 24, 36, 60])
    date = operation_date + dt.timedelta(days=months * 30 + rng.randrange(0, 20))
    revision = rng.random() < 0.1
    if recording and not revision and random.Random(f"revision-{operation_id}-{date}").random() < 0.2:
        revision = None  # not recorded
    assessment = random.Random(f"{operation_id}-{date}").choice([None, *v.ASSESSMENT])  # side generator
    conn.execute(
        """INSERT INTO follow_ups (centre_id, operation_id, follow_up_date, months_after, fusion_status,
               implant_status, joa, mjoa, revision_surgery, assessment)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (centre_id, operation_id, date, months, rng.choice(FUSION), rng.choice(IMPLANT),
         rng.choice([None, *[x / 2 for x in range(0, 35)]]), rng.choice([None, *range(0, 19)]), revision,
         assessment))


def schema_records_recording(conn) -> bool:
    """Whether the schema has issue 15's "not recorded" columns (migration 0012 and later)."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name ="
                       " 'operations' AND column_name = 'intraop_events_recorded') AS e").fetchone()
    return row["e"] if isinstance(row, dict) else row[0]


def generate(conn, centre_ids, seed=5, operations=150, withdrawn_share=0.1, recording=None):
    """Patients and operations spread over the centres, in one transaction. `recording`: some
    operations and follow-ups record events, complications or revision as not recorded; by
    default when the schema can (migration 0012 and later)."""
    if recording is None:
        recording = schema_records_recording(conn)
    rng = random.Random(seed)
    with conn.transaction():
        patients = []
        for index in range(operations // 2):
            centre = centre_ids[index % len(centre_ids)] if index % 5 else centre_ids[0]
            consent = "withdrawn" if rng.random() < withdrawn_share else "active"
            patients.append((centre, add_patient(conn, rng, centre, consent)))
        for serial in range(operations):
            centre, patient = rng.choice(patients)
            add_operation(conn, rng, centre, patient, serial, recording)
    return rng


# --- reading the registry back as plain records --------------------------------------------

def load(conn):
    """The registry's base tables as Python records (plain SELECTs, no report logic)."""
    centres = {r["id"]: r["code"] for r in conn.execute("SELECT id, code FROM centres")}
    patients = {(r["centre_id"], r["id"]): r for r in conn.execute("SELECT * FROM patients")}
    operations = []
    children = {}
    for table in ("intraop_events", "postop_complications", "implants", "follow_ups"):
        for row in conn.execute(f"SELECT * FROM {table}"):
            children.setdefault((table, row["centre_id"], row["operation_id"]), []).append(row)
    for row in conn.execute("SELECT * FROM operations"):
        key = (row["centre_id"], row["id"])
        operations.append({
            **row,
            "patient": patients[(row["centre_id"], row["patient_id"])],
            "centre": centres[row["centre_id"]],
            "events": children.get(("intraop_events",) + key, []),
            "complications": children.get(("postop_complications",) + key, []),
            # listed events or complications are recorded, whatever the flag (report facts, migration 0012)
            "intraop_events_recorded": (row.get("intraop_events_recorded", True)
                                        or bool(children.get(("intraop_events",) + key))),
            "postop_complications_recorded": (row.get("postop_complications_recorded", True)
                                              or bool(children.get(("postop_complications",) + key))),
            "implants": children.get(("implants",) + key, []),
            "follow_ups": children.get(("follow_ups",) + key, []),
        })
    return operations


# --- the reference computation -----------------------------------------------------------

def group_keys(operation, dims):
    """Every group the operation belongs to (several when grouped by procedure)."""
    values = {
        "approach": [operation["approach"]],
        "region": [operation["region"]],
        "procedure": list(operation["procedures"]),
        "diagnosis": [operation["patient"]["diagnosis"]],
        "indication": [operation["indication"]],
        "instrumented": [is_instrumented(operation)],
        "levels": [operation["vertebra_count"]],
        "year": [operation["operation_date"].year],
        "centre": [operation["centre"]],
    }
    keys = [()]
    for d in dims:
        keys = [key + (value,) for key in keys for value in values[d]]
    return keys


def is_instrumented(operation):
    return operation["instrumented"] or bool(operation["implants"])


def counted(operations):
    return [o for o in operations if o["patient"]["consent"] == "active"]


def groups(operations, dims):
    result = {}
    for operation in counted(operations):
        for key in group_keys(operation, dims):
            result.setdefault(key, []).append(operation)
    return result


def wilson(x, n):
    z = 1.959964
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if x == 0 else max(0.0, centre - half)
    high = 1.0 if x == n else min(1.0, centre + half)
    return low, high


# How a reader sees the count of a set of operations: exactly (a submitter's own centre), or
# perturbed by the cell key of those operations (cross-centre readers).
def exact(ops):
    return len(ops)


def perturbed_at(threshold):
    """Counting as a cross-centre reader does at this threshold; its `statistics_min` is the
    published n a summary needs for its statistics (registry.reports.service.enforce_primary)."""
    def count(ops):
        return suppression.perturb(len(ops), sum(o["record_key"] for o in ops))
    count.statistics_min = threshold + suppression.MAX_NOISE
    return count


perturbed = perturbed_at(1)  # the threshold of the report tests' settings


def proportion(x_ops, n_ops, count=exact):
    x, n = count(x_ops), count(n_ops)
    x = min(x, n)  # perturbed, a numerator within a few of its denominator can pass it
    if n == 0:
        return {"numerator": 0, "denominator": 0, "rate": None, "ci_low": None, "ci_high": None}
    low, high = wilson(x, n)
    return {"numerator": x, "denominator": n, "rate": x / n, "ci_low": low, "ci_high": high}


def summary(pairs, count=exact):
    """Summary of the (operation, value) pairs; perturbed, n is the published count of those
    operations and the mean that of the values with n' - n more at the median."""
    values = [Fraction(value) for _, value in pairs]
    n = count([o for o, _ in pairs])
    if not values or n == 0:
        return {"n": 0, "mean": None, "median": None, "q1": None, "q3": None}
    if n < getattr(count, "statistics_min", 0):
        return {"n": n, "mean": None, "median": None, "q1": None, "q3": None}
    if len(values) == 1:
        q1 = median = q3 = float(values[0])
    else:
        q1, median, q3 = (float(q) for q in statistics.quantiles(values, n=4, method="inclusive"))
    mean = (sum(values) + (n - len(values)) * Fraction(median)) / n
    return {"n": n, "mean": float(mean), "median": median, "q1": q1, "q3": q3}


def latest(follow_ups, condition):
    chosen = [f for f in follow_ups if condition(f)]
    return max(chosen, key=lambda f: (f["follow_up_date"], f["months_after"], f["id"])) if chosen else None


def complications(ops, count=exact, window=None, window_cutoff=None, major="clavien"):
    """window: days (None: any time); window_cutoff: operations on or before it are old enough."""
    def rate(condition, base=ops):
        return proportion([o for o in base if condition(o)], base, count)

    def is_major(o, within):
        severe = major == "clavien_or_classintra" and any(e["grade"] in ("III", "IV", "V") for e in o["events"])
        return severe or any(c["grade"] in v.MAJOR_CLAVIEN_DINDO and within(c) for c in o["complications"])

    # each rate over the operations where its item was recorded (issue 15)
    intraop_recorded = [o for o in ops if o["intraop_events_recorded"]]
    postop_recorded = [o for o in ops if o["postop_complications_recorded"]]
    types = {t: rate(lambda o, t=t: any(e["type"] == t for e in o["events"]), intraop_recorded) for t in EVENT_TYPES}
    postop = {}
    if window is None:
        def reported(items, source):
            return any((item["reported_by"] or "not_recorded") == source for item in items)

        postop["intraop_event_by_reporter"] = {source: rate(lambda o, s=source: reported(o["events"], s),
                                                            intraop_recorded) for source in REPORTERS}
        postop["postop_complication_by_reporter"] = {
            source: rate(lambda o, s=source: reported(o["complications"], s), postop_recorded)
            for source in REPORTERS}
        postop["postop_complication"] = rate(lambda o: o["complications"], postop_recorded)
        postop["major_complication"] = rate(lambda o: is_major(o, lambda c: True), postop_recorded)
        postop["postop_complications_not_recorded"] = rate(lambda o: not o["postop_complications_recorded"])
    else:
        due = [o for o in ops if o["operation_date"] <= window_cutoff]
        eligible = [o for o in due if o["postop_complications_recorded"]]
        postop["postop_complications_not_recorded"] = rate(lambda o: not o["postop_complications_recorded"], due)

        def within(c):
            return c["days_after"] is not None and c["days_after"] <= window

        def untimed(c):
            return c["days_after"] is None

        postop["postop_complication"] = rate(lambda o: any(within(c) for c in o["complications"]), eligible)
        postop["major_complication"] = rate(lambda o: is_major(o, within), eligible)
        postop["postop_timing_not_recorded"] = rate(
            lambda o: not any(within(c) for c in o["complications"]) and any(untimed(c) for c in o["complications"]),
            eligible)
        postop["major_timing_not_recorded"] = rate(
            lambda o: not is_major(o, within) and any(untimed(c) and c["grade"] in v.MAJOR_CLAVIEN_DINDO
                                                      for c in o["complications"]), eligible)
    return {
        "operations": count(ops),
        "intraop_event": rate(lambda o: o["events"], intraop_recorded),
        "instrument_breakage": types["instrument_breakage"],
        "intraop_event_types": types,
        "intraop_events_not_recorded": rate(lambda o: not o["intraop_events_recorded"]),
        **postop,
        "blood_loss_ml": summary([(o, o["blood_loss_ml"]) for o in ops if o["blood_loss_ml"] is not None], count),
        "duration_min": summary([(o, o["duration_min"]) for o in ops if o["duration_min"] is not None], count),
    }


def fusion(ops, min_months=12, count=exact, assessment=None, failure_window=None):
    """assessment: only fusion operations whose deciding follow-up used one of these methods;
    failure_window: implant failure and revision within that many months, over operations whose
    status then is known (the event by then, or a follow-up at or after it)."""
    assessed, undecided = [], []  # (operation, status of the deciding follow-up)
    for o in ops:
        later = [f for f in o["follow_ups"] if f["months_after"] >= min_months]
        if "fusion" not in o["procedures"] or not later:
            continue
        deciding = latest(later, lambda f: f["fusion_status"] in ("fused", "not_fused"))
        chosen = deciding or latest(later, lambda f: True)
        if assessment is not None and chosen["assessment"] not in assessment:
            continue
        (assessed if deciding else undecided).append((o, chosen["fusion_status"]))
    decided = [o for o, _ in assessed]
    followed_to_min = decided + [o for o, _ in undecided]
    instrumented_followed = [o for o in ops if is_instrumented(o) and o["follow_ups"]]
    followed = [o for o in ops if o["follow_ups"]]

    def first_at(o, condition):
        return min((f["months_after"] for f in o["follow_ups"] if condition(f)), default=None)

    def by_window(o, condition):
        at = first_at(o, condition)
        return at is not None and at <= failure_window

    def known(o, condition, seen=lambda f: True):
        return by_window(o, condition) or max((f["months_after"] for f in o["follow_ups"] if seen(f)),
                                              default=-1) >= failure_window

    def failed(f):
        return f["implant_status"] in v.IMPLANT_FAILURE_STATUSES

    def revised(f):
        return f["revision_surgery"]

    def revision_recorded(f):
        return f["revision_surgery"] is not None

    # revision: over the operations with a follow-up that recorded it, yes or no (issue 15)
    revision_followed = [o for o in followed if any(revision_recorded(f) for f in o["follow_ups"])]
    if failure_window is None:
        implant_failure = proportion([o for o in instrumented_followed if any(failed(f) for f in o["follow_ups"])],
                                     instrumented_followed, count)
        revision = proportion([o for o in followed if any(revised(f) for f in o["follow_ups"])], revision_followed,
                              count)
    else:
        implant_known = [o for o in instrumented_followed if known(o, failed)]
        revision_known = [o for o in followed if known(o, revised, revision_recorded)]
        implant_failure = proportion([o for o in implant_known if by_window(o, failed)], implant_known, count)
        revision = proportion([o for o in revision_known if by_window(o, revised)], revision_known, count)
    return {
        "operations": count(ops),
        "fusion_operations": count([o for o in ops if "fusion" in o["procedures"]]),
        "fusion": proportion([o for o, status in assessed if status == "fused"], decided, count),
        "pseudarthrosis": proportion([o for o, status in assessed if status == "not_fused"], decided, count),
        "indeterminate": proportion([o for o, status in undecided if status == "indeterminate"], followed_to_min,
                                    count),
        "not_assessed": proportion([o for o, status in undecided if status in (None, "not_assessed")],
                                   followed_to_min, count),
        "implant_failure": implant_failure,
        "revision": revision,
    }


def visit_at_12_months(follow_ups):
    """The follow-up closest to 12 months within 9-15 that recorded JOA or mJOA (ties: the later)."""
    chosen = [f for f in follow_ups if 9 <= f["months_after"] <= 15 and (f["joa"] is not None or f["mjoa"] is not None)]
    if not chosen:
        return None
    return min(chosen, key=lambda f: (abs(f["months_after"] - 12), -f["months_after"],
                                      -f["follow_up_date"].toordinal(), -f["id"]))


def outcomes(ops, count=exact, timepoint="latest"):
    pre, post, recovery, mpre, mpost = [], [], [], [], []
    for o in ops:
        if timepoint == "12m":
            visit = visit_at_12_months(o["follow_ups"])
            last_joa = visit if visit and visit["joa"] is not None else None
            last_mjoa = visit if visit and visit["mjoa"] is not None else None
        else:
            # the latest visit that recorded either score; both scores from it
            visit = latest(o["follow_ups"], lambda f: f["joa"] is not None or f["mjoa"] is not None)
            last_joa = visit if visit and visit["joa"] is not None else None
            last_mjoa = visit if visit and visit["mjoa"] is not None else None
        if o["preop_joa"] is not None:
            pre.append((o, o["preop_joa"]))
        if last_joa:
            post.append((o, last_joa["joa"]))
        if o["preop_joa"] is not None and last_joa and o["preop_joa"] < 17:
            a, b = Fraction(o["preop_joa"]), Fraction(last_joa["joa"])
            recovery.append((o, (b - a) / (17 - a) * 100))
        if o["preop_mjoa"] is not None:
            mpre.append((o, o["preop_mjoa"]))
        if last_mjoa:
            mpost.append((o, last_mjoa["mjoa"]))
    return {"operations": count(ops), "joa_preop": summary(pre, count), "joa_latest": summary(post, count),
            "joa_recovery_rate": summary(recovery, count), "mjoa_preop": summary(mpre, count),
            "mjoa_latest": summary(mpost, count)}


def twelve_months_ago():
    today = dt.datetime.now(dt.timezone.utc).date()
    try:
        return today.replace(year=today.year - 1)
    except ValueError:  # 29 February
        return today.replace(year=today.year - 1, day=28)


def completeness(ops, count=exact, due_cutoff=None):
    """due_cutoff: operations on or before it are old enough for a 12-month follow-up (default:
    12 months ago; the generated registry's operations are all older than that at any grain)."""
    due_cutoff = due_cutoff or twelve_months_ago()
    due = [o for o in ops if o["operation_date"] <= due_cutoff]
    spinal = [o for o in ops if o["region"] in v.SPINAL_REGIONS]
    cervical = [o for o in ops if o["region"] in ("craniocervical", "cervical", "cervicothoracic")]
    return {
        "operations": count(ops),
        "indication": proportion([o for o in ops if o["indication"]], ops, count),
        "approach": proportion([o for o in ops if o["approach"]], ops, count),
        "levels": proportion([o for o in spinal if o["vertebra_count"] is not None], spinal, count),
        "duration_min": proportion([o for o in ops if o["duration_min"] is not None], ops, count),
        "blood_loss_ml": proportion([o for o in ops if o["blood_loss_ml"] is not None], ops, count),
        "preop_joa": proportion([o for o in cervical if o["preop_joa"] is not None], cervical, count),
        "intraop_events": proportion([o for o in ops if o["intraop_events_recorded"]], ops, count),
        "postop_complications": proportion([o for o in ops if o["postop_complications_recorded"]], ops, count),
        "transfusion": proportion([o for o in ops if o["transfusion"] is not None], ops, count),
        "revision_surgery": proportion([o for o in ops if any(f["revision_surgery"] is not None
                                                              for f in o["follow_ups"])],
                                       [o for o in ops if o["follow_ups"]], count),
        "follow_up": proportion([o for o in ops if o["follow_ups"]], ops, count),
        "follow_up_12m": proportion([o for o in due if any(f["months_after"] >= 12 for f in o["follow_ups"])],
                                    due, count),
    }


def first_operations(operations):
    """The ids (centre, id) of each patient's first operation (earliest date, then lowest id)."""
    first = {}
    for o in operations:
        patient = (o["centre_id"], o["patient_id"])
        if patient not in first or (o["operation_date"], o["id"]) < first[patient][0]:
            first[patient] = ((o["operation_date"], o["id"]), (o["centre_id"], o["id"]))
    return {key for _, key in first.values()}


REFERENCE = {"complications": complications, "fusion": fusion, "outcomes": outcomes, "completeness": completeness}


def published_groups(operations, dims, count=exact):
    """The groups a report lists: those whose operations count is published above 0."""
    return {key: ops for key, ops in groups(operations, dims).items() if count(ops) > 0}
