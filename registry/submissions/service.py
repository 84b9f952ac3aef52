"""Bulk submission: many operation documents in one go, each judged by the record API's rules.

Records are read one at a time from the body and handled in chunks of CHUNK_SIZE:

1. each document is validated by `BulkOperationSchema` (the record API's operation schema plus
   follow-ups; `registry.submissions.validation`, in worker processes while the previous chunk
   is written) and checked against the rest of the submission (an operation or follow-up
   `local_ref` sent twice, one patient described two ways);
2. what the chunk refers to is read in a few set-based queries (patients by ref hash,
   operations and follow-ups by local_ref), and the cross-record rules are applied with the
   record API's own functions (birth year before the operation, follow-up dates, a follow-up
   local_ref owned by another operation);
3. records that create an operation (the bulk of a back-catalogue) are written together with
   one COPY per table (`registry.submissions.bulk`); records that change a stored operation
   go one by one through `operations.service.submit_operation` and `follow_ups.store.save_follow_up`,
   exactly as the record API; records that change nothing write nothing, so resending a file
   leaves no new versions and no audit entries.

Every write of a chunk happens inside a savepoint: a chunk the set-based path cannot write (a
concurrent request took a local_ref meanwhile) is retried record by record, each in its own
savepoint, so one bad record never poisons the others. In `atomic` mode the whole submission
sits in one more savepoint, rolled back at the end if any record was rejected; the submission
and its per-record report are written after that, so they survive.

The caller owns the transaction (a request, or the `registry import` command).
"""

import gc
import threading
from contextlib import contextmanager
from typing import Iterable

import psycopg
import psycopg.errors

from registry.auth import Principal
from registry.fields import storable_text
from registry.follow_ups import store as follow_ups
from registry.operations import service as operations
from registry.operations import store as operation_store
from registry.pagination import encode_cursor
from registry.patients import store as patients
from registry.problems import InvalidInput, Problem, field_error
from registry.submissions import bulk, csv_layout, store, validation

CHUNK_SIZE = 1000
FIRST_PAGE = 1000  # per-record results returned with the answer; the rest are paged


class Record:
    """One record of a submission as it goes through: what was sent and what became of it."""

    __slots__ = ("position", "raw", "document", "errors", "local_ref", "outcome", "operation_id", "ref_hash",
                 "patient_changes", "prepared")

    def __init__(self, position: int, raw, errors: list):
        self.position, self.raw, self.errors = position, raw, list(errors)
        self.document = None
        self.outcome = self.operation_id = self.ref_hash = self.patient_changes = self.prepared = None
        local_ref = raw.get("local_ref") if isinstance(raw, dict) else None
        # as sent until validated (then normalised); a refused one may hold NUL or a lone surrogate
        self.local_ref = storable_text(local_ref[:100]) if isinstance(local_ref, str) else None

    def result(self) -> dict:
        return {"position": self.position, "local_ref": self.local_ref, "outcome": self.outcome,
                "operation_id": self.operation_id, "errors": self.errors or None}


def submit(conn, actor: Principal, records: Iterable[tuple[int, object, list]], *, format: str, mode: str) -> dict:
    """Store a submission's records (see the module docstring); return the submission with its first results."""
    with fewer_garbage_collections():
        return Ingestion(conn, actor, format, mode).run(records)


_collections = {"running": 0, "previous": None}
_collections_lock = threading.Lock()


@contextmanager
def fewer_garbage_collections(threshold: int = 50_000):
    """Ingestion allocates millions of short-lived objects: collecting the youngest generation
    every 700 allocations (Python's default) costs about an eighth of its CPU. The setting is
    the process's, so the first of concurrent ingestions raises it and the last puts it back."""
    with _collections_lock:
        if _collections["running"] == 0:
            _collections["previous"] = gc.get_threshold()
            gc.set_threshold(threshold, *_collections["previous"][1:])
        _collections["running"] += 1
    try:
        yield
    finally:
        with _collections_lock:
            _collections["running"] -= 1
            if _collections["running"] == 0:
                gc.set_threshold(*_collections["previous"])


