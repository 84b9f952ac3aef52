"""Operations and their parts (implants, intraoperative events, postoperative complications): SQL.

An operation document is stored as one `operations` row plus child rows; children are
replaced as a whole when the document changes (a document is the unit a hospital sends).
Functions take a connection and never commit.
"""

import json
import re
from datetime import datetime
from functools import partial

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from registry.patients.store import NEW_PATIENT_CTE, PATIENT_COLUMNS, PATIENT_FIELDS
from registry.validation import rules

# document field -> column, for the scalar part of an operation document
OPERATION_COLUMNS = (
    "local_ref", "operation_date", "date_precision", "indication", "indication_note", "region", "approach",
    "procedures", "level_from", "level_to", "vertebra_count", "segment_count", "instrumented",
    "instrumentation_system", "instrumentation_manufacturer", "bone_graft", "duration_min", "blood_loss_ml",
    "transfusion", "preop_joa", "preop_mjoa", "immobilization_type", "immobilization_weeks", "notes",
    "age_at_surgery", "intraop_events_recorded", "postop_complications_recorded", "baseline_scores",
)
# jsonb: the baseline scores besides JOA 17-point and mJOA (rules.other_scores), which keep preop_joa / preop_mjoa
JSON_COLUMNS = frozenset({"baseline_scores"})
CHILD_COLUMNS = {
    "implants": ("kind", "level", "side", "count", "diameter_mm", "length_mm", "note"),
    "intraop_events": ("type", "instrument", "instrument_detail", "retained_fragment", "level", "side", "site",
                       "grade", "management", "description", "reported_by", "saves_grade"),
    "postop_complications": ("type", "days_after", "grade", "management", "description", "reported_by",
                             "saves_grade"),
}
SELECT_COLUMNS = ("id, centre_id, patient_id, " + ", ".join(OPERATION_COLUMNS) + ", version, created_at, updated_at")


def column_values(columns: dict) -> list:
    """The OPERATION_COLUMNS values as SQL parameters (a score list goes as jsonb, not an array)."""
    return [Jsonb(columns[column]) if column in JSON_COLUMNS else columns[column] for column in OPERATION_COLUMNS]


def _float(value):
    return None if value is None else float(value)


def recording_status(recorded: bool, items: list) -> str:
    """A list's status from what is stored: whether it was assessed, and its rows."""
    return "occurred" if items else "none" if recorded else "not_recorded"


def row_to_document(row: dict, children: dict[str, list[dict]], patient: dict) -> dict:
    """The stored operation in the shape of the wire document (what OperationSchema dumps)."""
    implants = [{key: (_float(value) if key in ("diameter_mm", "length_mm") else value)
                 for key, value in implant.items()} for implant in children["implants"]]
    instrumentation = None
    if row["instrumentation_system"] or row["instrumentation_manufacturer"] or implants:
        instrumentation = {"system": row["instrumentation_system"],
                           "manufacturer": row["instrumentation_manufacturer"], "implants": implants}
    scores = None
    if row["preop_joa"] is not None or row["preop_mjoa"] is not None:
        scores = {"joa": _float(row["preop_joa"]), "mjoa": row["preop_mjoa"]}
    return {
        "id": row["id"], "patient_id": row["patient_id"], "patient": patient,
        "local_ref": row["local_ref"], "operation_date": row["operation_date"],
        "date_precision": row["date_precision"], "indication": row["indication"],
        "indication_note": row["indication_note"], "region": row["region"], "approach": row["approach"],
        "procedures": row["procedures"],
        "levels": {"from_": row["level_from"], "to": row["level_to"]} if row["level_from"] else None,
        "vertebra_count": row["vertebra_count"], "segment_count": row["segment_count"],
        "instrumented": row["instrumented"], "instrumentation": instrumentation, "bone_graft": row["bone_graft"],
        "duration_min": row["duration_min"], "blood_loss_ml": row["blood_loss_ml"],
        "transfusion": row["transfusion"], "preop_scores": scores,
        "baseline_scores": rules.scores_from_storage(scores or {}, row["baseline_scores"]),
        "immobilization": ({"type": row["immobilization_type"], "weeks": row["immobilization_weeks"]}
                           if row["immobilization_type"] else None),
        "intraop_events_status": recording_status(row["intraop_events_recorded"], children["intraop_events"]),
        "intraop_events": children["intraop_events"],
        "postop_complications_status": recording_status(row["postop_complications_recorded"],
                                                        children["postop_complications"]),
        "postop_complications": children["postop_complications"],
        "notes": row["notes"], "age_at_surgery": row["age_at_surgery"],
        "version": row["version"], "created_at": row["created_at"], "updated_at": row["updated_at"],
    }


