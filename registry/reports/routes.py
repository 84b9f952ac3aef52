"""Aggregate reports: GET /v1/reports/{complications,fusion,outcomes,centres,completeness}.

Every report is JSON by default and CSV with `Accept: text/csv` or `format=csv`. Reports
read through `reports_database()` (a replica when REPORTS_DATABASE_URL is set) in one
read-only REPEATABLE READ transaction, so all figures of a report come from one snapshot.
"""

import marshmallow as ma
import psycopg
from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from registry.auth import ANALYST, OPERATOR, SUBMITTER, authenticate, require
from registry.db import database, reports_database
from registry.problems import Problem, document_errors
from registry.report_queries import store as report_queries
from registry.reports import schemas, service
from registry.reports.csv_output import report_csv

blp = Blueprint("reports", __name__, url_prefix="/v1/reports",
                description="Aggregate reports across centres, with Wilson intervals and suppression of small cells")

# A report answers JSON (documented by @blp.response) or, when asked, the same report as CSV.
CSV_RESPONSE = {"content_type": "text/csv", "schema": {"type": "string"}, "success": True,
                "description": "The report: JSON, or CSV with `Accept: text/csv` or `format=csv`"}


def _answer(report: dict) -> dict | Response:
    wants_csv = request.args.get("format") == "csv" or (
        request.args.get("format") is None
        and request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"
        and request.accept_mimetypes["text/csv"] > request.accept_mimetypes["application/json"])
    if not wants_csv:
        return report
    filename = f"{report['report']}.csv"
    return Response(report_csv(report), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _run(report: str, query: dict, build, *args):
    principal = authenticate()
    settings = current_app.config["REGISTRY_SETTINGS"]
    # The query audit is written on the primary (reports may read a replica), and before the
    # report is built, so a request that then times out is on record too.
    with database().transaction() as conn:
        report_queries.record(conn, principal, report, query)
    with reports_database().transaction() as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL jit = off")  # compiling costs more than these queries take
        # A report that scans a large registry is stopped with an answer, not by gunicorn
        # killing the worker at its own timeout.
        conn.execute(f"SET LOCAL statement_timeout = {int(settings.report_timeout * 1000)}")
        try:
            return _answer(build(conn, *args, principal, settings.suppression_threshold))
        except psycopg.errors.QueryCanceled:
            raise Problem(503, f"The report took longer than {settings.report_timeout:g} s and was stopped. "
                               "Reports grouped by one dimension with no filter but a centre are fast at any "
                               "size; two dimensions, date ranges and other filters scan every operation.",
                          slug="report-timeout") from None


def _report_view(report: str, query_schema, report_schema, summary: str):
    class ReportView(MethodView):
        @require(SUBMITTER, ANALYST, OPERATOR)
        @blp.doc(security=[{"bearerAuth": []}])
        @blp.arguments(query_schema(), location="query", unknown=ma.RAISE)
        @blp.response(200, report_schema)
        @blp.alt_response(200, **CSV_RESPONSE)
        @document_errors(blp, 401, 403, 422, 503)
        def get(self, query):
            return _run(report, query, service.build_report, report, query)

    ReportView.get.__doc__ = summary
    ReportView.__name__ = f"{report.capitalize()}Report"
    return ReportView


blp.route("/complications")(_report_view(
    "complications", schemas.ReportQuerySchema, schemas.ComplicationsReportSchema,
    "Report intraoperative events, postoperative complications, blood loss and duration"))
blp.route("/fusion")(_report_view(
    "fusion", schemas.FusionQuerySchema, schemas.FusionReportSchema,
    "Report fusion, pseudarthrosis, implant failure and revision"))
blp.route("/outcomes")(_report_view(
    "outcomes", schemas.ReportQuerySchema, schemas.OutcomesReportSchema,
    "Report JOA and mJOA before surgery and at latest follow-up, and Hirabayashi recovery"))
blp.route("/completeness")(_report_view(
    "completeness", schemas.ReportQuerySchema, schemas.CompletenessReportSchema,
    "Report the share of operations with each key field and with 12-month follow-up"))


@blp.route("/centres")
class CentresReport(MethodView):
    @require(SUBMITTER, ANALYST, OPERATOR)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(schemas.CentresQuerySchema(), location="query", unknown=ma.RAISE)
    @blp.response(200, schemas.CentresReportSchema)
    @blp.alt_response(200, **CSV_RESPONSE)
    @document_errors(blp, 401, 403, 422, 503)
    def get(self, query):
        """Compare each centre's rate with the pooled rate (funnel plot)"""
        return _run("centres", query, service.build_funnel, query)
