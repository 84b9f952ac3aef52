"""Follow-ups of an operation: submitters only, their own centre's."""

import json

import marshmallow as ma
from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from registry.auth import SUBMITTER, authenticate, require
from registry.db import database, pipelined
from registry.demo.cases import seed_case
from registry.fhir import reading as fhir_form
from registry.fhir.media import FHIR_JSON, prefers_fhir
from registry.follow_ups import store
from registry.follow_ups.schemas import FollowUpFieldsSchema, FollowUpSchema
from registry.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from registry.operations import store as operations
from registry.pagination import PageQuerySchema, keyset_page, page_schema
from registry.preconditions import ETAG_HEADER, IF_MATCH_PARAMETER, etag, require_if_match
from registry.problems import InvalidInput, Problem, document_errors, flatten_messages
from registry.validation import rules

blp = Blueprint("follow_ups", __name__, url_prefix="/v1", description="Follow-ups of operations")
FollowUpPageSchema = page_schema(FollowUpSchema, "FollowUpPage")
# The seed case's follow-up at four years, as the example request body of the spec
EXAMPLE = seed_case()[1][0]
FHIR_FORM = {"content_type": FHIR_JSON, "schema": {"type": "object"}, "success": True,
             "description": "The follow-up; with `Accept: application/fhir+json`, a FHIR R4 Observation"}


class FollowUpPatchSchema(FollowUpFieldsSchema):
    """Any subset of a follow-up's fields; whole-record rules are checked on the merged record
    (this undecorated override switches them off for the patch itself)."""

    def rules(self, data, **kwargs):
        pass

    def scores_merged(self, data, **kwargs):  # merged on the whole record (a partial entry has no instrument)
        return data


def _operation(conn, operation_id: int) -> dict:
    operation = operations.get_operation(conn, authenticate().centre_id, operation_id)
    if operation is None:
        raise Problem(404, "Your centre has no such operation.", slug="not-found")
    return operation


def _locked_follow_up(conn, follow_up_id: int) -> dict:
    current = store.get_follow_up(conn, authenticate().centre_id, follow_up_id, for_update=True)
    if current is None:
        raise Problem(404, "Your centre has no such follow-up.", slug="not-found")
    return current


def _reply(follow_up: dict, status: int = 200):
    return follow_up, status, {"ETag": etag(follow_up), "Location": f"/v1/follow-ups/{follow_up['id']}"}


@blp.route("/operations/<int:operation_id>/follow-ups")
class OperationFollowUps(MethodView):
    @require(SUBMITTER)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(PageQuerySchema(), location="query", unknown=ma.RAISE)
    @blp.response(200, FollowUpPageSchema)
    @document_errors(blp, 401, 403, 404, 422)
    def get(self, query, operation_id):
        """List the follow-ups of an operation"""
        with database().transaction() as conn:
            _operation(conn, operation_id)
            return keyset_page(query, lambda after, limit: store.list_follow_ups(
                conn, authenticate().centre_id, operation_id, after, limit))

    @require(SUBMITTER)
    @pipelined
    @idempotent
    @blp.doc(security=[{"bearerAuth": []}], parameters=[IDEMPOTENCY_KEY_PARAMETER])
    @blp.arguments(FollowUpFieldsSchema(), example=EXAMPLE)
    @blp.response(201, FollowUpSchema, headers=ETAG_HEADER, description="Created")
    @blp.alt_response(200, schema=FollowUpSchema, success=True,
                      description="A follow-up with this local_ref existed: updated, or unchanged")
    @document_errors(blp, 400, 401, 403, 404, 409, 410, 413, 415, 422)
    def post(self, fields, operation_id):
        """Record a follow-up of an operation (or update the one with its local_ref)"""
        with database().transaction() as conn:
            follow_up, outcome = store.save_follow_up(conn, authenticate(), _operation(conn, operation_id), fields)
        return _reply(follow_up, 201 if outcome == "created" else 200)


