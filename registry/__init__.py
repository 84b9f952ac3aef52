"""Surgical complication registry for sclerosing bone disorders."""

from flask import Flask, Request, current_app, request
from werkzeug.wsgi import LimitedStream

from registry import db, migrate, observability
from registry.config import Settings
from registry.problems import Problem, RegistryApi
from registry.request_body import read_whole_body
from registry.strict_json import check_body

API_VERSION = "1.0.0"
JSON = "application/json"


def create_app(settings: Settings | None = None, database_url: str | None = None) -> Flask:
    """Build the Flask app.

    `settings` default to the environment; `database_url` defaults to the settings' URL or,
    when none is configured, to the embedded PostgreSQL (started if needed).
    """
    settings = settings or Settings.from_environment()
    if database_url is None:
        from registry.embedded import resolve_database_url

        database_url = resolve_database_url(settings)

    app = Flask(__name__)
    app.request_class = RegistryRequest
    app.config.update(
        REGISTRY_SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        SCHEMA_HEAD=migrate.head_revision(),
        API_TITLE="Sclerosing-bone surgical complication registry",
        API_VERSION=API_VERSION,
        OPENAPI_VERSION="3.0.3",
        API_SPEC_OPTIONS={
            "info": {"description": "Records operations on patients with sclerosing bone disorders, "
                                    "their intraoperative events, complications and follow-up, and "
                                    "reports complication rates across centres."},
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        },
    )
    db.init_app(app, database_url, settings.reports_database_url, settings)
    observability.init_app(app)
    app.before_request(check_request_body)

    api = RegistryApi(app)
    from registry.audit.routes import blp as audit_blp
    from registry.centres.routes import blp as centres_blp
    from registry.follow_ups.routes import blp as follow_ups_blp
    from registry.health.routes import blp as health_blp
    from registry.operations.routes import blp as operations_blp
    from registry.patients.routes import blp as patients_blp
    from registry.tokens.routes import blp as tokens_blp
    from registry.vocabularies.routes import blp as vocabularies_blp

    for blueprint in (health_blp, vocabularies_blp, centres_blp, tokens_blp, patients_blp, operations_blp,
                      follow_ups_blp, audit_blp):
        api.register_blueprint(blueprint)
    api.register_blueprint(__import__("registry.submissions.routes", fromlist=["blp"]).blp)
    api.register_blueprint(__import__("registry.reports.routes", fromlist=["blp"]).blp)
    api.register_blueprint(__import__("registry.report_queries.routes", fromlist=["blp"]).blp)
    app.extensions["registry_api"] = api
    app.register_blueprint(__import__("registry.fhir.routes", fromlist=["blp"]).blp)  # not in OpenAPI: docs/fhir.md
    app.register_blueprint(__import__("registry.dashboard.routes", fromlist=["blp"]).blp)  # pages: not in OpenAPI
    return app


class RegistryRequest(Request):
    """A request whose chunked body longer than MAX_CONTENT_LENGTH is a 413 when read whole.

    Without Content-Length (chunked transfer), werkzeug stops reading at the limit and only
    raises 413 on a further read: `get_data()` returned the body cut at the limit, so a JSON
    body came out as "invalid JSON" and a CSV submission as fewer rows than were sent.
    """

    def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False):
        data = super().get_data(cache=cache, as_text=as_text, parse_form_data=parse_form_data)
        stream = self.stream
        if self.content_length is None and isinstance(stream, LimitedStream) and stream.is_exhausted:
            stream.read(1)  # past a maximum, werkzeug raises RequestEntityTooLarge
        return data


def accepts(*media_types: str, bulk: bool = False):
    """Declare the request media types a view takes (default: application/json only).

    A `bulk` view may take bodies up to MAX_CONTENT_LENGTH; every other view takes one record,
    at most MAX_RECORD_BYTES.
    """

    def decorator(view):
        view.accepted_media_types = media_types
        view.takes_bulk_bodies = bulk
        return view

    return decorator


def check_request_body():
    """415 for a body in a media type the endpoint does not take; a record-sized limit (413) unless bulk;
    then the body is read whole (408 when it comes too slowly)."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    if not request.content_length and "chunked" not in request.headers.get("Transfer-Encoding", ""):
        return None  # no body: nothing to refuse
    view = current_app.view_functions.get(request.endpoint)
    view_class = getattr(view, "view_class", None)
    handler = getattr(view_class, request.method.lower(), None) if view_class else view
    settings = current_app.config["REGISTRY_SETTINGS"]
    if not getattr(handler, "takes_bulk_bodies", False):
        request.max_content_length = min(settings.max_record_bytes, settings.max_content_length)
    allowed = getattr(handler, "accepted_media_types", (JSON,))
    if request.mimetype not in allowed and not (request.mimetype.endswith("+json") and JSON in allowed):
        raise Problem(415, f"Send the body as {' or '.join(allowed)}.", slug="unsupported-media-type")
    # The whole body, within a deadline, before the view takes a database connection (see request_body)
    read_whole_body(request, settings.request_body_timeout, settings.request_body_min_rate)
    if handler is not None and request.is_json and not getattr(handler, "takes_bulk_bodies", False):
        # json.loads, which reads the body next, keeps the last of two equal keys and fails on
        # numbers over 4,300 digits without naming them: refuse both as field errors first
        check_body(request.get_data(cache=True))
    return None
