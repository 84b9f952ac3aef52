"""Liveness, readiness and metrics for orchestrators and Prometheus."""

import marshmallow as ma
from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from registry import migrate
from registry.db import DatabaseUnavailable, database
from registry.observability import metrics_payload
from registry.problems import Problem

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
    @blp.response(200, content_type="text/plain", description="Prometheus text exposition")
    def get(self):
        """Expose Prometheus metrics"""
        payload, content_type = metrics_payload()
        return Response(payload, content_type=content_type)
