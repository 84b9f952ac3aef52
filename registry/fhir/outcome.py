"""Errors on /fhir as FHIR OperationOutcome resources, with the HTTP statuses /v1 answers.

An integration engine routes on `issue.code` (a code of http://hl7.org/fhir/issue-type), so
each status maps to the issue type that says what went wrong.
"""

import json
import logging

from flask import Response
from werkzeug.exceptions import HTTPException, InternalServerError

from registry.db import DatabaseUnavailable

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"

# http://hl7.org/fhir/R4/valueset-issue-type.html, by HTTP status
_ISSUE_TYPE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    408: "timeout",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-long",
    414: "too-long",
    415: "not-supported",
    422: "processable",
    428: "required",
    431: "too-long",
    500: "exception",
    503: "transient",
}


def outcome(status: int, diagnostics: str, *, code: str | None = None,
            expression: list[str] | None = None, headers: dict | None = None) -> Response:
    """An OperationOutcome answer with one error issue."""
    issue = {"severity": "error" if status < 500 else "fatal",
             "code": code or _ISSUE_TYPE.get(status, "processing" if status < 500 else "exception"),
             "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    # The request id that finds it in the logs is in the X-Request-Id header, as on /v1
    resource = {"resourceType": "OperationOutcome", "issue": [issue]}
    response = fhir_response(resource, status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def fhir_response(resource: dict, status: int = 200) -> Response:
    return Response(json.dumps(resource, ensure_ascii=False), status=status, mimetype=FHIR_JSON)


class FhirError(HTTPException):
    """An error on /fhir with a FHIR issue type and the element at fault (FHIRPath)."""

    def __init__(self, status: int, diagnostics: str, *, code: str | None = None,
                 expression: list[str] | None = None):
        super().__init__(description=diagnostics)
        self.code = status
        self.issue_code = code
        self.expression = expression


def handle_error(error: Exception) -> Response:
    """Every error of a /fhir request, whichever layer raised it, as an OperationOutcome."""
    if isinstance(error, DatabaseUnavailable):
        log.warning("database unavailable: %s", error)
        return outcome(503, "The database is unreachable; retry shortly.", headers={"Retry-After": "5"})
    if not isinstance(error, HTTPException) or isinstance(error, InternalServerError):
        original = getattr(error, "original_exception", None) or error
        log.error("unhandled error", exc_info=original)
        return outcome(500, "The server failed to answer; the request id identifies it in the logs.")
    if isinstance(error, FhirError):
        return outcome(error.code, error.description, code=error.issue_code, expression=error.expression)
    # A registry Problem (401 with WWW-Authenticate, 415, 413...) or a werkzeug error (404, 405)
    headers = getattr(error, "extra_headers", None)
    if headers is None:
        headers = dict(error.get_headers())
    headers = {name: value for name, value in headers.items() if name.lower() != "content-type"}
    return outcome(error.code, error.description or error.name, headers=headers)
