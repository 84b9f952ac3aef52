"""Every error the service answers, as RFC 9457 problem details (application/problem+json).

A problem carries `type`, `title`, `status`, `detail`, the request id, and for invalid input
an `errors` list naming each offending field by dotted path and JSON pointer, so a hospital
system can map the error back to its own record.
"""

import http
import json
import logging

import marshmallow as ma
import psycopg.errors
from flask import current_app, g, jsonify, request
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException, InternalServerError

from registry.db import DatabaseUnavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://registry.example.org/problems/"

# Every `type` the service answers, one per kind of error, whichever endpoint or layer (webargs,
# a view, the database, werkzeug) raised it: a client can branch on `type` alone.
PROBLEM_TYPES = {
    "malformed-request": (400, "The request cannot be read: a body that is not JSON or not UTF-8, nested too deeply, "
                               "or a request that is not valid HTTP (e.g. a NUL byte in a header)."),
    "unauthorized": (401, "No token, or a token that is unknown, revoked, expired or replaced (rotated, past its "
                          "grace period); `detail` says which, and when it expired."),
    "forbidden": (403, "The token's role may not do this."),
    "not-found": (404, "No such resource (or it belongs to another centre)."),
    "method-not-allowed": (405, "The resource does not take this method."),
    "request-timeout": (408, "The body did not arrive within REQUEST_BODY_TIMEOUT (plus its size at "
                             "REQUEST_BODY_MIN_RATE)."),
    "conflict": (409, "Another record of your centre holds this identifier, or the record's state refuses the "
                      "change (a token rotated already, revoked or expired is not rotated)."),
    "erased": (410, "The patient was erased (right to erasure): its ref is refused until the centre lifts the "
                    "erasure, and a retried Idempotency-Key that wrote its records is refused."),
    "precondition-failed": (412, "If-Match does not name the current version."),
    "body-too-large": (413, "The body is over MAX_RECORD_BYTES (one record) or MAX_CONTENT_LENGTH (bulk)."),
    "uri-too-long": (414, "The request line (method, path, query) is over 4094 bytes."),
    "unsupported-media-type": (415, "The body is in a media type the endpoint does not take."),
    "invalid-input": (422, "Fields, query parameters or headers refused; `errors` names each one."),
    "precondition-required": (428, "A change needs If-Match."),
    "headers-too-large": (431, "A header is over 8190 bytes, or there are more than 100 headers."),
    "internal-error": (500, "The server failed; the request id finds it in the logs."),
    "database-unavailable": (503, "The database is unreachable; retry after Retry-After seconds."),
    "schema-not-at-head": (503, "The database schema is not at the code's revision (readiness only)."),
    "report-timeout": (503, "A report ran past REPORT_TIMEOUT and was stopped."),
}
# The type of an error raised without one (werkzeug's 404 for an unknown path, webargs' 422): the
# kind of its status when the status has one kind; otherwise `about:blank` (RFC 9457 §4.2.1).
_STATUSES = [status for status, _ in PROBLEM_TYPES.values()]
_TYPE_OF_STATUS = {status: slug for slug, (status, _) in PROBLEM_TYPES.items() if _STATUSES.count(status) == 1}


class FieldProblemSchema(ma.Schema):
    field = ma.fields.String(metadata={"description": "Dotted path of the field, e.g. `intraop_events.0.instrument`"})
    pointer = ma.fields.String(metadata={"description": "JSON pointer to the field, e.g. `/intraop_events/0/instrument`"})
    location = ma.fields.String(metadata={"description": "Where the field was sent: json, query, headers, csv"})
    message = ma.fields.String()
    column = ma.fields.String(metadata={"description": "CSV submissions: the header of the column at fault"})


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details."""

    type = ma.fields.String(metadata={"description": "URI identifying the kind of problem"})
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    instance = ma.fields.String(metadata={"description": "The request path"})
    request_id = ma.fields.String()
    errors = ma.fields.List(ma.fields.Nested(FieldProblemSchema))


class Problem(HTTPException):
    """An HTTP error with a problem type slug, a detail and optional field errors."""

    def __init__(self, status: int, detail: str, *, slug: str | None = None,
                 errors: list[dict] | None = None, headers: dict | None = None):
        super().__init__(description=detail)
        self.code = status
        self.slug = slug
        self.errors = errors
        self.extra_headers = headers or {}


def field_error(field: str, message: str, location: str = "json") -> dict:
    return {"field": field, "pointer": "/" + field.replace(".", "/") if field else "",
            "location": location, "message": message}


class InvalidInput(Problem):
    """422 naming the fields at fault."""

    def __init__(self, errors: list[dict], detail: str = "The request has invalid fields."):
        super().__init__(422, detail, slug="invalid-input", errors=errors)


def problem_type(status: int, slug: str | None = None) -> str:
    """The `type` URI of a problem: its own kind, or the kind of its status."""
    slug = slug or _TYPE_OF_STATUS.get(status)
    return PROBLEM_TYPE_BASE + slug if slug else "about:blank"


def flatten_messages(messages, location: str | None = None, prefix: str = "") -> list[dict]:
    """Turn marshmallow/webargs nested messages into a flat list of field errors."""
    flat = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            if location is None and prefix == "" and key in ("json", "query", "headers", "files", "form", "view_args"):
                flat += flatten_messages(value, key, "")
                continue
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == "_schema":
                path = prefix
            flat += flatten_messages(value, location, path)
    elif isinstance(messages, list) and all(isinstance(item, str) for item in messages):
        flat += [field_error(prefix, message, location or "json") for message in messages]
    elif isinstance(messages, list):
        for index, value in enumerate(messages):
            flat += flatten_messages(value, location, f"{prefix}.{index}" if prefix else str(index))
    else:
        flat.append(field_error(prefix, str(messages), location or "json"))
    return flat


def problem_response(status: int, title: str, detail: str | None = None, *, slug: str | None = None,
                     errors: list[dict] | None = None, headers: dict | None = None):
    body = {
        "type": problem_type(status, slug),
        "title": title,
        "status": status,
        "instance": request.path,
        "request_id": g.get("request_id"),
    }
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class RegistryApi(Api):
    """flask-smorest's Api answering and documenting errors as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def _init_spec(self, *args, **kwargs):
        super()._init_spec(*args, **kwargs)
        self.ma_plugin.converter.add_attribute_function(nullable_object_is_only_null)
        self.ma_plugin.converter.add_attribute_function(exclusive_range_bounds)

    def handle_http_exception(self, error: HTTPException):
        foreign = other_error_format()
        if foreign is not None:
            return foreign(error)
        if isinstance(error, InternalServerError):
            original = getattr(error, "original_exception", None)
            if original is not None:
                log.error("unhandled error", exc_info=original)
            return problem_response(500, "Internal Server Error",
                                    "The server failed to answer; the request id identifies it in the logs.")
        headers = dict(error.get_headers()) if not isinstance(error, Problem) else error.extra_headers
        headers.pop("Content-Type", None)
        errors = None
        detail = error.description
        data = getattr(error, "data", None)
        if isinstance(error, Problem):
            errors = error.errors
        elif data:
            # webargs (via flask-smorest's abort) puts validation messages here
            messages = data.get("errors") or data.get("messages")
            if messages:
                errors = flatten_messages(messages)
                detail = "The request has invalid fields."
            detail = data.get("message", detail)
            headers.update(data.get("headers") or {})
        return problem_response(error.code, error.name, detail,
                                slug=getattr(error, "slug", None), errors=errors, headers=headers)

    def _register_responses(self):
        # flask-smorest's own registration, with problem+json as the error content type
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM_JSON)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, response, lazy=True)

    def _register_error_handlers(self):
        super()._register_error_handlers()
        self._app.register_error_handler(DatabaseUnavailable, handle_database_unavailable)
        self._app.register_error_handler(psycopg.errors.IntegrityError, handle_integrity_error)
        self._app.register_error_handler(RecursionError, handle_recursion_error)


