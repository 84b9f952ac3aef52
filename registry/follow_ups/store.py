"""Follow-ups: SQL and the date rules (a follow-up is never before its operation)."""

import calendar
import datetime as dt

from registry.audit import store as audit
from registry.auth import Principal
from psycopg.types.json import Jsonb

from registry.problems import InvalidInput, Problem, field_error
from registry.validation import rules

FIELDS = ("local_ref", "follow_up_date", "months_after", "fusion_status", "assessment", "implant_status", "joa",
          "mjoa", "revision_surgery", "revision_reason", "notes", "bridwell_grade", "scores")
SELECT_COLUMNS = ("f.id, f.centre_id, f.operation_id, o.patient_id, f.local_ref, f.follow_up_date AS date, f.months_after,"
           " f.fusion_status, f.assessment, f.implant_status, f.joa::float8 AS joa, f.mjoa, f.revision_surgery,"
           " f.revision_reason, f.notes, f.bridwell_grade, f.scores, f.version, f.created_at, f.updated_at")
FROM_JOINED = "follow_ups f JOIN operations o ON o.centre_id = f.centre_id AND o.id = f.operation_id"


def whole_months_between(start: dt.date, end: dt.date) -> int:
    months = (end.year - start.year) * 12 + end.month - start.month
    return months - 1 if end.day < start.day else months


def add_months(start: dt.date, months: int) -> dt.date:
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def resolve_dates(operation_date: dt.date, fields: dict) -> tuple[dt.date, int]:
    """(date, months_after) from whichever was given, checked against the operation date."""
    if fields.get("date") is not None:
        date = fields["date"]
        if date < operation_date:
            raise InvalidInput([field_error("date", f"Before the operation ({operation_date}).")])
        months = whole_months_between(operation_date, date)
        if fields.get("months_after") is not None and fields["months_after"] != months:
            raise InvalidInput([field_error("months_after", f"The date is {months} whole months after the "
                                                            "operation; give one or make them agree.")])
        return date, months
    date = add_months(operation_date, fields["months_after"])
    if date > dt.date.today():
        raise InvalidInput([field_error("months_after", f"That is {date}, in the future.")])
    return date, fields["months_after"]


def _with_all_scores(row: dict | None) -> dict | None:
    """A stored follow-up with its full score list (`scores` stores those besides joa and mjoa)."""
    if row is not None:
        row["scores"] = rules.scores_from_storage(row, row["scores"])
    return row


def stored_scores(values: dict) -> dict:
    """Values to bind: the score list as jsonb."""
    return values | {"scores": Jsonb(values["scores"])}


def get_follow_up(conn, centre_id: int, follow_up_id: int, *, for_update: bool = False) -> dict | None:
    row = conn.execute(f"SELECT {SELECT_COLUMNS} FROM {FROM_JOINED} WHERE f.centre_id = %s AND f.id = %s"
                       + (" FOR UPDATE OF f" if for_update else ""), (centre_id, follow_up_id)).fetchone()
    return _with_all_scores(row)


def list_follow_ups(conn, centre_id: int, operation_id: int, after_id: int | None, limit: int) -> list[dict]:
    return [_with_all_scores(row) for row in conn.execute(
        f"""SELECT {SELECT_COLUMNS} FROM {FROM_JOINED} WHERE f.centre_id = %s AND f.operation_id = %s
              AND (%s::bigint IS NULL OR f.id > %s) ORDER BY f.id LIMIT %s""",
        (centre_id, operation_id, after_id, after_id, limit)).fetchall()]


def follow_up_columns(operation_date: dt.date, fields: dict) -> dict:
    """The follow_ups row for `fields` of a follow-up of an operation on `operation_date` (dates resolved)."""
    date, months = resolve_dates(operation_date, fields)
    values = {name: fields.get(name) for name in FIELDS}
    values.update(follow_up_date=date, months_after=months, revision_surgery=fields.get("revision_surgery"))
    # the full score list (a loaded follow-up has it merged already): joa and mjoa in their
    # columns, the others in `scores`
    scores = rules.merged_scores(fields, fields.get("scores"))
    values.update(rules.legacy_scores(scores), scores=rules.other_scores(scores))
    return values


