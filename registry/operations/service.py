"""The rules of submitting an operation document, shared by the REST routes and bulk submission.

Resubmitting a `local_ref` updates the stored operation (and a no-op resubmission writes
nothing: no new version, no audit entry). Derived values are computed here, cross-record rules
(birth year before the operation, follow-ups after it) are checked here, and every change is
audited with its values, old → new, as the API shows them (`audit_values`).
"""

from registry import vocabulary as v
from registry.audit import store as audit
from registry.auth import Principal
from registry.operations import store
from registry.operations.schemas import OperationFieldsSchema
from registry.patients import store as patients
from registry.problems import InvalidInput, Problem, field_error
from registry.validation import rules

# What the audit trail records of an operation: the fields a centre sends, the patient it is
# attached to and the age at surgery (which also follows the patient's birth year). The other
# derived values (vertebra and segment counts, instrumented) follow from `levels` and
# `instrumentation` in the same document, so recording them would say nothing more.
_AUDITED = (*OperationFieldsSchema().fields, "patient_id", "age_at_surgery")


def _rounded(value, places=1):
    return None if value is None else round(float(value), places)


def columns_and_children(document: dict, birth_year: int | None) -> tuple[dict, dict]:
    """Split a (loaded or stored) document into operation columns and child rows, deriving values."""
    levels = document.get("levels") or {}
    instrumentation = document.get("instrumentation") or {}
    implants = [dict(implant, diameter_mm=_rounded(implant.get("diameter_mm")),
                     length_mm=_rounded(implant.get("length_mm")), count=implant.get("count") or 1)
                for implant in instrumentation.get("implants") or []]
    # a loaded document holds both forms already (schemas: scores_merged); a stored one may not
    baseline_scores = rules.merged_scores(document.get("preop_scores") or {}, document.get("baseline_scores"))
    scores = rules.legacy_scores(baseline_scores)
    immobilization = document.get("immobilization") or {}
    vertebrae, segments = v.level_counts(levels["from_"], levels["to"]) if levels else (None, None)
    columns = {
        "local_ref": document["local_ref"],
        "operation_date": document["operation_date"],
        "date_precision": document.get("date_precision") or "day",
        "indication": document.get("indication"),
        "indication_note": document.get("indication_note"),
        "region": document["region"],
        "approach": document.get("approach"),
        "procedures": list(document["procedures"]),
        "level_from": levels.get("from_"),
        "level_to": levels.get("to"),
        "vertebra_count": vertebrae,
        "segment_count": segments,
        "instrumented": bool(implants or instrumentation.get("system")),
        "instrumentation_system": instrumentation.get("system"),
        "instrumentation_manufacturer": instrumentation.get("manufacturer"),
        "bone_graft": list(document.get("bone_graft") or []),
        "duration_min": document.get("duration_min"),
        "blood_loss_ml": document.get("blood_loss_ml"),
        "transfusion": document.get("transfusion"),
        "preop_joa": _rounded(scores.get("joa")),
        "preop_mjoa": scores.get("mjoa"),
        "baseline_scores": rules.other_scores(baseline_scores),
        "immobilization_type": immobilization.get("type"),
        "immobilization_weeks": immobilization.get("weeks"),
        "notes": document.get("notes"),
        "age_at_surgery": document["operation_date"].year - birth_year if birth_year else None,
        # a loaded document states both (schemas: recording_status_filled); a stored one derives them
        "intraop_events_recorded": rules.recording_status(document, "intraop_events") != "not_recorded",
        "postop_complications_recorded": rules.recording_status(document, "postop_complications") != "not_recorded",
    }
    children = {
        table: [{column: item.get(column) for column in store.CHILD_COLUMNS[table]} for item in items]
        for table, items in (("implants", implants), ("intraop_events", document.get("intraop_events") or []),
                             ("postop_complications", document.get("postop_complications") or []))
    }
    return columns, children


def audit_values(columns: dict, children: dict, patient_id: int) -> dict:
    """An operation's audited fields (`_AUDITED`) from its columns and child rows, with the API's
    names and JSON values: `levels` as {from, to}, implants inside `instrumentation`, and the
    intraoperative events and complications as whole lists (the list is what a centre sends).

    Taken from `row_to_document`, whose values are already the API's but for `levels`' key
    (dates become ISO text when stored): dumping with OperationSchema costs ten times as much,
    about 50 µs an operation, a tenth of what bulk submission spends on each."""
    row = columns | {"id": None, "patient_id": patient_id, "version": None, "created_at": None, "updated_at": None}
    document = store.row_to_document(row, children, None)
    values = {name: document[name] for name in _AUDITED}
    if values["levels"]:
        values["levels"] = {"from": values["levels"]["from_"], "to": values["levels"]["to"]}
    return values