def other_error_format():
    """The error handler of a path answering errors in its own format, if the request is under one.

    /fhir answers OperationOutcome resources (registry.fhir registers its prefix in
    `app.extensions["error_formats"]`); its blueprint handles the errors of its routes, but an
    error raised before any route matched (an unknown path, a wrong method) reaches this app-wide
    handler.
    """
    for prefix, handler in current_app.extensions.get("error_formats", {}).items():
        if request.path == prefix or request.path.startswith(prefix + "/"):
            return handler
    return None


def nullable_object_is_only_null(self, field, ret=None, **kwargs) -> dict:
    """Document a nullable nested object as "the object or null", not "any object or null".

    apispec writes `anyOf: [{type: object, nullable: true}, {$ref}]` for OpenAPI 3.0, whose first
    branch admits every object (`{}` included), so the spec accepted what validation refuses.
    """
    any_of = (ret or {}).get("anyOf")
    if not field.allow_none or not any_of:
        return {}
    return {"anyOf": [dict(branch, enum=[None]) if branch == {"type": "object", "nullable": True} else branch
                      for branch in any_of]}


def exclusive_range_bounds(self, field, ret=None, **kwargs) -> dict:
    """Document `Range(min_inclusive=False)` and `max_inclusive=False` (apispec drops them)."""
    bounds = {}
    for validator in field.validators:
        if isinstance(validator, ma.validate.Range):
            if validator.min is not None and not validator.min_inclusive:
                bounds["exclusiveMinimum"] = True
            if validator.max is not None and not validator.max_inclusive:
                bounds["exclusiveMaximum"] = True
    return bounds


def handle_database_unavailable(error: DatabaseUnavailable):
    log.warning("database unavailable: %s", error)
    return problem_response(503, "Service Unavailable", "The database is unreachable; retry shortly.",
                            slug="database-unavailable", headers={"Retry-After": "5"})


def handle_recursion_error(error: RecursionError):
    """A JSON body nested deeper than the parser can follow (`[[[[...` thousands deep) is a 400.

    The JSON parser gives up with RecursionError, which nothing else catches: it was a 500.
    Any other RecursionError still is one.
    """
    if request.is_json:
        try:
            json.loads(request.get_data(cache=True))
        except RecursionError:
            return problem_response(400, "Bad Request", "The JSON body is nested too deeply.",
                                    errors=[field_error("", "Nested too deeply.")])
        except ValueError:
            pass
    log.error("unhandled error", exc_info=error)
    return problem_response(500, "Internal Server Error",
                            "The server failed to answer; the request id identifies it in the logs.")


def handle_integrity_error(error: psycopg.errors.IntegrityError):
    """A database constraint caught what validation did not: still a field error, never a 500.

    Constraint names follow `ck_<table>_<field>`, so the field can be named.
    """
    constraint = getattr(error.diag, "constraint_name", None) or ""
    log.warning("constraint violation %s reached the database", constraint)
    field = constraint.split("_", 2)[-1] if constraint.startswith("ck_") else constraint
    return problem_response(422, "Unprocessable Entity", "A database constraint refused the record.",
                            slug="invalid-input", errors=[field_error(field, f"violates {constraint}")])


def document_errors(blp, *statuses: int):
    """Declare error answers of a view in the OpenAPI document (all problem+json)."""

    def decorator(view):
        for status in statuses:
            view = blp.alt_response(status, response=http.HTTPStatus(status).name)(view)
        return view

    return decorator
