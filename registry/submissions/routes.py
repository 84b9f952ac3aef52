"""Bulk submissions of the caller's centre: submitters only; another centre's submission is a 404."""

import io

import marshmallow as ma
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from registry import accepts
from registry.auth import SUBMITTER, authenticate, require
from registry.db import database
from registry.idempotency import HEADER as IDEMPOTENCY_HEADER
from registry.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from registry.pagination import keyset_page, page_schema
from registry.problems import InvalidInput, Problem, document_errors
from registry.submissions import reading, service, store
from registry.submissions.schemas import (MODES, BulkOperationSchema, SubmissionListQuerySchema, SubmissionQuerySchema,
                                          SubmissionRecordQuerySchema, SubmissionRecordSchema,
                                          SubmissionReportSchema, SubmissionSchema)

blp = Blueprint("submissions", __name__, url_prefix="/v1/submissions",
                description="Bulk submission of operation documents as a JSON array or CSV, with per-record results")
CSV = "text/csv"
JSON = "application/json"

_REQUEST_BODY = {
    "required": True,
    "description": "The records: a JSON array of operation documents (each may carry `follow_ups`), or CSV "
                   "with one row per operation in the column layout of the README (\"Bulk submission\"). "
                   "At most MAX_CONTENT_LENGTH bytes.",
    "content": {
        JSON: {"schema": {"type": "array", "items": BulkOperationSchema}},
        CSV: {"schema": {"type": "string"}},
    },
}

# flask-smorest lets a manual `parameters` list replace the one built from the query schema,
# so the Idempotency-Key header brings the query parameter along, described by its field
MODE_PARAMETER = {"in": "query", "name": "mode", "required": False,
                  "schema": {"type": "string", "enum": list(MODES), "default": "partial"},
                  "description": SubmissionQuerySchema().fields["mode"].metadata["description"]}


def _not_found():
    return Problem(404, "Your centre has no such submission.", slug="not-found")


def _body():
    """The request body as a stream; with an Idempotency-Key it was already read to fingerprint it."""
    if request.headers.get(IDEMPOTENCY_HEADER) is not None:
        return io.BytesIO(request.get_data(cache=True))
    return request.stream


@blp.route("/")
class Submissions(MethodView):
    @accepts(JSON, CSV, bulk=True)
    @require(SUBMITTER)
    @idempotent
    @blp.doc(security=[{"bearerAuth": []}], parameters=[IDEMPOTENCY_KEY_PARAMETER, MODE_PARAMETER],
             requestBody=_REQUEST_BODY)
    @blp.arguments(SubmissionQuerySchema(), location="query", unknown=ma.RAISE)
    @blp.response(201, SubmissionReportSchema, description="Submitted: see `status` and each record's `outcome`")
    @document_errors(blp, 401, 403, 410, 413, 415, 422)
    def post(self, query):
        """Submit many operation documents at once (JSON array or CSV)"""
        format = "csv" if request.mimetype == CSV else "json"
        records = reading.csv_records(_body()) if format == "csv" else reading.json_records(_body())
        try:
            with database().transaction() as conn:
                report = service.submit(conn, authenticate(), records, format=format, mode=query["mode"])
        except reading.UnreadableBody as unreadable:
            raise InvalidInput(unreadable.errors, unreadable.detail) from None
        return report, 201, {"Location": f"/v1/submissions/{report['id']}"}

    @require(SUBMITTER)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(SubmissionListQuerySchema(), location="query", unknown=ma.RAISE)
    @blp.response(200, page_schema(SubmissionSchema, "SubmissionPage"))
    @document_errors(blp, 401, 403, 422)
    def get(self, query):
        """List your centre's submissions, newest first"""
        with database().transaction() as conn:  # newest first: the cursor is the last id seen
            return keyset_page(query, lambda before, limit: store.list_submissions(
                conn, authenticate().centre_id, query, before, limit))


@blp.route("/<int:submission_id>")
class Submission(MethodView):
    @require(SUBMITTER)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, SubmissionSchema)
    @document_errors(blp, 401, 403, 404)
    def get(self, submission_id):
        """Read a submission: who sent it, when, and how many records had each outcome"""
        with database().transaction() as conn:
            submission = store.get_submission(conn, authenticate().centre_id, submission_id)
        if submission is None:
            raise _not_found()
        return submission


@blp.route("/<int:submission_id>/records")
class SubmissionRecords(MethodView):
    @require(SUBMITTER)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(SubmissionRecordQuerySchema(), location="query", unknown=ma.RAISE)
    @blp.response(200, page_schema(SubmissionRecordSchema, "SubmissionRecordPage"))
    @document_errors(blp, 401, 403, 404, 422)
    def get(self, query, submission_id):
        """List what became of each record of a submission (e.g. `outcome=rejected` to fix and resend)"""
        centre_id = authenticate().centre_id
        with database().transaction() as conn:
            submission = store.get_submission(conn, centre_id, submission_id)
            if submission is None:
                raise _not_found()
            listed = keyset_page(query, lambda after, limit: store.list_records(
                conn, centre_id, submission_id, query, after, limit), key="position")
        listed["items"] = [service.record_to_wire(row, submission["format"]) for row in listed["items"]]
        return listed
