"""Wire contract for bulk submissions: the document each record is, and the report of what became of it.

A bulk record is the operation document of the record API (`OperationInputSchema`, patient
inline) with, optionally, the operation's follow-ups: a centre's back-catalogue holds them
together, and a data manager chasing missing follow-ups resends the row with one more.
"""

import marshmallow as ma
from marshmallow import validate

from registry.fields import Integer, Ref
from registry.follow_ups.schemas import FollowUpFieldsSchema
from registry.operations.schemas import OperationInputSchema
from registry.pagination import PageQuerySchema
from registry.problems import FieldProblemSchema
from registry.validation import rules

MODES = ("partial", "atomic")
FORMATS = ("json", "csv")
STATUSES = ("processing", "accepted", "partially_accepted", "rejected")
OUTCOMES = ("created", "updated", "unchanged", "rejected", "not_stored", "erased")
MAX_FOLLOW_UPS = 50


class BulkOperationSchema(OperationInputSchema):
    """One record of a bulk submission: an operation document, optionally with its follow-ups.

    Follow-ups need their own `local_ref` here, so that resending the file updates them rather
    than adding them again.
    """

    follow_ups = ma.fields.List(ma.fields.Nested(FollowUpFieldsSchema), load_default=list,
                                validate=validate.Length(max=MAX_FOLLOW_UPS),
                                metadata={"description": "Follow-ups of this operation, each with its local_ref"})

    @ma.validates_schema
    def follow_ups_have_local_refs(self, data, **kwargs):
        errors = rules.bulk_follow_ups_have_local_refs(data.get("follow_ups") or [])
        if errors:
            raise ma.ValidationError({"follow_ups": {index: {"local_ref": [message]}
                                                    for index, message in errors.items()}})


class SubmissionQuerySchema(ma.Schema):
    mode = ma.fields.String(load_default="partial", validate=validate.OneOf(MODES), metadata={
        "description": "`partial`: store the good records, reject the others; `atomic`: store nothing "
                       "if any record is rejected"})


class RecordErrorSchema(FieldProblemSchema):
    column = ma.fields.String(metadata={"description": "CSV submissions: the column header of the cell at fault"})


class SubmissionRecordSchema(ma.Schema):
    """What became of one record of a submission."""

    index = ma.fields.Integer(metadata={"description": "JSON submissions: index in the array (0 = first)"})
    row = ma.fields.Integer(metadata={"description": "CSV submissions: spreadsheet row (the header is row 1)"})
    local_ref = ma.fields.String(allow_none=True)
    outcome = ma.fields.String(validate=validate.OneOf(OUTCOMES), metadata={
        "description": "created, updated, unchanged; rejected (see errors); not_stored (atomic submission "
                       "with a rejected record: this valid record was not stored either); erased (its patient "
                       "was erased since: nothing of the record is kept)"})
    operation_id = ma.fields.Integer(allow_none=True)
    errors = ma.fields.List(ma.fields.Nested(RecordErrorSchema))


class SubmissionSchema(ma.Schema):
    """A bulk submission: who sent it, when, how, and the counts of each outcome."""

    id = ma.fields.Integer()
    centre_id = ma.fields.Integer()
    token_id = ma.fields.Integer(allow_none=True, metadata={"description": "null when imported from the command line"})
    received_at = ma.fields.DateTime()
    completed_at = ma.fields.DateTime(allow_none=True)
    format = ma.fields.String(validate=validate.OneOf(FORMATS))
    mode = ma.fields.String(validate=validate.OneOf(MODES))
    status = ma.fields.String(validate=validate.OneOf(STATUSES), metadata={
        "description": "accepted (nothing rejected), partially_accepted, rejected (nothing stored)"})
    total = ma.fields.Integer()
    created = ma.fields.Integer()
    updated = ma.fields.Integer()
    unchanged = ma.fields.Integer()
    rejected = ma.fields.Integer()
    not_stored = ma.fields.Integer(metadata={"description": "Valid records not stored because the atomic "
                                                            "submission had a rejected record"})


class SubmissionReportSchema(SubmissionSchema):
    """The answer to a submission: its counts and the first page of per-record results."""

    records = ma.fields.List(ma.fields.Nested(SubmissionRecordSchema), metadata={
        "description": "Per-record results in submission order, the first page of "
                       "GET /v1/submissions/{id}/records"})
    records_next_cursor = ma.fields.String(allow_none=True, metadata={
        "description": "Pass as `cursor` to GET /v1/submissions/{id}/records for the rest; null when all are here"})


class SubmissionListQuerySchema(PageQuerySchema):
    status = ma.fields.String(validate=validate.OneOf(STATUSES))
    received_since = ma.fields.AwareDateTime(metadata={"description": "Submissions received at or after this time"})


class SubmissionRecordQuerySchema(PageQuerySchema):
    outcome = ma.fields.String(validate=validate.OneOf(OUTCOMES), metadata={
        "description": "Only records with this outcome, e.g. `rejected` to fix and resend them"})
    local_ref = Ref(metadata={"description": "Only the record of the operation with this local_ref"})
    operation_id = Integer(1, 2**62, strict=False)