def _children(conn, centre_id: int, operation_ids: list[int]) -> dict[int, dict[str, list[dict]]]:
    found = {operation_id: {table: [] for table in CHILD_COLUMNS} for operation_id in operation_ids}
    for table, columns in CHILD_COLUMNS.items():
        rows = conn.execute(
            sql.SQL("SELECT operation_id, {columns} FROM {table} WHERE centre_id = %s AND operation_id = ANY(%s)"
                    " ORDER BY operation_id, position").format(
                columns=sql.SQL(", ").join(map(sql.Identifier, columns)), table=sql.Identifier(table)),
            (centre_id, operation_ids)).fetchall()
        for row in rows:
            found[row.pop("operation_id")][table].append(row)
    return found


def documents_of(conn, centre_id: int, rows: list[dict]) -> list[dict]:
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    children = _children(conn, centre_id, ids)
    patients = {patient["id"]: patient for patient in conn.execute(
        f"SELECT {PATIENT_COLUMNS} FROM patients WHERE centre_id = %s AND id = ANY(%s)",
        (centre_id, list({row["patient_id"] for row in rows}))).fetchall()}
    return [row_to_document(row, children[row["id"]], patients[row["patient_id"]]) for row in rows]


def get_operation(conn, centre_id: int, operation_id: int, *, for_update: bool = False) -> dict | None:
    """The operation document, or None when this centre has no such operation."""
    row = conn.execute(f"SELECT {SELECT_COLUMNS} FROM operations WHERE centre_id = %s AND id = %s"
                       + (" FOR UPDATE" if for_update else ""), (centre_id, operation_id)).fetchone()
    return documents_of(conn, centre_id, [row])[0] if row else None


def find_operation_id(conn, centre_id: int, local_ref: str, *, for_update: bool = False) -> int | None:
    row = conn.execute("SELECT id FROM operations WHERE centre_id = %s AND local_ref = %s"
                       + (" FOR UPDATE" if for_update else ""), (centre_id, local_ref)).fetchone()
    return row["id"] if row else None


def list_operations(conn, centre_id: int, filters: dict, after_id: int | None, limit: int) -> list[dict]:
    rows = conn.execute(
        f"""SELECT {", ".join("o." + column for column in SELECT_COLUMNS.split(", "))} FROM operations o
            JOIN patients p ON p.centre_id = o.centre_id AND p.id = o.patient_id
            WHERE o.centre_id = %(centre_id)s
              AND (%(after)s::bigint IS NULL OR o.id > %(after)s)
              AND (%(date_from)s::date IS NULL OR o.operation_date >= %(date_from)s)
              AND (%(date_to)s::date IS NULL OR o.operation_date <= %(date_to)s)
              AND (%(diagnosis)s::text IS NULL OR p.diagnosis = %(diagnosis)s)
              AND (%(approach)s::text IS NULL OR o.approach = %(approach)s)
              AND (%(region)s::text IS NULL OR o.region = %(region)s)
              AND (%(procedure)s::text IS NULL OR %(procedure)s = ANY(o.procedures))
              AND (%(patient_id)s::bigint IS NULL OR o.patient_id = %(patient_id)s)
              AND (%(local_ref)s::text IS NULL OR o.local_ref = %(local_ref)s)
              AND (%(updated_since)s::timestamptz IS NULL OR o.updated_at >= %(updated_since)s)
            ORDER BY o.id LIMIT %(limit)s""",
        {"centre_id": centre_id, "after": after_id, "limit": limit}
        | {name: filters.get(name) for name in ("date_from", "date_to", "diagnosis", "approach", "region",
                                                 "procedure", "patient_id", "local_ref", "updated_since")},
    ).fetchall()
    return documents_of(conn, centre_id, rows)


