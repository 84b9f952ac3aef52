"""Patients: SQL, and the rules for creating, updating, withdrawing and erasing them.

Functions take a connection and never commit: the caller owns the transaction.
"""

import hashlib
import hmac

from flask import current_app

from registry.audit import store as audit
from registry.auth import Principal
from registry.fields import normal_ref

PATIENT_FIELDS = ("sex", "birth_year", "diagnosis", "diagnosis_note", "genes", "inheritance",
                  "family_history", "consent")
PATIENT_COLUMNS = "id, centre_id, " + ", ".join(PATIENT_FIELDS) + ", version, created_at, updated_at"


def ref_hash(centre_id: int, ref: str) -> bytes:
    """Keyed hash of a centre's patient ref: the same ref always maps to the same patient, and
    nobody without the registry secret can tell which ref it was. The centre is part of the
    message so equal refs at two centres do not even share a hash. The ref is hashed in its
    normal form (NFKC, as the schemas load it), so look-alike spellings are one patient."""
    secret = current_app.config["REGISTRY_SETTINGS"].registry_secret
    return hmac.new(secret, f"{centre_id}:{normal_ref(ref)}".encode(), hashlib.sha256).digest()


def get_patient(conn, centre_id: int, patient_id: int, *, for_update: bool = False) -> dict | None:
    return conn.execute(
        f"SELECT {PATIENT_COLUMNS} FROM patients WHERE centre_id = %s AND id = %s"
        + (" FOR UPDATE" if for_update else ""), (centre_id, patient_id)).fetchone()


def list_patients(conn, centre_id: int, filters: dict, after_id: int | None, limit: int) -> list[dict]:
    ref = filters.get("ref")
    return conn.execute(
        f"""SELECT {PATIENT_COLUMNS} FROM patients
            WHERE centre_id = %(centre_id)s
              AND (%(after)s::bigint IS NULL OR id > %(after)s)
              AND (%(ref_hash)s::bytea IS NULL OR ref_hash = %(ref_hash)s)
              AND (%(diagnosis)s::text IS NULL OR diagnosis = %(diagnosis)s)
              AND (%(consent)s::text IS NULL OR consent = %(consent)s)
              AND (%(updated_since)s::timestamptz IS NULL OR updated_at >= %(updated_since)s)
            ORDER BY id LIMIT %(limit)s""",
        {"centre_id": centre_id, "after": after_id, "limit": limit,
         "ref_hash": ref_hash(centre_id, ref) if ref else None, "diagnosis": filters.get("diagnosis"),
         "consent": filters.get("consent"), "updated_since": filters.get("updated_since")},
    ).fetchall()


def _values(fields: dict) -> dict:
    return {name: fields.get(name) for name in PATIENT_FIELDS} | {"genes": fields.get("genes") or []}


def changed_fields(current: dict, fields: dict) -> list[str]:
    new = _values(fields)
    return [name for name in PATIENT_FIELDS if current.get(name) != new[name]]


def _action(current: dict, changed: list[str], fields: dict) -> str:
    if "consent" in changed:
        return "withdraw_consent" if fields.get("consent") == "withdrawn" else "restore_consent"
    return "update"


def update_patient(conn, actor: Principal, current: dict, fields: dict) -> tuple[dict, list[str]]:
    """Replace a patient's fields; a no-op (same version) when nothing differs."""
    changed = changed_fields(current, fields)
    if not changed:
        return current, []
    row = conn.execute(
        f"""UPDATE patients SET {", ".join(f"{name} = %({name})s" for name in PATIENT_FIELDS)},
                version = version + 1, updated_at = now()
            WHERE centre_id = %(centre_id)s AND id = %(id)s RETURNING {PATIENT_COLUMNS}""",
        _values(fields) | {"centre_id": current["centre_id"], "id": current["id"]},
    ).fetchone()
    # consent changes are audited without the clinical fields that changed alongside
    audit.record(conn, centre_id=row["centre_id"], action=_action(current, changed, fields), entity="patient",
                 entity_id=row["id"], changed_fields=changed, actor=actor)
    return row, changed


def upsert_patient(conn, actor: Principal, fields: dict) -> tuple[dict, bool]:
    """Create the patient with this ref, or update the one that has it. Returns (row, created)."""
    hashed = ref_hash(actor.centre_id, fields["ref"])
    row = conn.execute(
        f"""INSERT INTO patients (centre_id, ref_hash, {", ".join(PATIENT_FIELDS)})
            VALUES (%(centre_id)s, %(ref_hash)s, {", ".join(f"%({name})s" for name in PATIENT_FIELDS)})
            ON CONFLICT (centre_id, ref_hash) DO NOTHING RETURNING {PATIENT_COLUMNS}""",
        _values(fields) | {"centre_id": actor.centre_id, "ref_hash": hashed},
    ).fetchone()
    if row is not None:
        audit.record(conn, centre_id=actor.centre_id, action="create", entity="patient", entity_id=row["id"],
                     changed_fields=[name for name in PATIENT_FIELDS if fields.get(name) not in (None, [])],
                     actor=actor)
        return row, True
    current = conn.execute(
        f"SELECT {PATIENT_COLUMNS} FROM patients WHERE centre_id = %s AND ref_hash = %s FOR UPDATE",
        (actor.centre_id, hashed)).fetchone()
    row, _ = update_patient(conn, actor, current, fields)
    return row, False


def erase_patient(conn, actor: Principal, patient_id: int) -> bool:
    """Delete a patient and, by cascade, every record of theirs. The audit keeps only the fact."""
    row = conn.execute(
        """WITH erased AS (DELETE FROM patients WHERE centre_id = %s AND id = %s RETURNING id)
           SELECT id FROM erased""", (actor.centre_id, patient_id)).fetchone()
    if row is None:
        return False
    # stored idempotent answers may hold the patient's records: they go too
    conn.execute(
        """DELETE FROM idempotency_keys WHERE centre_id = %(centre_id)s
             AND (response_body @> jsonb_build_object('patient_id', %(id)s::bigint)
                  OR response_body @> jsonb_build_object('patient', jsonb_build_object('id', %(id)s::bigint))
                  OR (response_body @> jsonb_build_object('id', %(id)s::bigint)
                      AND response_headers ->> 'Location' LIKE '/v1/patients/%%'))""",
        {"centre_id": actor.centre_id, "id": patient_id})
    audit.record(conn, centre_id=actor.centre_id, action="erase", entity="patient", entity_id=patient_id,
                 actor=actor)
    return True
