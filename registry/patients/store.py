"""Patients: SQL, and the rules for creating, updating, withdrawing and erasing them.

Functions take a connection and never commit: the caller owns the transaction.
"""

import hmac

from flask import current_app

from registry import keys
from registry.audit import store as audit
from registry.auth import Principal
from registry.fields import normal_ref
from registry.patients.schemas import SENT_FIELDS
from registry.problems import InvalidInput, Problem, field_error

PATIENT_FIELDS = ("sex", "birth_year", "diagnosis", "diagnosis_note", "genes", "inheritance",
                  "family_history", "consent")
PATIENT_COLUMNS = "id, centre_id, " + ", ".join(PATIENT_FIELDS) + ", version, created_at, updated_at"


def ref_hash(centre_id: int, ref: str) -> bytes:
    """Keyed hash of a centre's patient ref: the same ref always maps to the same patient, and
    nobody without the registry secret can tell which ref it was. The centre is part of the
    message so equal refs at two centres do not even share a hash. The ref is hashed in its
    normal form (NFKC, as the schemas load it), so look-alike spellings are one patient."""
    secret = current_app.config["REGISTRY_SETTINGS"].registry_secret
    return hmac.digest(secret, f"{centre_id}:{normal_ref(ref)}".encode(), "sha256")


def get_patient(conn, centre_id: int, patient_id: int, *, for_update: bool = False) -> dict | None:
    return conn.execute(
        f"SELECT {PATIENT_COLUMNS} FROM patients WHERE centre_id = %s AND id = %s"
        + (" FOR UPDATE" if for_update else ""), (centre_id, patient_id)).fetchone()


# The patient a write names by id, read before its token is checked, for the token's centre: see
# `send_named_patient_read`.
_NAMED_PATIENT = f"""SELECT {PATIENT_COLUMNS} FROM patients
                     WHERE id = %s AND centre_id = (SELECT centre_id FROM tokens WHERE token_hash = %s
                                                    AND revoked_at IS NULL AND expires_at > now())"""


def send_named_patient_read(conn, patient_id: int, token_hash: bytes):
    """Send the read of the patient with this id in the centre of the token with this hash; the
    cursor returned gives it (None when that centre has no such patient or the token is not usable).
    In a pipelined write, sent before the token lookup, it travels in the lookup's round trip."""
    return conn.execute(_NAMED_PATIENT, (patient_id, token_hash))


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


def audit_values(fields: dict) -> dict:
    """A patient's values as the audit trail records them: the API's fields, never the ref."""
    return _values(fields)


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
    # a consent change names the event (withdraw_consent, restore_consent); its changes list
    # every field that changed, consent and any changed alongside
    audit.record(conn, centre_id=row["centre_id"], action=_action(current, changed, fields), entity="patient",
                 entity_id=row["id"], changes=audit.updated(audit_values(current), audit_values(fields)), actor=actor)
    return row, changed


# The patient with a ref new to the centre, inserted (nothing when the ref is known), and whether
# that ref was erased: a CTE, so that an operation can be inserted for it in the same statement.
NEW_PATIENT_CTE = f"""
    inserted_patient AS (
        INSERT INTO patients (centre_id, ref_hash, {", ".join(PATIENT_FIELDS)})
        VALUES (%(centre_id)s, %(ref_hash)s, {", ".join(f"%({name})s" for name in PATIENT_FIELDS)})
        ON CONFLICT (centre_id, ref_hash) DO NOTHING RETURNING {PATIENT_COLUMNS}),
    new_patient AS (
        SELECT inserted_patient.*, EXISTS (SELECT 1 FROM erased_patients WHERE centre_id = %(centre_id)s
                                           AND ref_tombstone = %(tombstone)s) AS erased
        FROM inserted_patient)"""
# ... alone: one round trip for the insert and the erasure check
_INSERT_NEW_PATIENT = f"WITH {NEW_PATIENT_CTE} SELECT * FROM new_patient"


def upsert_patient(conn, actor: Principal, fields: dict, *, field_prefix: str = "",
                   inline: bool = False) -> tuple[dict, bool]:
    """Create the patient with this ref, or update the one that has it. Returns (row, created).

    `inline`: the patient an operation document names, which must agree with the stored one
    (see `resubmitted_fields`). The ref of an erased patient is refused (ErasedRef, naming
    `{field_prefix}ref`)."""
    parameters = new_patient_parameters(actor, fields)
    row = conn.execute(_INSERT_NEW_PATIENT, parameters).fetchone()
    if row is not None:
        # a new ref: erased before? (asked in the same statement; raising rolls the insert back)
        if row.pop("erased"):
            raise ErasedRef(f"{field_prefix}ref")
        record_creation(conn, actor, row, fields)
        return row, True
    return update_stored_patient(conn, actor, parameters["ref_hash"], fields, field_prefix, inline=inline), False


