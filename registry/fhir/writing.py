"""POST /fhir: a transaction or batch Bundle written through the same services as /v1.

The Bundle is read into operation documents (registry.fhir.mapping.bundle_to_documents), each is
validated with /v1's own schemas (OperationInputSchema, FollowUpFieldsSchema) and written with
/v1's own service functions (`operations.service.submit_operation`, `follow_ups.store.save_follow_up`):
the same upsert by local_ref, the same patient rules (the ref hashed, an inline patient checked
against the stored one), the same audit. No rule is written here; a field error of /v1 is answered
at the FHIRPath of the element it was read from.

- `transaction`: all or nothing. The first refused operation answers its OperationOutcome (with
  every issue of that operation) and the request's transaction is rolled back.
- `batch`: each operation (its Procedure and the entries that belong to it) is written in a
  savepoint of its own; a refused one is rolled back alone and each of its entries answers the
  OperationOutcome. An operation's entries succeed or fail together (FHIR's batch entries are
  independent; here an operation is one record, as on /v1).
"""

import marshmallow as ma

from registry.auth import Principal
from registry.fhir import mapping
from registry.fhir.outcome import FhirError, issue, issue_type
from registry.follow_ups import store as follow_ups
from registry.follow_ups.schemas import FollowUpFieldsSchema
from registry.operations import service
from registry.operations import store as operations
from registry.operations.schemas import OperationInputSchema
from registry.problems import Problem, flatten_messages

_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 400: "400 Bad Request", 404: "404 Not Found",
                409: "409 Conflict", 410: "410 Gone", 412: "412 Precondition Failed",
                422: "422 Unprocessable Entity"}


class _Refused(Exception):
    """One operation refused: its HTTP status and its OperationOutcome issues."""

    def __init__(self, status: int, issues: list[dict]):
        super().__init__(status)
        self.status = status
        self.issues = issues


def _field_issues(unit: mapping.Unit, status: int, errors: list[dict], follow_up: int | None = None,
                  detail: str | None = None) -> list[dict]:
    """/v1's field errors as issues at the FHIRPath each field was read from."""
    code = {422: "invalid", 409: "conflict", 410: "deleted", 404: "not-found"}.get(status, issue_type(status))
    if not errors:
        return [issue(status, detail or "The operation was refused.", code=code,
                      expression=[unit.source("", follow_up)])]
    found = []
    for error in errors:
        name = error.get("field") or ""
        label = f"follow-up {name}" if follow_up is not None else name
        diagnostics = f"{label}: {error['message']}" if name else error["message"]
        found.append(issue(status, diagnostics, code=code, expression=[unit.source(name, follow_up)]))
    return found


def _write_unit(conn, actor: Principal, unit: mapping.Unit, now) -> dict[int, dict]:
    """Write one operation and its follow-ups; the `response` of each of its entries by index."""
    if unit.operation is not None:
        try:
            document = OperationInputSchema().load(unit.operation)
        except ma.ValidationError as error:
            raise _Refused(422, _field_issues(unit, 422, flatten_messages(error.messages, "json"))) from None
        try:
            operation, outcome = service.submit_operation(conn, actor, document)
        except Problem as problem:
            raise _Refused(problem.code, _field_issues(unit, problem.code, problem.errors or [],
                                                       detail=problem.description)) from None
        created = outcome == "created"
    else:
        operation = _stored_operation(conn, actor, unit)
        created = False
    responses = {}
    follow_up_responses = []
    for number, sent in enumerate(unit.follow_ups):
        try:
            fields = FollowUpFieldsSchema().load(sent)
        except ma.ValidationError as error:
            raise _Refused(422, _field_issues(unit, 422, flatten_messages(error.messages, "json"), number)) from None
        try:
            follow_up, outcome = follow_ups.save_follow_up(conn, actor, operation, fields)
        except Problem as problem:
            raise _Refused(problem.code, _field_issues(unit, problem.code, problem.errors or [], number,
                                                       problem.description)) from None
        follow_up_responses.append(_response(201 if outcome == "created" else 200, "Observation",
                                             mapping.follow_up_resource_id(follow_up["id"]), follow_up))
    patient = operation["patient"]
    for index, part in unit.parts.items():
        if part == "procedure":
            responses[index] = _response(201 if created else 200, "Procedure", str(operation["id"]), operation)
        elif part == "patient":
            # created by this request when its creation time is the transaction's (now() is the transaction's start)
            responses[index] = _response(201 if patient["created_at"] == now else 200, "Patient", str(patient["id"]),
                                         patient)
        elif part.startswith("follow-up-"):
            responses[index] = follow_up_responses[int(part.removeprefix("follow-up-"))]
        else:
            resource_type = _part_type(part)
            responses[index] = _response(201 if created else 200, resource_type,
                                         mapping.resource_id(operation["id"], part), operation)
    return responses


