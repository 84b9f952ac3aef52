"""The audit trail: operators read every centre's, centre admins and submitters their own centre's."""

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import validate

from registry.audit import store
from registry.auth import CENTRE_ADMIN, OPERATOR, SUBMITTER, authenticate, require
from registry.db import database
from registry.fields import Integer
from registry.pagination import PageQuerySchema, keyset_page, page_schema
from registry.problems import document_errors

blp = Blueprint("audit", __name__, url_prefix="/v1/audit", description="Append-only audit trail")

ENTITIES = ("centre", "token", "patient", "operation", "follow_up", "submission")
ACTIONS = ("create", "update", "delete", "revoke", "withdraw_consent", "restore_consent", "erase")


class ValueChangeSchema(ma.Schema):
    old = ma.fields.Raw(allow_none=True, metadata={"description": "The value before (absent for a creation)"})
    new = ma.fields.Raw(allow_none=True, metadata={"description": "The value after (absent for a deletion)"})


class AuditEventSchema(ma.Schema):
    id = ma.fields.Integer()
    centre_id = ma.fields.Integer()
    occurred_at = ma.fields.DateTime()
    actor_token_id = ma.fields.Integer(allow_none=True)
    actor_role = ma.fields.String(allow_none=True)
    request_id = ma.fields.String(allow_none=True)
    action = ma.fields.String()
    entity = ma.fields.String()
    entity_id = ma.fields.Integer(allow_none=True)
    changed_fields = ma.fields.List(ma.fields.String(), metadata={
        "description": "The fields the event changed, with the API's names"})
    changes = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(ValueChangeSchema), allow_none=True,
                             metadata={"description": (
                                 "The values, by field, with the API's names and JSON values: {old, new} for an "
                                 "update, {new} for a creation, {old} for a deletion. Never a patient's ref or a "
                                 "token's secret. null for events recorded before values were kept, events "
                                 "without values (erase, lift_erasure), and every event of an erased patient's "
                                 "records")})


class AuditQuerySchema(PageQuerySchema):
    centre_id = Integer(1, 2**62, strict=False, metadata={"description": "Operators only: one centre's events"})
    entity = ma.fields.String(validate=validate.OneOf(ENTITIES))
    entity_id = Integer(1, 2**62, strict=False)
    action = ma.fields.String(validate=validate.OneOf(ACTIONS))
    since = ma.fields.AwareDateTime(metadata={"description": "Events at or after this time"})


@blp.route("/")
class AuditEvents(MethodView):
    @require(OPERATOR, CENTRE_ADMIN, SUBMITTER)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(AuditQuerySchema(), location="query", unknown=ma.RAISE)
    @blp.response(200, page_schema(AuditEventSchema, "AuditEventPage"))
    @document_errors(blp, 401, 403, 422)
    def get(self, query):
        """Read the audit trail (operators: all centres; centre admins and submitters: their own)"""
        principal = authenticate()
        centre_id = query.get("centre_id") if principal.role == OPERATOR else principal.centre_id
        with database().transaction() as conn:
            return keyset_page(query, lambda after, limit: store.list_events(conn, centre_id, query, after, limit))
