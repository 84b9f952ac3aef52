"""Errors on /fhir as FHIR OperationOutcome resources, with the HTTP statuses /v1 answers.

An integration engine routes on `issue.code` (a code of http://hl7.org/fhir/issue-type), so
each status maps to the issue type that says what went wrong.
"""

import json
import logging

import psycopg.errors
from flask import Response, request
from werkzeug.exceptions import HTTPException, InternalServerError

from registry.db import DatabaseUnavailable
from registry.problems import Problem

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


def issue_type(status: int) -> str:
    """The issue type (http://hl7.org/fhir/issue-type) of an HTTP error status."""
    return _ISSUE_TYPE.get(status, "processing" if status < 500 else "exception")


def issue(status: int, diagnostics: str, *, code: str | None = None, expression: list[str] | None = None) -> dict:
    """One OperationOutcome issue: an error (a fault of the server is fatal)."""
    found = {"severity": "error" if status < 500 else "fatal", "code": code or issue_type(status),
             "diagnostics": diagnostics}
    if expression:
        found["expression"] = expression
    return found


def outcome(status: int, diagnostics: str, *, code: str | None = None,
            expression: list[str] | None = None, headers: dict | None = None,
            issues: list[dict] | None = None) -> Response:
    """An OperationOutcome answer: one error issue, or the `issues` given."""
    # The request id that finds it in the logs is in the X-Request-Id header, as on /v1
    resource = {"resourceType": "OperationOutcome",
                "issue": issues or [issue(status, diagnostics, code=code, expression=expression)]}
    response = fhir_response(resource, status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def fhir_response(resource: dict, status: int = 200) -> Response:
    return Response(json.dumps(resource, ensure_ascii=False), status=status, mimetype=FHIR_JSON)


class FhirError(HTTPException):
    """An error on /fhir with a FHIR issue type and the element at fault (FHIRPath)."""

    def __init__(self, status: int, diagnostics: str, *, code: str | None = None,
                 expression: list[str] | None = None, issues: list[dict] | None = None):
        super().__init__(description=diagnostics)
        self.code = status
        self.issue_code = code
        self.expression = expression
        self.issues = issues


def pointer_to_fhirpath(pointer: str) -> str:
    """A JSON pointer into a Bundle body as FHIRPath: `/entry/2/resource/valueQuantity/value` is
    `Bundle.entry[2].resource.valueQuantity.value` (the body's root is the Bundle)."""
    path = "Bundle"
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        path += f"[{token}]" if token.isdigit() else f".{token}"
    return path


def _problem_issues(error: Problem) -> list[dict] | None:
    """A registry Problem's field errors (strict JSON reading, a refused header) as issues."""
    issues = []
    for field_error in error.errors or []:
        message = field_error.get("message") or error.description
        if field_error.get("location") == "headers":
            issues.append(issue(error.code, f"Header {field_error['field']}: {message}"))
        elif field_error.get("pointer"):
            issues.append(issue(error.code, message, expression=[pointer_to_fhirpath(field_error["pointer"])]))
        else:
            issues.append(issue(error.code, f"{error.description} {message}".strip()))
    return issues or None


def _nested_too_deeply() -> bool:
    """Whether the request's JSON body is what made the parser give up (thousands of nested [[[ or {{{)."""
    try:
        json.loads(request.get_data(cache=True))
    except RecursionError:
        return True
    except ValueError:
        pass
    return False


def handle_error(error: Exception) -> Response:
    """Every error of a /fhir request, whichever layer raised it, as an OperationOutcome."""
    if isinstance(error, DatabaseUnavailable):
        log.warning("database unavailable: %s", error)
        return outcome(503, "The database is unreachable; retry shortly.", headers={"Retry-After": "5"})
    if isinstance(error, RecursionError) and _nested_too_deeply():
        return outcome(400, "The JSON body is nested too deeply to read.", code="structure")
    if isinstance(error, psycopg.errors.IntegrityError):
        # a database constraint caught what validation did not: the record is refused, not a 500
        constraint = getattr(error.diag, "constraint_name", None) or "a constraint"
        log.warning("constraint violation %s reached the database", constraint)
        return outcome(422, f"A database constraint refused the record ({constraint}).", code="invariant")
    if not isinstance(error, HTTPException) or isinstance(error, InternalServerError):
        original = getattr(error, "original_exception", None) or error
        log.error("unhandled error", exc_info=original)
        return outcome(500, "The server failed to answer; the request id identifies it in the logs.")
    if isinstance(error, FhirError):
        return outcome(error.code, error.description, code=error.issue_code, expression=error.expression,
                       issues=error.issues)
    # A registry Problem (401 with WWW-Authenticate, 415, 413...) or a werkzeug error (404, 405)
    headers = getattr(error, "extra_headers", None)
    if headers is None:
        headers = dict(error.get_headers())
    headers = {name: value for name, value in headers.items() if name.lower() != "content-type"}
    issues = _problem_issues(error) if isinstance(error, Problem) else None
    return outcome(error.code, error.description or error.name, headers=headers, issues=issues)