def _changes(current: dict, columns: dict, children: dict, patient_id: int) -> dict:
    """The audit `changes` of writing (columns, children, patient_id) over the stored `current`.
    Both sides are normalised the same way (the stored document's age at surgery is recomputed
    from its patient's birth year, as now), so an identical resubmission changes nothing."""
    old_columns, old_children = columns_and_children(current, current["patient"]["birth_year"])
    return audit.updated(audit_values(old_columns, old_children, current["patient_id"]),
                         audit_values(columns, children, patient_id))


def _resolve_patient(conn, actor: Principal, document: dict, named: dict | None = None) -> tuple[dict, bool]:
    """The operation's patient: looked up by `patient_id` (unless `named`, already read, is that
    patient of the centre), or by the inline `patient`'s ref, which creates a new patient and must
    agree with a stored one (`patients.store.resubmitted_fields`)."""
    if "patient" in document:
        return patients.upsert_patient(conn, actor, document["patient"], field_prefix="patient.", inline=True)
    if named is not None and named["id"] == document["patient_id"] and named["centre_id"] == actor.centre_id:
        return named, False
    patient = patients.get_patient(conn, actor.centre_id, document["patient_id"])
    if patient is None:
        raise InvalidInput([field_error("patient_id", "Your centre has no patient with this id.")])
    return patient, False


def _check_dates(conn, actor: Principal, document: dict, patient: dict, operation_id: int | None) -> None:
    errors = []
    birth_year = patient["birth_year"]
    if birth_year and document["operation_date"].year < birth_year:
        # the birth year at fault is the one sent inline, else the stored patient's
        sent = "patient" in document and "birth_year" in patients.sent_fields(document["patient"])
        field = "patient.birth_year" if sent else "operation_date"
        errors.append(field_error(field, f"The operation ({document['operation_date']}) is before the "
                                         f"patient's birth year ({birth_year})."))
    if operation_id is not None:
        first = store.earliest_follow_up(conn, actor.centre_id, operation_id)
        if first is not None and first < document["operation_date"]:
            errors.append(field_error("operation_date", f"A follow-up of this operation is dated {first}, "
                                                        "before this operation date."))
    if errors:
        raise InvalidInput(errors)


def submit_operation(conn, actor: Principal, document: dict, named_patient: dict | None = None) -> tuple[dict, str]:
    """Create the operation, or update the one with its local_ref.

    `named_patient`: the patient the document names by `patient_id`, if the caller has read it
    already (the REST route reads it with the token lookup: `patients.store.send_named_patient_read`).
    Returns (stored document, outcome) with outcome "created", "updated" or "unchanged".
    """
    if "patient" in document:
        submitted = _submit_with_patient_ref(conn, actor, document)
        if submitted is not None:
            return submitted
    patient, _ = _resolve_patient(conn, actor, document, named_patient)
    return _submit_for_patient(conn, actor, document, patient)


def _submit_for_patient(conn, actor: Principal, document: dict, patient: dict) -> tuple[dict, str]:
    """`submit_operation` once its patient is resolved (created, checked or updated)."""
    _check_dates(conn, actor, document, patient, None)
    columns, children = columns_and_children(document, patient["birth_year"])
    # the operation, its child rows and its audit entry in one statement
    audit_parameters = audit.entry_parameters(
        actor, operation=audit.created(audit_values(columns, children, patient["id"])))
    row = store.insert_operation(conn, actor.centre_id, patient["id"], columns, children, audit_parameters)
    if row is not None:
        # the answer is built from what was written: reading it back would cost five queries
        return store.row_to_document(row, children, patient), "created"
    return _update_by_local_ref(conn, actor, document, patient, columns, children)


def _update_by_local_ref(conn, actor, document, patient, columns, children) -> tuple[dict, str]:
    """The local_ref exists (or a concurrent request just created it): update that one."""
    operation_id = store.find_operation_id(conn, actor.centre_id, document["local_ref"], for_update=True)
    current = store.get_operation(conn, actor.centre_id, operation_id)
    return _apply(conn, actor, current, document, patient, columns, children)


_NEW_PATIENT_ID = 0  # in the operation's audit values until the statement sets it