# Composed once: statements built per call cost more Python time than the insert itself.
_INSERT_CHILD = {
    table: sql.SQL("INSERT INTO {table} (centre_id, operation_id, position, {columns})"
                   " VALUES (%s, %s, %s, {values})").format(
        table=sql.Identifier(table), columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        values=sql.SQL(", ").join(sql.Placeholder() * len(columns))).as_string()
    for table, columns in CHILD_COLUMNS.items()
}
_DELETE_CHILDREN = {
    table: sql.SQL("DELETE FROM {} WHERE centre_id = %s AND operation_id = %s").format(sql.Identifier(table)).as_string()
    for table in CHILD_COLUMNS
}
_UPDATE_OPERATION = (
    sql.SQL("UPDATE operations SET patient_id = %s, {assignments}, version = version + 1, updated_at = now()"
            " WHERE centre_id = %s AND id = %s").format(
        assignments=sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(column))
                                       for column in OPERATION_COLUMNS))).as_string()


def _insert_children(conn, centre_id: int, operation_id: int, children: dict[str, list[dict]]) -> None:
    for table, columns in CHILD_COLUMNS.items():
        items = children[table]
        if not items:
            continue
        with conn.cursor() as cur:
            cur.executemany(_INSERT_CHILD[table],
                            [(centre_id, operation_id, position, *(item.get(column) for column in columns))
                             for position, item in enumerate(items)])


def _replace_children(conn, centre_id: int, operation_id: int, children: dict[str, list[dict]]) -> None:
    for table in CHILD_COLUMNS:
        conn.execute(_DELETE_CHILDREN[table], (centre_id, operation_id))
    _insert_children(conn, centre_id, operation_id, children)


# The children as JSON lists typed by their tables' row types (jsonb_populate_recordset): one
# parameter per table, whatever the number of rows.
_CHILD_CTES = "".join(f""",
    inserted_{table} AS (
        INSERT INTO {table} (centre_id, operation_id, position, {", ".join(f'"{column}"' for column in columns)})
        SELECT inserted_operation.centre_id, inserted_operation.id, item.position,
               {", ".join(f'item."{column}"' for column in columns)}
        FROM inserted_operation, jsonb_populate_recordset(NULL::{table}, %({table})s) AS item)"""
                      for table, columns in CHILD_COLUMNS.items())


def _insert_for_patient(patient_ctes: str, patient_entry: str, answer: str) -> str:
    """A statement inserting an operation for the one row of its CTE `patient` (none: nothing is
    written), the operation's children and audit entries: `patient_entry`, a SELECT of the
    patient's own entry (or nothing) before the operation's, and `answer`, its result columns.
    The audit entries are one INSERT so that their ids keep the order of separate calls (patient,
    then operation)."""
    return ("WITH " + patient_ctes + """,
    inserted_operation AS (
        INSERT INTO operations (centre_id, patient_id, {columns})
        SELECT %(centre_id)s, patient.id, {values}
        FROM patient, jsonb_populate_record(NULL::operations, %(operation)s) AS sent
        ON CONFLICT (centre_id, local_ref) DO NOTHING
        RETURNING id, centre_id, patient_id, version, created_at, updated_at)""" + _CHILD_CTES + """,
    audited AS (
        INSERT INTO audit_events (centre_id, actor_token_id, actor_role, request_id, action, entity, entity_id,
                                  changed_fields, changes)
        SELECT %(centre_id)s, %(actor_token_id)s, %(actor_role)s, %(request_id)s, 'create', entry.entity, entry.id,
               entry.changed_fields, entry.changes
        FROM ({patient_entry}
              SELECT 2 AS n, 'operation' AS entity, id, %(operation_fields)s::text[] AS changed_fields,
                     -- the id of its patient, known here for a new one
                     %(operation_changes)s::jsonb || jsonb_build_object('patient_id', jsonb_build_object('new', patient_id))
                         AS changes
              FROM inserted_operation) AS entry
        ORDER BY entry.n)
    SELECT {answer}, (SELECT to_jsonb(inserted_operation) FROM inserted_operation) AS operation""").format(
        columns=", ".join(f'"{column}"' for column in OPERATION_COLUMNS),
        values=", ".join(f'sent."{column}"' for column in OPERATION_COLUMNS),
        patient_entry=patient_entry, answer=answer)


