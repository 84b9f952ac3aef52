"""Aggregate reports: GET /v1/reports/{complications,fusion,outcomes,scores,centres,completeness}.

Every report is JSON by default, CSV with `Accept: text/csv` or `format=csv`, a plot
with `Accept: image/svg+xml` / `image/png` or `format=svg` / `format=png`, and a FHIR
MeasureReport with `Accept: application/fhir+json` or `format=fhir`. Reports
read through `registry.replica.read_report` in one read-only REPEATABLE READ transaction, so all
figures of a report come from one snapshot: on REPORTS_DATABASE_URL (a replica) when it is current
enough, else on the primary; the Report-Database, Report-As-Of and Report-Replay-Lag headers say
which and how current.
"""

import json
from datetime import datetime, timezone

import marshmallow as ma
import psycopg
from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from registry.auth import ANALYST, OPERATOR, SUBMITTER, authenticate, require
from registry import replica
from registry.db import database
from registry.fhir.measure_report import measure_report
from registry.fhir.media import FHIR_JSON, fhir_quality
from registry.problems import Problem, document_errors
from registry.report_queries import store as report_queries
from registry.reports import plots, schemas, service
from registry.reports.csv_output import report_csv

blp = Blueprint("reports", __name__, url_prefix="/v1/reports",
                description="Aggregate reports across centres, with Wilson intervals and suppression of small cells")

# A report answers JSON (documented by @blp.response) or, when asked, the same report as CSV
# or drawn as a plot (registry.reports.plots), from the same report document.
# One 200 response with several media types: the last description given is the one shown.
ANSWERS = ("The report: JSON; CSV with `Accept: text/csv` or `format=csv`; the report drawn as a plot "
           "with `Accept: image/svg+xml` or `format=svg` (each mark has a <title> with its label and "
           "figures, a withheld group is labelled withheld and never drawn as a value) or as PNG with "
           "`Accept: image/png` or `format=png`; a FHIR R4 MeasureReport (type summary, withheld cells "
           "without a count) with `Accept: application/fhir+json` or `format=fhir`")
CSV_RESPONSE = {"content_type": "text/csv", "schema": {"type": "string"}, "success": True, "description": ANSWERS}
SVG_RESPONSE = {"content_type": "image/svg+xml", "schema": {"type": "string"}, "success": True,
                "description": ANSWERS}
PNG_RESPONSE = {"content_type": "image/png", "schema": {"type": "string", "format": "binary"}, "success": True,
                "description": ANSWERS}
FHIR_RESPONSE = {"content_type": FHIR_JSON, "schema": {"type": "object"}, "success": True,
                 "description": ANSWERS}
# format= names: the media type each answers with
FORMATS = {"json": "application/json", "csv": "text/csv", "svg": "image/svg+xml", "png": "image/png",
           "fhir": FHIR_JSON}


def _negotiated() -> str:
    """The format asked for: `format=`, else the Accept type of the highest quality, JSON on a tie
    (so `*/*`, a browser's Accept and no Accept at all get JSON)."""
    if request.args.get("format") in FORMATS:
        return request.args["format"]
    accept = request.accept_mimetypes
    quality = {name: accept[media_type] for name, media_type in FORMATS.items()}
    quality["fhir"] = fhir_quality(accept)   # with fhirVersion=4.0 too, which werkzeug's lookup misses
    best = "json"
    for name in FORMATS:
        if quality[name] > quality[best]:
            best = name
    return best


def _answer(report: dict) -> dict | Response:
    chosen = _negotiated()
    if chosen == "json":
        return report
    if chosen == "fhir":
        # built from the same document as the JSON, after disclosure control: withheld stays withheld
        return Response(json.dumps(measure_report(report), ensure_ascii=False), mimetype=FHIR_JSON)
    if chosen == "csv":
        return Response(report_csv(report), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{report["report"]}.csv"'})
    today = datetime.now(timezone.utc).date()
    body = plots.render_svg(report, today) if chosen == "svg" else plots.render_png(report, today)
    return Response(body, mimetype=FORMATS[chosen], headers={
        "Content-Disposition": f'inline; filename="{report["report"]}.{chosen}"'})


@blp.after_request
def _vary_on_accept(response: Response) -> Response:
    # every report answer depends on Accept as well as the URL (JSON, CSV, plot or FHIR), so a
    # cache must not answer one client's Accept with another's
    response.vary.add("Accept")
    return response


def _run(report: str, query: dict, build, *args):
    principal = authenticate()
    settings = current_app.config["REGISTRY_SETTINGS"]
    # The query audit is written on the primary (reports may read a replica), and before the
    # report is built, so a request that then times out is on record too.
    with database().transaction() as conn:
        report_queries.record(conn, principal, report, query)

    def build_on(conn):
        conn.execute("SET LOCAL jit = off")  # compiling costs more than these queries take
        # A report that scans a large registry is stopped with an answer, not by gunicorn
        # killing the worker at its own timeout.
        conn.execute(f"SET LOCAL statement_timeout = {int(settings.report_timeout * 1000)}")
        try:
            return build(conn, *args, principal, settings.suppression_threshold)
        except psycopg.errors.QueryCanceled:
            raise Problem(503, f"The report took longer than {settings.report_timeout:g} s and was stopped. "
                               "Reports grouped by one dimension with no filter but a centre are fast at any "
                               "size; two dimensions, date ranges and other filters scan every operation.",
                          slug="report-timeout") from None

    # On the replica when it can answer correctly, else on the primary (registry.replica)
    report_document, source = replica.read_report(build_on, settings.reports_max_lag_seconds)
    # drawn (or written as CSV) after the connection is back in the pool
    answer = _answer(report_document)
    headers = replica.freshness_headers(source)  # where the report was read, and how current it is
    if isinstance(answer, Response):
        answer.headers.update(headers)
        return answer
    return answer, headers


def _report_view(report: str, query_schema, report_schema, summary: str):
    class ReportView(MethodView):
        @require(SUBMITTER, ANALYST, OPERATOR)
        @blp.doc(security=[{"bearerAuth": []}])
        @blp.arguments(query_schema, location="query", unknown=ma.RAISE)
        @blp.response(200, report_schema)
        @blp.alt_response(200, **CSV_RESPONSE)
        @blp.alt_response(200, **SVG_RESPONSE)
        @blp.alt_response(200, **PNG_RESPONSE)
        @blp.alt_response(200, **FHIR_RESPONSE)
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
blp.route("/scores")(_report_view(
    "scores", schemas.ReportQuerySchema, schemas.ScoresReportSchema,
    "Report each outcome score's change from baseline and the share reaching its MCID"))
blp.route("/completeness")(_report_view(
    "completeness", schemas.ReportQuerySchema, schemas.CompletenessReportSchema,
    "Report the share of operations with each key field and with 12-month follow-up"))


@blp.route("/centres")
class CentresReport(MethodView):
    @require(SUBMITTER, ANALYST, OPERATOR)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(schemas.CentresQuerySchema, location="query", unknown=ma.RAISE)
    @blp.response(200, schemas.CentresReportSchema)
    @blp.alt_response(200, **CSV_RESPONSE)
    @blp.alt_response(200, **SVG_RESPONSE)
    @blp.alt_response(200, **PNG_RESPONSE)
    @blp.alt_response(200, **FHIR_RESPONSE)
    @document_errors(blp, 401, 403, 422, 503)
    def get(self, query):
        """Compare each centre's rate with the pooled rate (funnel plot)"""
        return _run("centres", query, service.build_funnel, query)