def comparable(row: dict) -> dict:
    """A stored follow-up keyed like `follow_up_columns`, to tell whether a resubmission changes it."""
    values = {name: row["date"] if name == "follow_up_date" else row[name] for name in FIELDS}
    return values | {"scores": rules.other_scores(row["scores"])}


def audit_values(operation_id: int, values: dict) -> dict:
    """A follow-up's values (`follow_up_columns` or `comparable` keys) as the audit trail records them:
    the API's names (`date`, not the column's `follow_up_date`) and its operation."""
    return {"operation_id": operation_id} | {"date" if name == "follow_up_date" else name: values[name]
                                             for name in FIELDS}


def save_follow_up(conn, actor: Principal, operation: dict, fields: dict, current: dict | None = None
                   ) -> tuple[dict, str]:
    """Create a follow-up of `operation`, or replace `current` (or the one with the same local_ref)."""
    values = follow_up_columns(operation["operation_date"], fields)
    if current is None and values["local_ref"]:
        existing = conn.execute("SELECT id FROM follow_ups WHERE centre_id = %s AND local_ref = %s FOR UPDATE",
                                (actor.centre_id, values["local_ref"])).fetchone()
        if existing:
            current = get_follow_up(conn, actor.centre_id, existing["id"])
            if current["operation_id"] != operation["id"]:
                raise Problem(409, "This local_ref belongs to a follow-up of another operation.", slug="conflict",
                              errors=[field_error("local_ref", "Used by a follow-up of another operation.")])
    if current is None:
        row = conn.execute(
            f"""INSERT INTO follow_ups (centre_id, operation_id, {", ".join(FIELDS)})
                VALUES (%(centre_id)s, %(operation_id)s, {", ".join(f"%({name})s" for name in FIELDS)})
                RETURNING id""", stored_scores(values) | {"centre_id": actor.centre_id, "operation_id": operation["id"]}).fetchone()
        audit.record(conn, centre_id=actor.centre_id, action="create", entity="follow_up", entity_id=row["id"],
                     changes=audit.created(audit_values(operation["id"], values)), actor=actor)
        return get_follow_up(conn, actor.centre_id, row["id"]), "created"
    changes = audit.updated(audit_values(current["operation_id"], comparable(current)),
                            audit_values(operation["id"], values))
    if not changes:
        return current, "unchanged"
    if values["local_ref"] and values["local_ref"] != current["local_ref"] and conn.execute(
            "SELECT 1 FROM follow_ups WHERE centre_id = %s AND local_ref = %s",
            (actor.centre_id, values["local_ref"])).fetchone():
        raise Problem(409, "Another follow-up has this local_ref.", slug="conflict",
                      errors=[field_error("local_ref", "Already used by another follow-up.")])
    conn.execute(
        f"""UPDATE follow_ups SET {", ".join(f"{name} = %({name})s" for name in FIELDS)},
                version = version + 1, updated_at = now()
            WHERE centre_id = %(centre_id)s AND id = %(id)s""",
        stored_scores(values) | {"centre_id": actor.centre_id, "id": current["id"]})
    audit.record(conn, centre_id=actor.centre_id, action="update", entity="follow_up", entity_id=current["id"],
                 changes=changes, actor=actor)
    return get_follow_up(conn, actor.centre_id, current["id"]), "updated"


def delete_follow_up(conn, actor: Principal, follow_up_id: int) -> bool:
    deleted = conn.execute(
        f"""DELETE FROM follow_ups WHERE centre_id = %s AND id = %s
            RETURNING operation_id, {", ".join("joa::float8 AS joa" if name == "joa" else name for name in FIELDS)}""",
        (actor.centre_id, follow_up_id)).fetchone()
    if deleted:
        audit.record(conn, centre_id=actor.centre_id, action="delete", entity="follow_up", entity_id=follow_up_id,
                     changes=audit.deleted(audit_values(deleted["operation_id"], deleted)), actor=actor)
    return deleted is not None
