"""Set-based writes of new records for bulk submission: one COPY per table per chunk.

Only creations come here — new patients, new operations with their implants, events and
complications, new follow-ups — already validated and checked by `registry.submissions.service`
with the record API's own rules. Their rows are the ones the record API would write
(`columns_and_children`, the follow-up columns) and each creation is audited as it would be.
Anything that updates a stored record goes through the record API's functions instead.

Functions take a connection and never commit; a failure (say a concurrent request created the
same local_ref meanwhile) raises, and the caller retries the chunk record by record.
"""

import datetime as dt
import functools
import json
from decimal import Decimal
from typing import NamedTuple

from flask import g, has_request_context
from psycopg import sql
from psycopg.types.json import Jsonb

from registry.audit import store as audit_store
from registry.auth import Principal
from registry.follow_ups import store as follow_ups
from registry.operations import service as operation_service
from registry.operations import store as operations
from registry.patients import store as patients


@functools.lru_cache(maxsize=4096)
def _text_array(values: tuple) -> str:
    """A text[] literal. psycopg formats a list in Python, five times slower in COPY than
    this string; the lists here are codes and field names, repeated from row to row."""
    return "{" + ",".join('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values) + "}"


def array_parameter(values) -> str:
    """A list as an array literal for `= ANY(%s)`: psycopg sends text untyped, so PostgreSQL
    reads it as an array of the column's type; binding the list costs more than the query."""
    return "{" + ",".join("\\\\x" + value.hex() if isinstance(value, bytes)
                          else '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for value in values) + "}"


# COPY's text format: one line per row, tab between values, \N for null, backslash, newline,
# carriage return and tab escaped. Lines are built with stand-ins for the tab, the newline and
# \N, then the whole text is escaped in one pass that puts them back: a value holding a
# stand-in (a control character, in practice never) shows in their counts, and that text is
# built again value by value.
_TAB, _NEWLINE, _NULL = "\x1f", "\x1e", "\x1d"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
# in this order (str.replace, many times faster than str.translate to several characters)
_COPY_TEXT_ESCAPES = (("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"),
                      (_TAB, "\t"), (_NEWLINE, "\n"), (_NULL, "\\N"))
_RAW_TEXT = {  # each value as PostgreSQL reads it, before COPY's escaping
    type(None): lambda value: _NULL,
    bool: lambda value: "t" if value else "f",
    int: str,
    float: repr,
    Decimal: str,
    list: lambda value: _text_array(tuple(value)),
    bytes: lambda value: "\\x" + value.hex(),
    dt.date: dt.date.isoformat,
    Jsonb: lambda value: (value.dumps or json.dumps)(value.obj),
}


def _raw_line(row) -> str:
    return _TAB.join([value if type(value) is str else _RAW_TEXT[type(value)](value) for value in row]) + _NEWLINE


def _copy_text(rows: list) -> str:
    """The rows in COPY's text format."""
    text = "".join(map(_raw_line, rows))
    values, nulls = sum(map(len, rows)), sum(row.count(None) for row in rows)
    if text.count(_NEWLINE) == len(rows) and text.count(_TAB) == values - len(rows) and text.count(_NULL) == nulls:
        for character, escaped in _COPY_TEXT_ESCAPES:
            text = text.replace(character, escaped)
        return text
    return "".join("\t".join(r"\N" if value is None else _raw(value).translate(_COPY_ESCAPES) for value in row) + "\n"
                   for row in rows)


def _raw(value) -> str:
    return value if type(value) is str else _RAW_TEXT[type(value)](value)


def copy_text(values) -> str:
    """One row's values in COPY's text format, without the line's end."""
    return _copy_text([tuple(values)])[:-1]


def _copy(conn, table: str, columns: tuple, rows) -> None:
    """COPY the rows, formatted here as text in one piece: psycopg's write_row, value by value,
    costs several times more."""
    rows = list(rows)
    if rows:
        _copy_lines(conn, table, columns, _copy_text(rows))


def _copy_lines(conn, table: str, columns: tuple, text: str) -> None:
    """COPY text already formatted (lines of `copy_text`)."""
    if not text:
        return
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.cursor().copy(statement) as copy:
        copy.write(text)


class PreparedOperation(NamedTuple):
    """A new operation as COPY text and audit, all but the ids it gets when written: made where
    the record was validated (`registry.submissions.validation`, a worker process most often)."""
    local_ref: str
    text: str                        # its OPERATION_COLUMNS (after centre_id and patient_id)
    children: dict[str, list[str]]   # per child table, each row's columns (after centre, operation, position)
    audit_fields: tuple              # the fields its creation sets, but patient_id
    audit_changes: str               # the `changes` JSON of its creation, but patient_id


class PreparedFollowUp(NamedTuple):
    """A new follow-up as COPY text (after centre_id and operation_id) and audit, but operation_id."""
    local_ref: str
    text: str
    audit_fields: tuple
    audit_changes: str


def prepare_operation(columns: dict, children: dict) -> PreparedOperation:
    """From `operations.service.columns_and_children`: the rows and audit the record API writes."""
    # as operations.service.submit_operation audits a creation; patient_id (None here) is added when known
    changes = audit_store.created(operation_service.audit_values(columns, children, None))
    return PreparedOperation(
        columns["local_ref"], copy_text(operations.column_values(columns)),
        {table: [copy_text(item.get(name) for name in child_columns) for item in children[table]]
         for table, child_columns in operations.CHILD_COLUMNS.items()},
        tuple(changes), audit_store.changes_json(changes))


def prepare_follow_up(values: dict) -> PreparedFollowUp:
    """From `follow_ups.store.follow_up_columns`: the row and audit `save_follow_up` writes."""
    stored = follow_ups.stored_scores(values)
    # as follow_ups.store.save_follow_up audits a creation; operation_id (None here) is added when known
    changes = audit_store.created(follow_ups.audit_values(None, values))
    return PreparedFollowUp(values["local_ref"], copy_text(stored[name] for name in follow_ups.FIELDS),
                            tuple(changes), audit_store.changes_json(changes))


def _ids(conn, table: str, key: str, centre_id: int, values: list) -> dict:
    rows = conn.execute(sql.SQL("SELECT id, {key} FROM {table} WHERE centre_id = %s AND {key} = ANY(%s)").format(
        key=sql.Identifier(key), table=sql.Identifier(table)), (centre_id, array_parameter(values))).fetchall()
    return {bytes(row[key]) if isinstance(row[key], memoryview) else row[key]: row["id"] for row in rows}


class AuditRows:
    """Audit events gathered for one chunk and appended with one COPY, like `audit.record` would."""

    COLUMNS = ("centre_id", "actor_token_id", "actor_role", "request_id", "action", "entity", "entity_id",
               "changed_fields", "changes")

    def __init__(self, actor: Principal):
        self.actor = actor
        self.request_id = g.get("request_id") if has_request_context() else None
        self.rows = []

    def add_creation(self, entity: str, entity_id: int, values: dict) -> None:
        """A creation with these values (the API's names and values), as `audit.record` writes it."""
        changes = audit_store.created(values)
        self.rows.append((self.actor.centre_id, self.actor.token_id, self.actor.role, self.request_id, "create",
                          entity, entity_id, _text_array(tuple(sorted(changes))), audit_store.changes_json(changes)))

    def add_prepared(self, entity: str, entity_id: int, prepared, id_name: str, id_value: int) -> None:
        """A creation prepared without one id (`PreparedOperation`, `PreparedFollowUp`), with it."""
        changes = f'{{"{id_name}": {{"new": {int(id_value)}}}' + (
            "}" if prepared.audit_changes == "{}" else ", " + prepared.audit_changes[1:])
        self.rows.append((self.actor.centre_id, self.actor.token_id, self.actor.role, self.request_id, "create",
                          entity, entity_id, _text_array(tuple(sorted((*prepared.audit_fields, id_name)))), changes))

    def write(self, conn) -> None:
        _copy(conn, "audit_events", self.COLUMNS, self.rows)
        self.rows = []


def insert_patients(conn, actor: Principal, new_patients: dict[bytes, dict], audit: AuditRows) -> dict[bytes, int]:
    """Create patients (ref hash -> loaded patient fields); their ids by ref hash."""
    if not new_patients:
        return {}
    values = {ref_hash: {name: fields.get(name) for name in patients.PATIENT_FIELDS} | {"genes": fields.get("genes") or []}
              for ref_hash, fields in new_patients.items()}
    _copy(conn, "patients", ("centre_id", "ref_hash", *patients.PATIENT_FIELDS),
          ((actor.centre_id, ref_hash, *(row[name] for name in patients.PATIENT_FIELDS))
           for ref_hash, row in values.items()))
    ids = _ids(conn, "patients", "ref_hash", actor.centre_id, list(values))
    for ref_hash, fields in new_patients.items():
        # as patients.store.upsert_patient audits a creation
        audit.add_creation("patient", ids[ref_hash], patients.audit_values(fields))
    return ids


def insert_operations(conn, actor: Principal, new_operations: list[tuple[int, PreparedOperation]],
                      audit: AuditRows) -> dict[str, int]:
    """Create operations from (patient id, prepared operation); their ids by local_ref."""
    if not new_operations:
        return {}
    centre_id = actor.centre_id
    _copy_lines(conn, "operations", ("centre_id", "patient_id", *operations.OPERATION_COLUMNS),
                "".join(f"{centre_id}\t{patient_id}\t{prepared.text}\n" for patient_id, prepared in new_operations))
    ids = _ids(conn, "operations", "local_ref", centre_id, [prepared.local_ref for _, prepared in new_operations])
    for table, child_columns in operations.CHILD_COLUMNS.items():
        _copy_lines(conn, table, ("centre_id", "operation_id", "position", *child_columns), "".join(
            f"{centre_id}\t{ids[prepared.local_ref]}\t{position}\t{text}\n"
            for _, prepared in new_operations for position, text in enumerate(prepared.children[table])))
    for patient_id, prepared in new_operations:
        audit.add_prepared("operation", ids[prepared.local_ref], prepared, "patient_id", patient_id)
    return ids


def insert_follow_ups(conn, actor: Principal, new_follow_ups: list[tuple[int, PreparedFollowUp]],
                      audit: AuditRows) -> None:
    """Create follow-ups from (operation id, prepared follow-up)."""
    if not new_follow_ups:
        return
    centre_id = actor.centre_id
    _copy_lines(conn, "follow_ups", ("centre_id", "operation_id", *follow_ups.FIELDS),
                "".join(f"{centre_id}\t{operation_id}\t{prepared.text}\n" for operation_id, prepared in new_follow_ups))
    ids = _ids(conn, "follow_ups", "local_ref", centre_id, [prepared.local_ref for _, prepared in new_follow_ups])
    for operation_id, prepared in new_follow_ups:
        audit.add_prepared("follow_up", ids[prepared.local_ref], prepared, "operation_id", operation_id)


# as follow_ups.store selects them (joa as a float, the date as `date`)
_FOLLOW_UP_COLUMNS = [f"f.{name}::float8 AS {name}" if name == "joa" else f"f.{name}"
                      for name in follow_ups.FIELDS if name != "follow_up_date"]


def existing_follow_ups(conn, centre_id: int, local_refs: list[str]) -> dict[str, dict]:
    """Stored follow-ups with these local_refs, by local_ref, in the shape `save_follow_up` compares."""
    if not local_refs:
        return {}
    rows = conn.execute(
        f"""SELECT f.id, f.operation_id, {", ".join(_FOLLOW_UP_COLUMNS)}, f.follow_up_date AS date
            FROM follow_ups f WHERE f.centre_id = %s AND f.local_ref = ANY(%s)""",
        (centre_id, array_parameter(local_refs))).fetchall()
    return {row["local_ref"]: row for row in rows}


def existing_patients(conn, centre_id: int, ref_hashes: list[bytes]) -> dict[bytes, dict]:
    """Stored patients with these ref hashes, by hash, locked for the rest of the transaction."""
    if not ref_hashes:
        return {}
    rows = conn.execute(
        f"SELECT ref_hash, {patients.PATIENT_COLUMNS} FROM patients WHERE centre_id = %s AND ref_hash = ANY(%s)"
        " ORDER BY id FOR UPDATE", (centre_id, array_parameter(ref_hashes))).fetchall()
    return {bytes(row.pop("ref_hash")): row for row in rows}


def patients_by_id(conn, centre_id: int, ids: list[int]) -> dict[int, dict]:
    if not ids:
        return {}
    rows = conn.execute(f"SELECT {patients.PATIENT_COLUMNS} FROM patients WHERE centre_id = %s AND id = ANY(%s)",
                        (centre_id, ids)).fetchall()
    return {row["id"]: row for row in rows}