def _part_type(part: str) -> str:
    if part in ("diagnosis",):
        return "Condition"
    if part == "instrumentation" or part.startswith("implant-") or part.endswith("-instrument"):
        return "Device"
    if part.startswith(("intraop-event-", "postop-complication-")):
        return "AdverseEvent"
    return "Observation"


def _stored_operation(conn, actor: Principal, unit: mapping.Unit) -> dict:
    """The stored operation that follow-ups sent without their Procedure name (Procedure/<id> or its local_ref)."""
    kind, key = unit.stored_operation
    operation_id = key if kind == "id" else operations.find_operation_id(conn, actor.centre_id, key)
    operation = operations.get_operation(conn, actor.centre_id, operation_id) if operation_id else None
    if operation is None:
        raise _Refused(404, [issue(404, "Your centre has no such operation (Procedure).", code="not-found",
                                   expression=[unit.follow_up_sources[0][""] + ".partOf[0].reference"])])
    return operation


def _response(status: int, resource_type: str, resource_id: str, record: dict) -> dict:
    response = {"status": _STATUS_TEXT[status],
                "location": f"{resource_type}/{resource_id}/_history/{record['version']}",
                "etag": f'W/"{record["version"]}"'}
    if record.get("updated_at") is not None:
        response["lastModified"] = record["updated_at"].isoformat()
    return response


def _failed(status: int, issues: list[dict]) -> dict:
    return {"status": _STATUS_TEXT.get(status, str(status)),
            "outcome": {"resourceType": "OperationOutcome", "issue": issues}}


# No element the registry reads is deeper than about 10 levels in a Bundle; deeper values (which
# the JSON parser reads up to ~1000 levels) would exhaust the recursion of copying and reading them.
MAX_DEPTH = 64


def refuse_deep_nesting(body) -> None:
    """400 at the first element nested deeper than MAX_DEPTH (walked without recursion)."""
    stack = [(body, "Bundle", 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FhirError(400, f"Nested more than {MAX_DEPTH} levels deep: no FHIR element the registry reads is.",
                            code="structure", expression=[path])
        if isinstance(node, dict):
            stack.extend((child, f"{path}.{key}", depth + 1) for key, child in node.items())
        elif isinstance(node, list):
            stack.extend((child, f"{path}[{number}]", depth + 1) for number, child in enumerate(node))


def write_bundle(conn, actor: Principal, bundle) -> dict:
    """Write a transaction or batch Bundle; its transaction-response or batch-response Bundle.

    Raises FhirError (an OperationOutcome) when the Bundle is not one this server takes, or when a
    transaction has a refused entry; `conn` is the request's transaction, rolled back by the caller.
    """
    units, errors = mapping.bundle_to_documents(bundle)
    whole = [error for error in errors if error["entry"] is None]
    kind = bundle.get("type") if isinstance(bundle, dict) else None
    if whole or kind not in ("transaction", "batch"):
        raise _outcome(400, whole or errors)
    if kind == "transaction" and errors:
        raise _outcome(400, errors)
    now = conn.execute("SELECT now() AS now").fetchone()["now"]
    responses: dict[int, dict] = {}
    entry_errors: dict[int, list[dict]] = {}
    for error in errors:
        entry_errors.setdefault(error["entry"], []).append(_issue_of(error))
    for unit in units:
        broken = [found for index in unit.parts for found in entry_errors.get(index, [])]
        if broken:  # a batch: this operation's entries all fail with its structural errors
            responses.update({index: _failed(400, broken) for index in unit.parts})
            continue
        try:
            with conn.transaction():  # a savepoint: a refused operation is rolled back alone
                responses.update(_write_unit(conn, actor, unit, now))
        except _Refused as refused:
            if kind == "transaction":
                raise FhirError(refused.status, refused.issues[0]["diagnostics"], issues=refused.issues) from None
            responses.update({index: _failed(refused.status, refused.issues) for index in unit.parts})
    for index, issues in entry_errors.items():
        responses.setdefault(index, _failed(400, issues))
    return {"resourceType": "Bundle", "type": f"{kind}-response",
            "entry": [{"response": responses.get(index) or _failed(400, [issue(400, "This entry was not read.")])}
                      for index in range(len(bundle.get("entry") or []))]}


def _issue_of(error: dict) -> dict:
    return issue(400, error["diagnostics"], code=error["code"], expression=[error["expression"]])


def _outcome(status: int, errors: list[dict]) -> FhirError:
    issues = [_issue_of(error) for error in errors] or [issue(status, "The Bundle cannot be read.")]
    return FhirError(status, issues[0]["diagnostics"], issues=issues)