@blp.route("/follow-ups/<int:follow_up_id>")
class FollowUp(MethodView):
    @require(SUBMITTER)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, FollowUpSchema, headers=ETAG_HEADER)
    @blp.alt_response(200, **FHIR_FORM)
    @document_errors(blp, 401, 403, 404)
    def get(self, follow_up_id):
        """Read a follow-up"""
        with database().transaction() as conn:
            follow_up = store.get_follow_up(conn, authenticate().centre_id, follow_up_id)
        if follow_up is None:
            raise Problem(404, "Your centre has no such follow-up.", slug="not-found")
        follow_up, status, headers = _reply(follow_up)
        headers["Vary"] = "Accept"   # JSON or FHIR, by Accept
        if prefers_fhir():
            return Response(json.dumps(fhir_form.follow_up_resource(follow_up), ensure_ascii=False),
                            mimetype=FHIR_JSON, headers=headers)
        return follow_up, status, headers

    @require(SUBMITTER)
    @pipelined
    @blp.doc(security=[{"bearerAuth": []}], parameters=[IF_MATCH_PARAMETER])
    @blp.arguments(FollowUpFieldsSchema(), example=EXAMPLE)
    @blp.response(200, FollowUpSchema, headers=ETAG_HEADER)
    @document_errors(blp, 400, 401, 403, 404, 409, 412, 413, 415, 422, 428)
    def put(self, fields, follow_up_id):
        """Replace a follow-up (If-Match required)"""
        with database().transaction() as conn:
            current = _locked_follow_up(conn, follow_up_id)
            require_if_match(current)
            follow_up, _ = store.save_follow_up(conn, authenticate(), _operation(conn, current["operation_id"]),
                                                fields, current)
        return _reply(follow_up)

    @require(SUBMITTER)
    @pipelined
    @blp.doc(security=[{"bearerAuth": []}], parameters=[IF_MATCH_PARAMETER])
    @blp.arguments(FollowUpPatchSchema(partial=True))
    @blp.response(200, FollowUpSchema, headers=ETAG_HEADER)
    @document_errors(blp, 400, 401, 403, 404, 409, 412, 413, 415, 422, 428)
    def patch(self, _changes, follow_up_id):
        """Change some fields of a follow-up (If-Match required)"""
        sent = request.get_json()
        with database().transaction() as conn:
            current = _locked_follow_up(conn, follow_up_id)
            require_if_match(current)
            wire = {name: value for name, value in FollowUpSchema().dump(current).items()
                    if value is not None and not FollowUpSchema().fields[name].dump_only}
            if "months_after" in sent and "date" not in sent:
                wire.pop("date")  # a new months_after moves the date
            elif "date" in sent:
                wire.pop("months_after")
            # the two forms of the JOA and mJOA scores: the one sent replaces what the other held
            if "scores" in sent:
                for name in rules.LEGACY_SCORES:
                    if name not in sent:
                        wire.pop(name, None)
            elif any(name in sent for name in rules.LEGACY_SCORES) and "scores" in wire:
                wire["scores"] = [entry for entry in wire["scores"]
                                  if (entry["instrument"], entry["version"]) not in
                                  [rules.LEGACY_SCORES[name] for name in rules.LEGACY_SCORES if name in sent]]
            try:
                fields = FollowUpFieldsSchema().load(wire | sent)
            except ma.ValidationError as error:
                raise InvalidInput(flatten_messages(error.messages, "json")) from None
            follow_up, _ = store.save_follow_up(conn, authenticate(), _operation(conn, current["operation_id"]),
                                                fields, current)
        return _reply(follow_up)

    @require(SUBMITTER)
    @pipelined
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(204)
    @document_errors(blp, 401, 403, 404, 412, 428)
    def delete(self, follow_up_id):
        """Delete a follow-up (If-Match optional)"""
        with database().transaction() as conn:
            current = _locked_follow_up(conn, follow_up_id)
            if "If-Match" in request.headers:
                require_if_match(current)
            store.delete_follow_up(conn, authenticate(), follow_up_id)
