"""Operation documents of the caller's centre: submitters only; another centre's operation is a 404."""

import json

import marshmallow as ma
from flask import Response, g, request
from flask.views import MethodView
from flask_smorest import Blueprint

from registry.auth import SUBMITTER, authenticate, bearer_token, hash_token, require
from registry.db import database, pipelined
from registry.demo.cases import seed_case
from registry.fhir import reading as fhir_form
from registry.fhir.media import FHIR_JSON, prefers_fhir
from registry.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from registry.operations import service, store
from registry.operations.schemas import (RECORDED_LISTS, OperationInputSchema, OperationQuerySchema,
                                         OperationSchema)
from registry.pagination import PageQuerySchema, keyset_page, page_schema
from registry.patients import store as patients
from registry.preconditions import ETAG_HEADER, IF_MATCH_PARAMETER, etag, require_if_match
from registry.problems import InvalidInput, Problem, document_errors, flatten_messages
from registry.validation import rules

blp = Blueprint("operations", __name__, url_prefix="/v1/operations",
                description="Operations with their implants, intraoperative events and complications")
OperationPageSchema = page_schema(OperationSchema, "OperationPage")
# The published seed case, as the example request body of the spec
EXAMPLE = seed_case()[0]
_DUMP_ONLY = {name for name, field in OperationSchema().fields.items() if field.dump_only}


class OperationListQuerySchema(PageQuerySchema, OperationQuerySchema):
    pass


class OperationPatchSchema(OperationInputSchema):
    """Any subset of the document's fields; objects and lists given replace the stored ones whole.

    Whole-document rules (one patient, levels for spinal regions) are checked on the merged
    document, not on the patch: these undecorated overrides switch them off here.
    """

    def one_patient(self, data, **kwargs):
        pass

    def spinal_regions_need_levels(self, data, **kwargs):
        pass

    def scores_merged(self, data, **kwargs):  # merged on the whole document (a partial entry has no instrument)
        return data


FHIR_FORM = {"content_type": FHIR_JSON, "schema": {"type": "object"}, "success": True,
             "description": "The operation document; with `Accept: application/fhir+json`, a FHIR R4 `transaction` "
                            "Bundle of the operation and its follow-ups that, POSTed to /fhir, recreates it"}


def _not_found():
    return Problem(404, "Your centre has no such operation.", slug="not-found")


def _locked_operation(conn, operation_id: int) -> dict:
    current = store.get_operation(conn, authenticate().centre_id, operation_id, for_update=True)
    if current is None:
        raise _not_found()
    return current


def _reply(document: dict, status: int, sent: dict | None = None):
    """The stored document with its ETag; the patient ref is echoed only to the request that sent it."""
    if sent and "patient" in sent:
        document = {**document, "patient": {**document["patient"], "ref": sent["patient"]["ref"]}}
    return document, status, {"ETag": etag(document), "Location": f"/v1/operations/{document['id']}"}


def _reads_named_patient(view):
    """Read the patient a create names by `patient_id` with the token lookup (`require`'s hook, after
    the Idempotency-Key's claim), so that finding it costs no round trip of its own. The body is
    not validated yet: a read for a document refused later is wasted, and harmless."""
    claim = view.before_token_lookup

    def before_token_lookup(conn):
        claim(conn)
        body, token = request.get_json(silent=True), bearer_token()
        patient_id = body.get("patient_id") if isinstance(body, dict) and "patient" not in body else None
        if type(patient_id) is int and 0 < patient_id < 2**63 and token is not None:
            g.named_patient = patients.send_named_patient_read(conn, patient_id, hash_token(token))

    view.before_token_lookup = before_token_lookup
    return view


@blp.route("/")
class Operations(MethodView):
    @require(SUBMITTER)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(OperationListQuerySchema(), location="query", unknown=ma.RAISE)
    @blp.response(200, OperationPageSchema)
    @document_errors(blp, 401, 403, 422)
    def get(self, query):
        """List your centre's operations"""
        with database().transaction() as conn:
            return keyset_page(query, lambda after, limit: store.list_operations(
                conn, authenticate().centre_id, query, after, limit))

    @require(SUBMITTER)
    @pipelined
    @_reads_named_patient
    @idempotent
    @blp.doc(security=[{"bearerAuth": []}], parameters=[IDEMPOTENCY_KEY_PARAMETER])
    @blp.arguments(OperationInputSchema(), example=EXAMPLE)
    @blp.response(201, OperationSchema, headers=ETAG_HEADER, description="Created")
    @blp.alt_response(200, schema=OperationSchema, success=True,
                      description="Your centre had an operation with this local_ref: updated, or unchanged")
    @document_errors(blp, 400, 401, 403, 410, 413, 415, 422)
    def post(self, document):
        """Submit an operation document: creates it, or updates the one with its local_ref"""
        named = g.pop("named_patient", None)  # read with the token lookup (_reads_named_patient)
        with database().transaction() as conn:
            stored, outcome = service.submit_operation(conn, authenticate(), document,
                                                       named.fetchone() if named is not None else None)
        return _reply(stored, 201 if outcome == "created" else 200, document)