# An inline patient with its operation, in one statement whether its ref is new to the centre or
# known. New: the patient is inserted, the operation for it (unless the ref was erased), and both
# audit entries. Known: the stored patient is locked (as a patient sent again is) and the
# operation inserted for it only when it holds the values the caller assumed (`assumed`: the
# fields the document sent and the birth year, which the operation's derived values and date
# rules were computed from); otherwise nothing is written and the caller applies the rules of a
# patient sent again to the stored patient it gets back. The condition restates no rule: it only
# checks that the stored patient is the one the caller's rules ran on.
_ASSUMED = " AND ".join(f"(NOT '{name}' = ANY(%(assumed)s::text[]) OR known_patient.{name} IS NOT DISTINCT FROM %({name})s)"
                        for name in PATIENT_FIELDS)
_INSERT_WITH_PATIENT_REF = _insert_for_patient(
    NEW_PATIENT_CTE + f""",
    known_patient AS (
        SELECT {PATIENT_COLUMNS} FROM patients WHERE centre_id = %(centre_id)s AND ref_hash = %(ref_hash)s
        FOR UPDATE),
    patient AS (
        SELECT id FROM new_patient WHERE NOT erased
        UNION ALL
        SELECT id FROM known_patient WHERE {_ASSUMED})""",
    """SELECT 1 AS n, 'patient' AS entity, id, %(patient_fields)s::text[] AS changed_fields,
                     %(patient_changes)s::jsonb AS changes
              FROM new_patient WHERE NOT erased
              UNION ALL""",
    """(SELECT to_jsonb(new_patient) FROM new_patient) AS patient,
           (SELECT to_jsonb(known_patient) FROM known_patient) AS known,
           EXISTS (SELECT FROM patient) AS assumed""")

# An operation for a patient already resolved (by id, or after the rules of a patient sent again)
_INSERT_FOR_PATIENT_ID = _insert_for_patient("patient AS (SELECT %(patient_id)s::bigint AS id)", "", "1 AS one")


def _raw(statement: str) -> tuple[str, list[str]]:
    """psycopg parses a statement this long (over 4 kB) again on every call, which cost more than
    the rest of the call: numbered once here, it runs on a RawCursor, which parses nothing."""
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
    return re.sub(r"%\((\w+)\)s", lambda match: f"${names.index(match[1]) + 1}", statement), names


_INSERT_WITH_PATIENT_REF_RAW, _PATIENT_REF_NAMES = _raw(_INSERT_WITH_PATIENT_REF)
_INSERT_FOR_PATIENT_ID_RAW, _PATIENT_ID_NAMES = _raw(_INSERT_FOR_PATIENT_ID)


def _operation_parameters(columns: dict, children: dict) -> dict:
    # the values travel as JSON typed by the tables' own row types: parameters in a SELECT list
    # have no column to take their type from (a NULL integer would be text)
    return {"operation": Jsonb({column: columns[column] for column in OPERATION_COLUMNS}, dumps=_json_with_dates)} | {
        table: Jsonb([dict(item, position=position) for position, item in enumerate(children[table])],
                     dumps=_json_with_dates) for table in CHILD_COLUMNS}


def _run(conn, raw: tuple[str, list[str]], parameters: dict) -> dict:
    statement, names = raw
    with psycopg.RawCursor(conn) as cur:
        return cur.execute(statement, [parameters[name] for name in names]).fetchone()


def insert_operation(conn, centre_id: int, patient_id: int, columns: dict, children: dict,
                     audit_parameters: dict) -> dict | None:
    """Insert an operation for this patient with its children and its audit entry, in one
    statement; None when the centre already has one with this local_ref (nothing written).

    Returns the stored row (the columns given plus id, version and timestamps), so the caller
    can answer without reading back what it just wrote. `audit_parameters`: actor_token_id,
    actor_role, request_id, operation_fields and operation_changes (`audit.store.entry_parameters`)."""
    parameters = ({"centre_id": centre_id, "patient_id": patient_id} | audit_parameters
                  | _operation_parameters(columns, children))
    row = _run(conn, (_INSERT_FOR_PATIENT_ID_RAW, _PATIENT_ID_NAMES), parameters)
    return _typed_operation(row["operation"], columns)


