"""GET /v1/report-queries/: the report query audit, for operators."""

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import validate

from registry.auth import OPERATOR, require
from registry.db import database
from registry.fields import Integer
from registry.pagination import PageQuerySchema, keyset_page, page_schema
from registry.problems import document_errors
from registry.report_queries import store

blp = Blueprint("report_queries", __name__, url_prefix="/v1/report-queries",
                description="Who asked which report, with which parameters (operators)")


class ReportQuerySchema(ma.Schema):
    id = ma.fields.Integer()
    asked_at = ma.fields.DateTime()
    centre_id = ma.fields.Integer(metadata={"description": "The asking token's centre"})
    token_id = ma.fields.Integer(allow_none=True, metadata={"description": "null: the command line"})
    role = ma.fields.String()
    request_id = ma.fields.String(allow_none=True)
    report = ma.fields.String()
    parameters = ma.fields.Dict(metadata={"description": "The parameters as the report understood them"})


class ReportQueryListQuerySchema(PageQuerySchema):
    centre_id = Integer(1, 2**62, strict=False, metadata={"description": "Queries by this centre's tokens"})
    token_id = Integer(1, 2**62, strict=False, metadata={"description": "Queries by this token"})
    report = ma.fields.String(validate=validate.OneOf(store.REPORTS))
    since = ma.fields.AwareDateTime(metadata={"description": "Queries at or after this time"})


@blp.route("/")
class ReportQueries(MethodView):
    @require(OPERATOR)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(ReportQueryListQuerySchema(), location="query", unknown=ma.RAISE)
    @blp.response(200, page_schema(ReportQuerySchema, "ReportQueryPage"))
    @document_errors(blp, 401, 403, 422)
    def get(self, query):
        """List the reports asked for, oldest first"""
        with database().transaction() as conn:
            return keyset_page(query, lambda after, limit: store.list_queries(conn, query, after, limit))