class Ingestion:
    def __init__(self, conn, actor: Principal, format: str, mode: str):
        self.conn, self.actor, self.format, self.mode = conn, actor, format, mode
        self.location = "csv" if format == "csv" else "json"
        self.counts = dict.fromkeys(("total", "created", "updated", "unchanged", "rejected"), 0)
        self.writing = True            # atomic: stops at the first rejected record
        self.first_page: list[dict] = []
        self.held: list[dict] = []     # atomic: results kept until we know whether they stand
        self.seen_operations: dict[str, int] = {}
        self.seen_follow_ups: dict[str, int] = {}
        self.seen_patients: dict[bytes, tuple] = {}

    # --- the run ----------------------------------------------------------------------------

    def run(self, records) -> dict:
        conn = self.conn
        submission = store.create_submission(conn, self.actor.centre_id, self.actor.token_id, self.format,
                                             self.mode)
        self.submission_id = submission["id"]
        with conn.transaction() as writes:
            # chunk k+1 is read and validated (in worker processes) while chunk k is written
            pending = None
            for chunk in _chunks(records):
                if pending is None and len(chunk) == CHUNK_SIZE:  # more chunks are likely to follow
                    validation.start_workers()
                validating = self._validate_async(chunk, in_parallel=pending is not None)
                if pending:
                    self._process(*pending)
                pending = (chunk, validating)
            if pending:
                self._process(*pending)
            if self.mode == "atomic" and self.counts["rejected"]:
                raise psycopg.Rollback(writes)
        if self.mode == "atomic":
            if self.counts["rejected"]:
                for result in self.held:
                    if result["outcome"] != "rejected":
                        result.update(outcome="not_stored", operation_id=None)
                for outcome in ("created", "updated", "unchanged"):
                    self.counts[outcome] = 0
            store.write_records(conn, self.actor.centre_id, self.submission_id, self.held)
        finished = store.finish_submission(conn, self.actor.centre_id, self.submission_id, self._status(),
                                           self.counts)
        return finished | {
            "records": [record_to_wire(result, self.format) for result in self.first_page],
            "records_next_cursor": (encode_cursor(self.first_page[-1]["position"])
                                    if self.counts["total"] > len(self.first_page) else None),
        }

    def _status(self) -> str:
        rejected, total = self.counts["rejected"], self.counts["total"]
        if not rejected:
            return "accepted"
        if self.mode == "atomic" or rejected == total:
            return "rejected"
        return "partially_accepted"

    def _reject(self, record: Record, errors: list[dict]) -> None:
        record.outcome, record.operation_id = "rejected", None
        record.errors = [self._located(error) for error in errors]
        if self.mode == "atomic":
            self.writing = False

    def _located(self, error: dict) -> dict:
        # an error may echo the sender's text (an unknown key is its field): stored, so storable
        error = {name: storable_text(value) if isinstance(value, str) else value for name, value in error.items()}
        error = dict(error, location=self.location if error.get("location") in (None, "json", "csv") else
                     error["location"])
        if self.location == "csv" and error.get("field") and "column" not in error:
            column = csv_layout.column_for(error["field"])
            if column:
                error["column"] = column
        return error

    def _where(self, position: int) -> str:
        return f"row {position + 1}" if self.format == "csv" else f"index {position}"

    # --- one chunk --------------------------------------------------------------------------

    def _process(self, chunk: list[Record], validating) -> None:
        live = self._validated(chunk, validating)
        live = self._check_against_submission(live)
        fast, slow, patients_known = self._check_against_registry(live)
        if self.writing:
            self._write_new(fast, slow, patients_known)
            for record in slow:
                self._write_one(record)
        for record in fast + slow:
            if record.outcome is None:
                record.outcome = "not_stored"
        self._report(chunk)

    def _validate_async(self, chunk: list[Record], *, in_parallel: bool):
        """Start validating the chunk's readable records: a future of their (document, errors)."""
        return validation.submit_chunk([record.raw for record in chunk if not record.errors], self.location,
                                       in_parallel=in_parallel)

    def _validated(self, chunk: list[Record], validating) -> list[Record]:
        """The chunk's valid records, the others rejected."""
        outcomes = iter(validation.outcomes(validating, [record.raw for record in chunk if not record.errors],
                                            self.location))
        live = []
        for record in chunk:
            if not record.errors:
                record.document, errors, record.prepared = next(outcomes)
                if errors:
                    record.errors = errors
                else:
                    record.local_ref = record.document["local_ref"]  # normalised (NFKC)
            if record.errors:
                self._reject(record, record.errors)
            else:
                live.append(record)
        return live

    def _check_against_submission(self, live: list[Record]) -> list[Record]:
        """Each operation and follow-up once per submission, and each patient described one way."""
        kept = []
        for record in live:
            document, errors = record.document, []
            first = self.seen_operations.setdefault(document["local_ref"], record.position)
            if first != record.position:
                errors.append(field_error("local_ref", f"Also at {self._where(first)} of this submission: "
                                                       "send each operation once."))
            for index, follow_up in enumerate(document["follow_ups"]):
                first = self.seen_follow_ups.setdefault(follow_up["local_ref"], (record.position, index))
                if first != (record.position, index):
                    errors.append(field_error(f"follow_ups.{index}.local_ref",
                                              f"Also at {self._where(first[0])}, follow_ups.{first[1]}: "
                                              "send each follow-up once."))
            if "patient" in document:
                record.ref_hash = patients.ref_hash(self.actor.centre_id, document["patient"]["ref"])
                described = tuple(str(document["patient"].get(name)) for name in patients.PATIENT_FIELDS)
                first = self.seen_patients.setdefault(record.ref_hash, (described, record.position))
                if first[0] != described:
                    errors.append(field_error("patient", f"The patient with this ref is described differently at "
                                                         f"{self._where(first[1])}: describe a patient one way "
                                                         "in a submission."))
            if errors:
                self._reject(record, errors)
            else:
                kept.append(record)
        return kept

    def _check_against_registry(self, live: list[Record]) -> tuple[list[Record], list[Record], dict]:
        """Apply the cross-record rules; split the good records into creations and the rest.

        Returns (fast, slow, known patients): `fast` create an operation (and maybe a patient)
        and go set-based; `slow` change something stored and go through the record API's
        functions; records that change nothing get their outcome here. Known patients are the
        stored ones the chunk names, by ref hash and by id.
        """
        conn, centre_id = self.conn, self.actor.centre_id
        stored_patients = bulk.existing_patients(conn, centre_id, list({r.ref_hash for r in live if r.ref_hash}))
        erased = patients.erased_ref_hashes(conn, centre_id, list({r.ref_hash for r in live if r.ref_hash
                                                                   and r.ref_hash not in stored_patients}))
        by_id = bulk.patients_by_id(conn, centre_id, list({r.document["patient_id"] for r in live
                                                           if "patient_id" in r.document}))
        local_refs = bulk.array_parameter(r.document["local_ref"] for r in live)
        stored_operations = operation_store.get_operations_by_local_refs(
            conn, centre_id, local_refs, for_update=True) if live else {}
        stored_follow_ups = bulk.existing_follow_ups(
            conn, centre_id, [f["local_ref"] for r in live for f in r.document["follow_ups"]])
        fast, slow = [], []
        for record in live:
            document, errors = record.document, []
            operation = {name: value for name, value in document.items() if name != "follow_ups"}
            if "patient" in document:
                patient = stored_patients.get(record.ref_hash)
                if record.ref_hash in erased:  # never brought back by a resent file
                    errors.append(field_error("patient.ref", patients.ErasedRef.MESSAGE))
                if patient is not None:
                    # as the record API: the inline patient agrees with the stored one, or is refused
                    try:
                        record.patient_changes = patients.changed_fields(patient, patients.resubmitted_fields(
                            patient, document["patient"], "patient.", inline=True))
                    except InvalidInput as problem:
                        errors += problem.errors
                dated_patient = patient or document["patient"]
            else:
                patient = dated_patient = by_id.get(document["patient_id"])
                if patient is None:
                    errors.append(field_error("patient_id", "Your centre has no patient with this id."))
            current = stored_operations.get(document["local_ref"])
            if current is None and not errors:
                try:
                    operations.check_new_operation_dates(operation, dated_patient)
                except InvalidInput as problem:
                    errors += problem.errors
            follow_ups_unchanged = True
            for index, sent in enumerate(document["follow_ups"]):
                stored = stored_follow_ups.get(sent["local_ref"])
                if stored is not None and (current is None or stored["operation_id"] != current["id"]):
                    errors.append(field_error(f"follow_ups.{index}.local_ref",
                                              "Used by a follow-up of another operation."))
                try:
                    values = (record.prepared.follow_up_values[index]
                              or follow_ups.follow_up_columns(document["operation_date"], sent))
                except InvalidInput as problem:
                    errors += [dict(error, field=f"follow_ups.{index}.{error['field']}",
                                    pointer=f"/follow_ups/{index}{error['pointer']}") for error in problem.errors]
                    continue
                if stored is None or follow_ups.comparable(stored) != {
                        name: values[name] for name in follow_ups.FIELDS}:
                    follow_ups_unchanged = False
            if errors:
                self._reject(record, errors)
            elif current is None and not record.patient_changes:
                fast.append(record)
            elif (current is not None and patient is not None and not record.patient_changes
                  and follow_ups_unchanged and not operations.operation_changes(current, operation, patient)):
                record.outcome, record.operation_id = "unchanged", current["id"]
            else:
                slow.append(record)
        return fast, slow, {"by_ref_hash": stored_patients, "by_id": by_id}

    # --- writing ----------------------------------------------------------------------------

    def _write_new(self, fast: list[Record], slow: list[Record], patients_known: dict) -> None:
        """Create the `fast` records set-based; if that fails, move them to `slow` (record by record)."""
        if not fast:
            return
        conn, actor = self.conn, self.actor
        try:
            with conn.transaction():
                audit = bulk.AuditRows(actor)
                new_patients = {}
                for record in fast:
                    if record.ref_hash and record.ref_hash not in patients_known["by_ref_hash"]:
                        new_patients.setdefault(record.ref_hash, record.document["patient"])
                patient_ids = bulk.insert_patients(conn, actor, new_patients, audit)
                new_operations = []
                for record in fast:
                    document = record.document
                    if record.ref_hash:
                        stored = patients_known["by_ref_hash"].get(record.ref_hash)
                        patient_id = patient_ids.get(record.ref_hash) or stored["id"]
                        # a stored patient's birth year: the inline one agrees with it, or was left out
                        birth_year = (stored or document["patient"]).get("birth_year")
                    else:
                        patient = patients_known["by_id"][document["patient_id"]]
                        patient_id, birth_year = patient["id"], patient["birth_year"]
                    if birth_year != record.prepared.birth_year:  # the age at surgery from the stored patient's
                        record.prepared = validation.prepare(document, birth_year, inline_birth_year=False)
                    new_operations.append((patient_id, record.prepared.operation))
                operation_ids = bulk.insert_operations(conn, actor, new_operations, audit)
                # the follow-ups' dates were accepted in _check_against_registry: all prepared
                bulk.insert_follow_ups(conn, actor, [
                    (operation_ids[record.document["local_ref"]], prepared)
                    for record in fast for prepared in record.prepared.follow_ups], audit)
                audit.write(conn)
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError):
            slow[:0] = fast
            fast.clear()
            return
        for record in fast:
            record.outcome, record.operation_id = "created", operation_ids[record.document["local_ref"]]

    def _write_one(self, record: Record) -> None:
        """Submit one record through the record API's functions, in its own savepoint."""
        if not self.writing:
            return
        document = {name: value for name, value in record.document.items() if name != "follow_ups"}
        try:
            with self.conn.transaction():
                stored, outcome = operations.submit_operation(self.conn, self.actor, document)
                for index, fields in enumerate(record.document["follow_ups"]):
                    try:
                        _, follow_up_outcome = follow_ups.save_follow_up(self.conn, self.actor, stored, fields)
                    except Problem as problem:
                        raise InvalidInput([dict(error, field=f"follow_ups.{index}.{error['field']}",
                                                 pointer=f"/follow_ups/{index}{error['pointer']}")
                                            for error in problem.errors or [field_error("", problem.description)]])
                    if follow_up_outcome != "unchanged":
                        outcome = "updated" if outcome == "unchanged" else outcome
        except Problem as problem:
            self._reject(record, problem.errors or [field_error("", problem.description)])
            return
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as error:
            constraint = getattr(error.diag, "constraint_name", None) or ""
            self._reject(record, [field_error(constraint.split("_", 2)[-1] if constraint.startswith("ck_") else "",
                                              f"Refused by the database ({constraint or error.sqlstate}).")])
            return
        if outcome == "unchanged" and record.patient_changes:
            outcome = "updated"
        record.outcome, record.operation_id = outcome, stored["id"]

    def _report(self, chunk: list[Record]) -> None:
        results = []
        for record in chunk:
            if record.outcome in self.counts:
                self.counts[record.outcome] += 1
            self.counts["total"] += 1
            result = record.result()
            results.append(result)
            if len(self.first_page) < FIRST_PAGE:
                self.first_page.append(result)
        if self.mode == "atomic":
            self.held += results
        else:
            store.write_records(self.conn, self.actor.centre_id, self.submission_id, results)


def _chunks(records: Iterable[tuple[int, object, list]]):
    chunk = []
    for position, raw, errors in records:
        chunk.append(Record(position, raw, errors))
        if len(chunk) == CHUNK_SIZE:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def record_to_wire(result: dict, format: str) -> dict:
    """A stored per-record result as the API shows it: `row` for CSV (header = row 1), `index` for JSON."""
    wire = {"local_ref": result["local_ref"], "outcome": result["outcome"], "operation_id": result["operation_id"]}
    if format == "csv":
        wire["row"] = result["position"] + 1
    else:
        wire["index"] = result["position"]
    if result["errors"]:
        wire["errors"] = result["errors"]
    return wire