@blp.route("/<int:operation_id>")
class Operation(MethodView):
    @require(SUBMITTER)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, OperationSchema, headers=ETAG_HEADER)
    @blp.alt_response(200, **FHIR_FORM)
    @document_errors(blp, 401, 403, 404)
    def get(self, operation_id):
        """Read an operation document"""
        centre_id = authenticate().centre_id
        with database().transaction() as conn:
            document = store.get_operation(conn, centre_id, operation_id)
            if document is None:
                raise _not_found()
            bundle = fhir_form.operation_bundle(conn, centre_id, document) if prefers_fhir() else None
        document, status, headers = _reply(document, 200)
        headers["Vary"] = "Accept"   # JSON or FHIR, by Accept
        if bundle is not None:
            return Response(json.dumps(bundle, ensure_ascii=False), mimetype=FHIR_JSON, headers=headers)
        return document, status, headers

    @require(SUBMITTER)
    @pipelined
    @blp.doc(security=[{"bearerAuth": []}], parameters=[IF_MATCH_PARAMETER])
    @blp.arguments(OperationInputSchema(), example=EXAMPLE)
    @blp.response(200, OperationSchema, headers=ETAG_HEADER)
    @document_errors(blp, 400, 401, 403, 404, 409, 410, 412, 413, 415, 422, 428)
    def put(self, document, operation_id):
        """Replace an operation document (If-Match required)"""
        with database().transaction() as conn:
            current = _locked_operation(conn, operation_id)
            require_if_match(current)
            stored, _ = service.replace_operation(conn, authenticate(), current, document)
        return _reply(stored, 200, document)

    @require(SUBMITTER)
    @pipelined
    @blp.doc(security=[{"bearerAuth": []}], parameters=[IF_MATCH_PARAMETER])
    @blp.arguments(OperationPatchSchema(partial=True))
    @blp.response(200, OperationSchema, headers=ETAG_HEADER)
    @document_errors(blp, 400, 401, 403, 404, 409, 410, 412, 413, 415, 422, 428)
    def patch(self, _changes, operation_id):
        """Change some fields of an operation document (If-Match required)"""
        sent = request.get_json()
        with database().transaction() as conn:
            current = _locked_operation(conn, operation_id)
            require_if_match(current)
            document = _merged(current, sent)
            stored, _ = service.replace_operation(conn, authenticate(), current, document)
        return _reply(stored, 200, document)

    @require(SUBMITTER)
    @pipelined
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(204)
    @document_errors(blp, 401, 403, 404, 412, 428)
    def delete(self, operation_id):
        """Delete an operation with its events, complications and follow-ups (If-Match optional)"""
        with database().transaction() as conn:
            current = _locked_operation(conn, operation_id)
            if "If-Match" in request.headers:
                require_if_match(current)
            service.delete_operation(conn, authenticate(), operation_id)


def _merged(current: dict, changes: dict) -> dict:
    """The stored document in wire form with the sent top-level fields replacing their namesakes,
    validated again as a whole so cross-field rules hold for the result."""
    wire = {name: value for name, value in OperationSchema().dump(current).items()
            if name not in _DUMP_ONLY and value is not None}
    wire["patient_id"] = current["patient_id"]
    if "patient" in changes:
        wire.pop("patient_id")
    for name in RECORDED_LISTS:
        if name in changes and f"{name}_status" not in changes:
            wire.pop(f"{name}_status", None)  # a new list without a status: the status follows the list
    # the two forms of the JOA and mJOA scores: the one sent replaces what the other held
    if "baseline_scores" in changes and "preop_scores" not in changes:
        wire.pop("preop_scores", None)
    elif "preop_scores" in changes and "baseline_scores" in wire:
        wire["baseline_scores"] = rules.other_scores(wire["baseline_scores"])
    wire.update(changes)
    try:
        return OperationInputSchema().load(wire)
    except ma.ValidationError as error:
        raise InvalidInput(flatten_messages(error.messages, "json")) from None