def insert_operation_with_patient_ref(conn, patient_parameters: dict, columns: dict, children: dict,
                                      audit_parameters: dict) -> tuple[dict | None, dict | None, bool, dict | None]:
    """Insert the operation for an inline patient, new or known by its ref (`_INSERT_WITH_PATIENT_REF`),
    with its children and audit entries, in one statement. Returns (new patient row with `erased`,
    known patient row, whether the operation was inserted or found its local_ref taken (a new
    patient whose ref was not erased, or a known one with the `assumed` values), operation row).
    No patient at all when a concurrent request has just created it (nothing written); no
    operation when the ref was erased, the known patient does not hold the assumed values, or
    the local_ref is taken (then neither the children nor the operation's audit entry are
    written; a new patient's is, unless erased).

    `patient_parameters`: `patients.store.new_patient_parameters` and `assumed`, the names of the
    fields the known patient must hold those values of. `audit_parameters`: actor_token_id,
    actor_role, request_id, and for each entity its `*_fields` (list) and `*_changes` (JSON text)
    (`audit.store.entry_parameters`)."""
    parameters = patient_parameters | audit_parameters | _operation_parameters(columns, children)
    row = _run(conn, (_INSERT_WITH_PATIENT_REF_RAW, _PATIENT_REF_NAMES), parameters)
    return (_typed_patient(row["patient"]), _typed_patient(row["known"]), row["assumed"],
            _typed_operation(row["operation"], columns))


_json_with_dates = partial(json.dumps, default=lambda value: value.isoformat())


def _typed_patient(patient: dict | None) -> dict | None:
    # to_jsonb writes timestamps as text: back to what a row gives
    if patient is not None:
        for name in ("created_at", "updated_at"):
            patient[name] = datetime.fromisoformat(patient[name])
    return patient


def _typed_operation(operation: dict | None, columns: dict) -> dict | None:
    if operation is None:
        return None
    for name in ("created_at", "updated_at"):
        operation[name] = datetime.fromisoformat(operation[name])
    return columns | operation


def update_operation(conn, centre_id: int, operation_id: int, patient_id: int, columns: dict,
                     children: dict) -> None:
    conn.execute(_UPDATE_OPERATION,
                 (patient_id, *column_values(columns), centre_id, operation_id))
    _replace_children(conn, centre_id, operation_id, children)


def delete_operation(conn, centre_id: int, operation_id: int) -> bool:
    return conn.execute("DELETE FROM operations WHERE centre_id = %s AND id = %s RETURNING id",
                        (centre_id, operation_id)).fetchone() is not None


def earliest_follow_up(conn, centre_id: int, operation_id: int):
    row = conn.execute("SELECT min(follow_up_date) AS first FROM follow_ups WHERE centre_id = %s AND operation_id = %s",
                       (centre_id, operation_id)).fetchone()
    return row["first"]


def earliest_operation_year(conn, centre_id: int, patient_id: int) -> int | None:
    row = conn.execute("SELECT min(operation_date) AS first FROM operations WHERE centre_id = %s AND patient_id = %s",
                       (centre_id, patient_id)).fetchone()
    return row["first"].year if row["first"] else None


def get_operations_by_local_refs(conn, centre_id: int, local_refs: list[str], *, for_update: bool = False
                                 ) -> dict[str, dict]:
    """The centre's operation documents with these local_refs, by local_ref (bulk submission)."""
    rows = conn.execute(f"SELECT {SELECT_COLUMNS} FROM operations WHERE centre_id = %s AND local_ref = ANY(%s) ORDER BY id"
                        + (" FOR UPDATE" if for_update else ""), (centre_id, local_refs)).fetchall()
    return {document["local_ref"]: document for document in documents_of(conn, centre_id, rows)}
