"""Liveness, readiness and metrics for orchestrators and Prometheus.

/healthz and /readyz are open: they say only whether the service is up and its schema at head
(a report maintainer's backlog does not make the service unready: reports fold it in).
/metrics needs a `metrics` (or `operator`) token: its counts per route and status would let
anyone who reaches the port follow the registry's activity, request by request. Prometheus
sends the token (`authorization: {credentials_file: ...}` in its scrape config). Besides the
request metrics it shows the report maintainer's backlog, read from the database at each scrape.
"""

import logging

import marshmallow as ma
import psycopg
from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from registry import migrate
from registry.auth import METRICS, OPERATOR, require
from registry.db import DatabaseUnavailable, database
from registry.observability import metrics_payload
from registry.problems import Problem, document_errors
from registry.reports.maintainer import backlog_exposition

log = logging.getLogger(__name__)

READINESS_TIMEOUT = 0.8  # seconds

blp = Blueprint("health", __name__, description="Service health and metrics")


class HealthSchema(ma.Schema):
    status = ma.fields.String(required=True)
    schema_revision = ma.fields.String()


@blp.route("/healthz")
class Liveness(MethodView):
    @blp.response(200, HealthSchema)
    def get(self):
        """Report that the process is up"""
        return {"status": "ok"}


@blp.route("/readyz")
class Readiness(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, description="Database unreachable or schema not at the code's head revision")
    def get(self):
        """Report whether the database is reachable and its schema at head"""
        expected = current_app.config["SCHEMA_HEAD"]
        try:
            # answer within a probe's usual 1 s budget, whatever DB_POOL_TIMEOUT is
            with database().transaction(timeout=READINESS_TIMEOUT) as conn:
                revision = migrate.current_revision(conn)
        except DatabaseUnavailable:
            raise Problem(503, "The database is unreachable.", slug="database-unavailable",
                          headers={"Retry-After": "5"}) from None
        if revision != expected:
            raise Problem(503, f"The schema is at {revision or 'no revision'}, the code expects {expected}.",
                          slug="schema-not-at-head")
        return {"status": "ready", "schema_revision": revision}


@blp.route("/metrics")
class Metrics(MethodView):
    @require(METRICS, OPERATOR)
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, content_type="text/plain", description="Prometheus text exposition")
    @document_errors(blp, 401, 403)
    def get(self):
        """Expose Prometheus metrics"""
        payload, content_type = metrics_payload()
        try:
            with database().transaction(timeout=READINESS_TIMEOUT) as conn:
                conn.execute("SET LOCAL statement_timeout = '2s'")
                payload += backlog_exposition(conn)
        except (DatabaseUnavailable, psycopg.Error) as exc:  # the request metrics still answer
            log.warning("report backlog not measured: %s", exc)
        return Response(payload, content_type=content_type)
