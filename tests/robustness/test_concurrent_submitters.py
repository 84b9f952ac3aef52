"""Many hospital systems at once against a real gunicorn: nothing duplicated, nothing lost.

Sixteen submitter threads of two centres, each with its own keep-alive session, push operation
documents at the same time: every POST is sent twice at once with one Idempotency-Key (a
retry racing its original), then resubmitted by local_ref with a corrected field, then patched
with If-Match. Meanwhile all threads of a centre keep incrementing one shared operation with
If-Match, re-reading and retrying on 412 as a careful client does. Afterwards the database
must hold exactly the expected records, and no request may have been answered with a 5xx.
"""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.records.helpers import seed_case

CENTRES = ("submitter_a", "submitter_b")
THREADS_PER_CENTRE = 8
OPERATIONS_PER_THREAD = 4
INCREMENTS_PER_THREAD = 5
SHARED_PATIENTS = 3  # patient refs shared by every thread of a centre: concurrent upserts of one ref


def document(local_ref: str, patient_ref: str, blood_loss: int) -> dict:
    case = seed_case()
    case["local_ref"] = local_ref
    case["patient"]["ref"] = patient_ref
    case["blood_loss_ml"] = blood_loss
    return case


class Submitter:
    """One hospital system: a keep-alive session, its token, and every status it was answered."""

    def __init__(self, base_url: str, header: dict, statuses: Counter, lock: threading.Lock):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers.update(header)
        self.statuses = statuses
        self.lock = lock

    def send(self, method: str, path: str, **kwargs) -> requests.Response:
        response = self.session.request(method, self.base_url + path, timeout=30, **kwargs)
        with self.lock:
            self.statuses[response.status_code] += 1
        assert response.status_code < 500, f"{method} {path}: {response.status_code} {response.text[:300]}"
        return response


def submit_own_operations(submitter: Submitter, centre: str, thread: int) -> dict[str, int]:
    """Create, retry, resubmit and patch this thread's operations; return local_ref -> final blood loss."""
    final = {}
    with ThreadPoolExecutor(2) as racing:
        for number in range(OPERATIONS_PER_THREAD):
            local_ref = f"{centre}-T{thread}-OP{number}"
            patient_ref = f"{centre}-P{number % SHARED_PATIENTS}"
            first = document(local_ref, patient_ref, 100)
            key = {"Idempotency-Key": f"{local_ref}-create"}
            # the original and its retry, at the same time
            original, retry = racing.map(lambda _: submitter.send("POST", "/v1/operations/", json=first, headers=key),
                                         range(2))
            assert sorted([original.status_code, retry.status_code]) == [201, 201]
            assert original.json()["id"] == retry.json()["id"]
            assert [original.headers.get("Idempotent-Replayed"), retry.headers.get("Idempotent-Replayed")].count(
                "true") == 1
            # a late retry of the same request, after the fact
            late = submitter.send("POST", "/v1/operations/", json=first, headers=key)
            assert (late.status_code, late.json()["id"]) == (201, original.json()["id"])
            # the hospital corrects the record and sends it again under its local_ref
            corrected = submitter.send("POST", "/v1/operations/", json=document(local_ref, patient_ref, 200),
                                       headers={"Idempotency-Key": f"{local_ref}-correct"})
            assert (corrected.status_code, corrected.json()["id"]) == (200, original.json()["id"])
            # and patches it with the ETag it was given
            patched = submitter.send("PATCH", f"/v1/operations/{original.json()['id']}", json={"blood_loss_ml": 300},
                                     headers={"If-Match": corrected.headers["ETag"]})
            assert patched.status_code == 200
            final[local_ref] = 300
    return final


def increment_shared_operation(submitter: Submitter, operation_id: int) -> int:
    """Add one minute to the shared operation's duration INCREMENTS_PER_THREAD times; return the 412s met."""
    conflicts = 0
    for _ in range(INCREMENTS_PER_THREAD):
        while True:
            current = submitter.send("GET", f"/v1/operations/{operation_id}")
            changed = submitter.send("PATCH", f"/v1/operations/{operation_id}",
                                     json={"duration_min": current.json()["duration_min"] + 1},
                                     headers={"If-Match": current.headers["ETag"]})
            if changed.status_code == 200:
                break
            assert changed.status_code == 412, changed.text
            conflicts += 1
    return conflicts


def test_concurrent_submitters_leave_exactly_the_expected_records(gunicorn_url, tokens, db):
    statuses, lock = Counter(), threading.Lock()
    shared = {}
    for centre in CENTRES:
        created = requests.post(gunicorn_url + "/v1/operations/", headers=tokens.header(centre), timeout=30,
                                json=document(f"{centre}-SHARED", f"{centre}-P0", 100) | {"duration_min": 1})
        assert created.status_code == 201
        shared[centre] = created.json()["id"]

    def work(centre: str, thread: int):
        submitter = Submitter(gunicorn_url, tokens.header(centre), statuses, lock)
        final = submit_own_operations(submitter, centre, thread)
        conflicts = increment_shared_operation(submitter, shared[centre])
        return final, conflicts

    with ThreadPoolExecutor(len(CENTRES) * THREADS_PER_CENTRE) as pool:
        futures = [pool.submit(work, centre, thread) for centre in CENTRES for thread in range(THREADS_PER_CENTRE)]
        results = [future.result() for future in futures]

    expected = {local_ref: blood_loss for final, _ in results for local_ref, blood_loss in final.items()}
    assert not [status for status in statuses if status >= 500]
    # exactly the expected operations, each once, each with its last value
    stored = {row["local_ref"]: row for row in db.execute(
        "SELECT o.local_ref, o.blood_loss_ml, o.duration_min, o.version, c.code FROM operations o"
        " JOIN centres c ON c.id = o.centre_id WHERE o.local_ref NOT LIKE '%%-SHARED'").fetchall()}
    assert {ref: row["blood_loss_ml"] for ref, row in stored.items()} == expected
    assert all(row["version"] == 3 for row in stored.values())  # created, corrected, patched: no extra write
    # every document whole: one implant and one intraoperative event each
    for table in ("implants", "intraop_events"):
        assert db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"] == len(expected) + len(CENTRES)
    # one patient per shared ref and centre, however many threads upserted it at once
    assert db.execute("SELECT count(*) AS n FROM patients").fetchone()["n"] == len(CENTRES) * SHARED_PATIENTS
    # no lost update: every increment of the shared operations counted exactly once
    for centre in CENTRES:
        row = db.execute("SELECT duration_min, version FROM operations WHERE id = %s", (shared[centre],)).fetchone()
        assert row["duration_min"] == 1 + THREADS_PER_CENTRE * INCREMENTS_PER_THREAD
        assert row["version"] == 1 + THREADS_PER_CENTRE * INCREMENTS_PER_THREAD
    # one audit entry per write that happened, none for the replays
    audited = Counter((row["action"]) for row in db.execute(
        "SELECT action FROM audit_events WHERE entity = 'operation'").fetchall())
    assert audited["create"] == len(expected) + len(CENTRES)
    assert audited["update"] == 2 * len(expected) + len(CENTRES) * THREADS_PER_CENTRE * INCREMENTS_PER_THREAD
    assert sum(conflicts for _, conflicts in results) > 0, "the shared operation never saw a conflicting update"