def update_stored_patient(conn, actor: Principal, hashed: bytes, fields: dict, field_prefix: str = "", *,
                          inline: bool = False) -> dict:
    """`upsert_patient` for a ref the centre has: the stored patient, locked, updated by the rules
    of a patient sent again (`resubmitted_fields`)."""
    current = conn.execute(
        f"SELECT {PATIENT_COLUMNS} FROM patients WHERE centre_id = %s AND ref_hash = %s FOR UPDATE",
        (actor.centre_id, hashed)).fetchone()
    row, _ = update_patient(conn, actor, current, resubmitted_fields(current, fields, field_prefix, inline=inline))
    return row


def new_patient_parameters(actor: Principal, fields: dict) -> dict:
    """The parameters of `NEW_PATIENT_CTE` for a patient sent with this ref."""
    hashed = ref_hash(actor.centre_id, fields["ref"])
    return _values(fields) | {"centre_id": actor.centre_id, "ref_hash": hashed, "tombstone": ref_tombstone(hashed)}


def record_creation(conn, actor: Principal, row: dict, fields: dict) -> None:
    """Audit a patient `NEW_PATIENT_CTE` created, as `upsert_patient` does."""
    audit.record(conn, centre_id=actor.centre_id, action="create", entity="patient", entity_id=row["id"],
                 changes=audit.created(audit_values(fields)), actor=actor)


# --- a patient sent again ------------------------------------------------------------------
#
# A hospital feed sends the patient with every operation document; what it sends must never
# rewrite the patient behind the centre's back. So an inline patient is checked against the
# stored one, field by field, among the fields it sent: a field left out keeps its stored value,
# an equal value passes, a different one (null included) is a field error. Consent may go from
# active to withdrawn (the patient's wish, safe to honour at once; audited `withdraw_consent`)
# but never back: only PUT/PATCH /v1/patients/{id} with If-Match restores it.
# POST /v1/patients/ (create or update by ref) replaces the demographics it sends, as documented,
# but does not restore a withdrawn consent either, and consent left out keeps its stored value.


def sent_fields(fields: dict) -> frozenset:
    """The patient fields the sender gave (as `PatientInputSchema` records them), else every one present."""
    sent = fields.get(SENT_FIELDS)
    return sent if sent is not None else frozenset(name for name in PATIENT_FIELDS if name in fields)


def _restore_refused(field: str, patient_id: int) -> dict:
    return field_error(field, f"The patient withdrew consent: only a change of the patient record restores it "
                              f"(PUT/PATCH /v1/patients/{patient_id} with If-Match). Leave consent out to keep it.")


def inline_disagreements(current: dict, fields: dict, field_prefix: str = "patient.") -> list[dict]:
    """Field errors for the sent inline patient fields that differ from the stored patient.

    The stored values are not repeated in the messages: a rejected bulk record's errors are kept
    with the submission, and would outlive the patient's erasure."""
    errors = []
    for name in PATIENT_FIELDS:
        if name not in sent_fields(fields):
            continue
        stored, sent = current[name], fields.get(name)
        if name == "genes":  # distinct codes: the same set in another order is the same
            stored, sent = sorted(stored or []), sorted(sent or [])
        if stored == sent or (name == "consent" and sent == "withdrawn"):
            continue
        if name == "consent":
            errors.append(_restore_refused(field_prefix + name, current["id"]))
        else:
            errors.append(field_error(field_prefix + name, (
                f"Differs from the stored patient: change the patient record (PUT/PATCH /v1/patients/{current['id']} "
                "with If-Match), or leave the field out.")))
    return errors


def resubmitted_fields(current: dict, fields: dict, field_prefix: str = "", *, inline: bool) -> dict:
    """The patient's fields after `fields` were sent again for the stored `current` (see above);
    InvalidInput naming the fields that may not change this way."""
    sent = sent_fields(fields)
    if inline:
        errors = inline_disagreements(current, fields, field_prefix)
        if errors:
            raise InvalidInput(errors)
        return {name: current[name] for name in PATIENT_FIELDS} | (
            {"consent": "withdrawn"} if "consent" in sent and fields["consent"] == "withdrawn" else {})
    if "consent" not in sent:
        return fields | {"consent": current["consent"]}
    if current["consent"] == "withdrawn" and fields["consent"] != "withdrawn":
        raise InvalidInput([_restore_refused(field_prefix + "consent", current["id"])])
    return fields


# --- erasure -------------------------------------------------------------------------------
#
# Erasing a patient removes, in its transaction, everything the registry holds about them: the
# patient, operations, implants, events, complications and follow-ups (by cascade); their
# clinical facts in the report tables (the log is folded at once and cells left at zero go);
# the stored Idempotency-Key answers naming them (the keys stay, refused with 410: a retry
# neither replays nor re-runs); their per-record results in bulk submissions (kept as position
# and outcome `erased` only); the values in their audit events (who, when, which record and
# which fields stay). What is kept: the `erase` audit event (patient id, who, when) and a
# tombstone, an HMAC of the ref hash under its own derived key, so that resending the ref (a
# retry, a feed, a bulk file) is refused (410 naming the ref) instead of creating the patient
# again. The centre lifts the tombstone if the patient consents again (`lift_erasure`).


