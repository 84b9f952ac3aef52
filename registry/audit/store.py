"""The append-only audit trail: who did what to which record, when, and its values old → new.

Values are written as the API shows them (its field names and JSON representation) in
`changes`: `{"field": {"old": …, "new": …}}`; a creation has only `new`, a deletion only `old`.
They never include a patient's ref (nor its hash) or a token's secret (nor its hash): the
callers pass only the fields the API shows. An erasure clears them (`redact_erased_patient`).
"""

import datetime as dt
import json
from decimal import Decimal

from flask import g, has_request_context
from psycopg.types.json import Jsonb

from registry.auth import Principal

_EMPTY = (None, [], {})


def _json_value(value):
    """JSON for what is not JSON already: dates and times as ISO 8601, decimals as numbers (as the API)."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not an audited value")


def changes_json(changes: dict | None) -> str | None:
    """`changes` as the JSON text stored in audit_events.changes (bulk COPY writes it as is)."""
    return None if changes is None else json.dumps(changes, default=_json_value, ensure_ascii=False)


def created(values: dict) -> dict:
    """The `changes` of a creation: every field given a value, as `new`."""
    return {name: {"new": value} for name, value in values.items() if value not in _EMPTY}


def deleted(values: dict) -> dict:
    """The `changes` of a deletion: every field that had a value, as `old`."""
    return {name: {"old": value} for name, value in values.items() if value not in _EMPTY}


def updated(old: dict, new: dict) -> dict:
    """The `changes` of an update: the fields whose values differ, old → new."""
    return {name: {"old": old.get(name), "new": new.get(name)}
            for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)}


def record(conn, *, centre_id: int, action: str, entity: str, entity_id: int | None,
           changed_fields=None, changes: dict | None = None, actor: Principal | None = None) -> None:
    """Append one audit event in the caller's transaction (so it commits with the change).

    `changes` holds the values (see `created`, `updated`, `deleted`); `changed_fields` defaults to
    its field names."""
    if changed_fields is None:
        changed_fields = changes or ()
    request_id = g.get("request_id") if has_request_context() else None
    conn.execute(
        """INSERT INTO audit_events
               (centre_id, actor_token_id, actor_role, request_id, action, entity, entity_id, changed_fields,
                changes)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (centre_id, actor.token_id if actor else None, actor.role if actor else "cli", request_id,
         action, entity, entity_id, sorted(changed_fields),
         None if changes is None else Jsonb(changes, dumps=changes_json)),
    )


def entry_parameters(actor: Principal | None, **changes: dict) -> dict:
    """The values `record` writes besides the action and the entity, as named parameters for a
    statement that writes audit entries itself (`operations.store.insert_operation_with_patient_ref`):
    the actor's, and for each name given its `{name}_fields` and `{name}_changes` (JSON text)."""
    parameters = {"actor_token_id": actor.token_id if actor else None, "actor_role": actor.role if actor else "cli",
                  "request_id": g.get("request_id") if has_request_context() else None}
    for name, values in changes.items():
        parameters[f"{name}_fields"] = sorted(values)
        parameters[f"{name}_changes"] = changes_json(values)
    return parameters


def redact_erased_patient(conn, centre_id: int, patient_id: int, operation_ids: list[int],
                          follow_up_ids: list[int]) -> None:
    """Clear the values of every audit event about an erased patient's records (who, when, which
    record and which fields stay: `audit_redact`, migration 0004).

    Their records are the patient, its operations and their follow-ups as they are now (the ids
    given), and also those that are gone or moved: every operation whose events ever named the
    patient as its `patient_id` (deleted earlier, or moved to another patient: its history before
    the move is the erased patient's, and telling it apart is not worth the risk) and every
    follow-up whose events named one of those operations."""
    operation_ids = sorted(set(operation_ids) | {row["entity_id"] for row in conn.execute(
        """SELECT DISTINCT entity_id FROM audit_events
           WHERE centre_id = %s AND entity = 'operation' AND (changes #>> '{patient_id,new}')::bigint = %s""",
        (centre_id, patient_id))})
    follow_up_ids = sorted(set(follow_up_ids) | {row["entity_id"] for row in conn.execute(
        """SELECT DISTINCT entity_id FROM audit_events
           WHERE centre_id = %s AND entity = 'follow_up' AND (changes #>> '{operation_id,new}')::bigint = ANY(%s)""",
        (centre_id, operation_ids))})
    for entity, ids in (("patient", [patient_id]), ("operation", operation_ids), ("follow_up", follow_up_ids)):
        if ids:
            conn.execute("SELECT audit_redact(%s, %s, %s::bigint[])", (centre_id, entity, ids))


def list_events(conn, centre_id: int | None, filters: dict, after_id: int | None, limit: int) -> list[dict]:
    """Audit events in id order after `after_id`: one centre's, or every centre's when None.

    Follow-up events written before migration 0009 named the date `follow_up_date` (the column);
    they are shown with the API's name, `date`, like later ones (the rows stay as written)."""
    return conn.execute(
        """SELECT id, centre_id, occurred_at, actor_token_id, actor_role, request_id, action, entity, entity_id,
                  CASE WHEN entity = 'follow_up' THEN array_replace(changed_fields, 'follow_up_date', 'date')
                       ELSE changed_fields END AS changed_fields,
                  changes
           FROM audit_events
           WHERE (%(centre_id)s::bigint IS NULL OR centre_id = %(centre_id)s)
             AND (%(after)s::bigint IS NULL OR id > %(after)s)
             AND (%(entity)s::text IS NULL OR entity = %(entity)s)
             AND (%(entity_id)s::bigint IS NULL OR entity_id = %(entity_id)s)
             AND (%(action)s::text IS NULL OR action = %(action)s)
             AND (%(since)s::timestamptz IS NULL OR occurred_at >= %(since)s)
           ORDER BY id LIMIT %(limit)s""",
        {"centre_id": centre_id, "after": after_id, "limit": limit,
         **{name: filters.get(name) for name in ("entity", "entity_id", "action", "since")}}).fetchall()