def _submit_with_patient_ref(conn, actor: Principal, document: dict) -> tuple[dict, str] | None:
    """`submit_operation` for an inline patient, in one statement (one round trip) where the
    general path takes two to four, assuming what a feed's usual document holds: a ref new to the
    centre, or the ref of a stored patient that has the values sent (the centre's next operation
    for the patient). The operation's derived values and the date rules are computed for the
    birth year sent, before anything is sent; the statement inserts the operation for a stored
    patient only if it has that birth year and the other values sent (`store.insert_operation_with_patient_ref`),
    and the rules of a patient sent again are then run on the stored patient it returns.

    Otherwise the general path runs, with its rules and their order: an erased ref (410) before
    the dates; a stored patient's disagreements, then its consent withdrawal, before the dates.
    The dates are checked first here only to send nothing when they fail (None: the general path
    then runs and answers whichever error comes first)."""
    fields = document["patient"]
    columns, children = columns_and_children(document, fields.get("birth_year"))
    try:
        _check_dates(None, actor, document, {"birth_year": fields.get("birth_year")}, None)
    except InvalidInput:
        return None  # the general path decides which error comes first
    parameters = patients.new_patient_parameters(actor, fields) | {
        "assumed": sorted(patients.sent_fields(fields) | {"birth_year"})}
    # the audit entries go with the rows; the statement puts in the patient id
    audit_parameters = audit.entry_parameters(
        actor, patient=audit.created(patients.audit_values(fields)),
        operation=audit.created(audit_values(columns, children, _NEW_PATIENT_ID)))
    new, known, assumed, row = store.insert_operation_with_patient_ref(
        conn, parameters, columns, children, audit_parameters)
    if new is not None:
        if new.pop("erased"):
            raise patients.ErasedRef("patient.ref")  # the patient row is rolled back with the request
        patient = new
    elif known is not None and assumed:
        # the rules of a patient sent again, on the stored one: with the values assumed it is kept
        # as it is (a disagreement would raise here, and the request roll back)
        kept = patients.resubmitted_fields(known, fields, "patient.", inline=True)
        if patients.changed_fields(known, kept):
            raise AssertionError("a stored patient with the values sent would change")
        _check_dates(None, actor, document, known, None)
        patient = known
    else:
        # a known ref whose patient differs from what was sent (the rules decide what is refused
        # or changed), or a patient created meanwhile by a concurrent request: nothing written
        stored = patients.update_stored_patient(conn, actor, parameters["ref_hash"], fields, "patient.", inline=True)
        return _submit_for_patient(conn, actor, document, stored)
    if row is None:  # the local_ref exists (or a concurrent request just created it): update that one
        return _update_by_local_ref(conn, actor, document, patient, columns, children)
    return store.row_to_document(row, children, patient), "created"


def replace_operation(conn, actor: Principal, current: dict, document: dict) -> tuple[dict, str]:
    """Replace a stored operation (already locked by the caller) with a whole new document."""
    patient, _ = _resolve_patient(conn, actor, document)
    columns, children = columns_and_children(document, patient["birth_year"])
    if columns["local_ref"] != current["local_ref"] and store.find_operation_id(
            conn, actor.centre_id, columns["local_ref"]) is not None:
        raise Problem(409, "Another operation of your centre has this local_ref.", slug="conflict",
                      errors=[field_error("local_ref", "Already used by another operation.")])
    return _apply(conn, actor, current, document, patient, columns, children)


def _apply(conn, actor, current, document, patient, columns, children) -> tuple[dict, str]:
    changes = _changes(current, columns, children, patient["id"])
    if not changes:
        return current, "unchanged"
    _check_dates(conn, actor, document, patient, current["id"])
    store.update_operation(conn, actor.centre_id, current["id"], patient["id"], columns, children)
    audit.record(conn, centre_id=actor.centre_id, action="update", entity="operation", entity_id=current["id"],
                 changes=changes, actor=actor)
    return store.get_operation(conn, actor.centre_id, current["id"]), "updated"


def delete_operation(conn, actor: Principal, operation_id: int) -> bool:
    current = store.get_operation(conn, actor.centre_id, operation_id)  # its values, for the audit trail
    deleted = current is not None and store.delete_operation(conn, actor.centre_id, operation_id)
    if deleted:
        columns, children = columns_and_children(current, current["patient"]["birth_year"])
        audit.record(conn, centre_id=actor.centre_id, action="delete", entity="operation", entity_id=operation_id,
                     changes=audit.deleted(audit_values(columns, children, current["patient_id"])), actor=actor)
    return deleted


# --- for bulk submission (registry.submissions), which resolves patients and existing
# operations for a whole chunk at once and must apply exactly these rules ----------------------

def check_new_operation_dates(document: dict, patient: dict) -> None:
    """The date rules of a document about to create an operation (InvalidInput when broken)."""
    _check_dates(None, None, document, patient, None)


def operation_changes(current: dict, document: dict, patient: dict) -> dict:
    """The audit `changes` resubmitting `document` (with its resolved patient) would make; empty when none."""
    columns, children = columns_and_children(document, patient["birth_year"])
    return _changes(current, columns, children, patient["id"])