class ErasedRef(Problem):
    """410: this ref belongs to an erased patient."""

    MESSAGE = ("This patient was erased: the registry refuses the ref until your centre lifts the erasure "
               "(POST /v1/patients/lift-erasure) if the patient consents again.")

    def __init__(self, field: str = "ref"):
        super().__init__(410, "The patient with this ref was erased (right to erasure).", slug="erased",
                         errors=[field_error(field, self.MESSAGE)])


def ref_tombstone(hashed_ref: bytes) -> bytes:
    """What an erasure keeps of a ref: a keyed hash of its ref hash, under a key of its own, so it
    matches neither the ref nor the erased patient's row in an earlier backup without the secret."""
    return keys.keyed_digest(keys.ERASED_PATIENT, hashed_ref)


def erased_ref_hashes(conn, centre_id: int, ref_hashes: list[bytes]) -> set[bytes]:
    """The ref hashes among these that belong to erased patients of the centre."""
    if not ref_hashes:
        return set()
    by_tombstone = {ref_tombstone(hashed): hashed for hashed in ref_hashes}
    rows = conn.execute("SELECT ref_tombstone FROM erased_patients WHERE centre_id = %s AND ref_tombstone = ANY(%s)",
                        (centre_id, list(by_tombstone))).fetchall()
    return {by_tombstone[bytes(row["ref_tombstone"])] for row in rows}


def lift_erasure(conn, actor: Principal, ref: str) -> bool:
    """Let this ref be used again (the patient consented again); False when it was not erased."""
    lifted = conn.execute(
        "DELETE FROM erased_patients WHERE centre_id = %s AND ref_tombstone = %s RETURNING 1",
        (actor.centre_id, ref_tombstone(ref_hash(actor.centre_id, ref)))).fetchone()
    if lifted is None:
        return False
    audit.record(conn, centre_id=actor.centre_id, action="lift_erasure", entity="patient", entity_id=None,
                 actor=actor)
    return True


def erase_patient(conn, actor: Principal, patient_id: int) -> bool:
    """Erase a patient and every trace of theirs (see above). False when the centre has no such patient."""
    centre_id = actor.centre_id
    # locked first, so the records read next are all there are: a writer adding an operation to
    # this patient holds a key-share lock until it commits, and one that comes later fails
    patient = conn.execute("SELECT ref_hash FROM patients WHERE centre_id = %s AND id = %s FOR UPDATE",
                           (centre_id, patient_id)).fetchone()
    if patient is None:
        return False
    records = conn.execute(
        """WITH erased AS (SELECT id, local_ref FROM operations WHERE centre_id = %(centre_id)s AND patient_id = %(id)s)
           SELECT coalesce((SELECT array_agg(id) FROM erased), '{}') AS operation_ids,
                  coalesce((SELECT array_agg(local_ref) FROM erased), '{}') AS local_refs,
                  coalesce((SELECT array_agg(f.id) FROM follow_ups f JOIN erased o ON o.id = f.operation_id
                            WHERE f.centre_id = %(centre_id)s), '{}') AS follow_up_ids""",
        {"centre_id": centre_id, "id": patient_id}).fetchone()
    operation_ids = records["operation_ids"]
    conn.execute("DELETE FROM patients WHERE centre_id = %s AND id = %s", (centre_id, patient_id))
    conn.execute("INSERT INTO erased_patients (centre_id, ref_tombstone) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                 (centre_id, ref_tombstone(bytes(patient["ref_hash"]))))
    # the report tables: refresh the erased operations now (not at commit), then fold the log
    conn.execute("SET CONSTRAINTS report_dirty_flush IMMEDIATE")
    conn.execute("SET CONSTRAINTS report_dirty_flush DEFERRED")
    conn.execute("SELECT report_forget_erased(%s)", (centre_id,))
    conn.execute(
        """UPDATE idempotency_keys SET erased_at = now(), response_bytes = NULL, response_headers = '{}',
                  patient_ids = '{}', operation_ids = '{}'
           WHERE centre_id = %s AND (patient_ids && ARRAY[%s]::bigint[] OR operation_ids && %s::bigint[])""",
        (centre_id, patient_id, operation_ids))
    conn.execute(
        """UPDATE submission_records SET outcome = 'erased', local_ref = NULL, operation_id = NULL, errors = NULL
           WHERE centre_id = %s
             AND (operation_id = ANY(%s::bigint[]) OR (operation_id IS NULL AND local_ref = ANY(%s::text[])))""",
        (centre_id, operation_ids, records["local_refs"]))
    audit.redact_erased_patient(conn, centre_id, patient_id, operation_ids, records["follow_up_ids"])
    audit.record(conn, centre_id=centre_id, action="erase", entity="patient", entity_id=patient_id, actor=actor)
    return True
